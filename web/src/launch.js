// The launch form: image, type, limits, user data, key pair, networks, security groups. The
// server's errors are shown in the form; on success the launch's progress is followed.
import { follow } from "./actions.js";
import { api } from "./api.js";
import { fmtBytes, form, modal } from "./ui.js";

async function optional(path) {
  try {
    return await api.get(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
}

async function keyPairs() {
  // the key pairs' REST path, whichever of the two spellings the API has
  for (const p of ["/api/v1/key-pairs", "/api/v1/keypairs"]) {
    const got = await optional(p);
    if (got) return got;
  }
  return null;
}

/** Opens the launch dialog; resolves to the launched instance or undefined. */
export async function openLaunch({ onLaunched } = {}) {
  const [images, types, networks, groups, keys] = await Promise.all([
    api.get("/api/v1/images"), api.get("/api/v1/instance-types"), optional("/api/v1/networks"),
    optional("/api/v1/security-groups"), keyPairs(),
  ]);
  const defType = (types.find((t) => t.default) || types[0] || {}).name;
  const fields = [
    { name: "name", label: "Name", placeholder: "web1 (generated when empty)" },
    { name: "image", label: "Image", type: "select", required: true,
      options: images.map((i) => [i.name, `${i.name} (${i.os} ${i.release}, ${fmtBytes(i.size)})`]) },
    { name: "instance_type", label: "Type", type: "select", value: defType,
      options: types.map((t) => [t.name, `${t.name} · ${t.vcpus} vCPU · ${fmtBytes(t.memory, 0)}`]) },
    { name: "cpus", label: "vCPUs", type: "number", min: "0.1", step: "0.1", placeholder: "the type's" },
    { name: "memory", label: "Memory", placeholder: "e.g. 256MiB (the type's)" },
    { name: "disk", label: "Root disk", placeholder: "e.g. 2GiB (the type's)" },
    keys
      ? { name: "key_name", label: "Key pair", type: "select", options: [["", "none"], ...keys.map((k) => [k.name, k.name])] }
      : { name: "key_name", label: "Key pair", placeholder: "a key pair's name (optional)" },
  ];
  if (networks) {
    fields.push({ name: "networks", label: "Networks (one NIC each)", type: "multiselect",
      options: networks.map((n) => [n.name, `${n.name}${n.cidr ? ` (${n.cidr})` : ""}`]),
      help: "none selected: the default network; Ctrl-click for several" });
  }
  if (groups) {
    fields.push({ name: "security_groups", label: "Security groups", type: "multiselect",
      options: groups.map((g) => [g.name, g.name]), help: "none selected: the project's default group" });
  }
  fields.push({ name: "user_data", label: "User data", type: "textarea", rows: 4,
    placeholder: "#cloud-config or a script (optional)" });
  fields.push({ name: "start", label: "Start it once created", type: "checkbox", value: true });

  let m;
  const f = form({
    fields,
    submit: "Launch",
    cancel: () => m.close(undefined),
    async onSubmit(v) {
      const body = { image: v.image, start: v.start };
      if (v.name.trim()) body.name = v.name.trim();
      if (v.instance_type) body.instance_type = v.instance_type;
      const limits = {};
      if (v.cpus !== null && v.cpus !== undefined) limits.cpus = v.cpus;
      if (v.memory.trim()) limits.memory = v.memory.trim();
      if (v.disk.trim()) limits.disk = v.disk.trim();
      if (Object.keys(limits).length) body.limits = limits;
      if (v.user_data.trim()) body.user_data = v.user_data;
      if (v.key_name && v.key_name.trim()) body.key_name = v.key_name.trim();
      if (v.networks && v.networks.length) {
        if (v.networks.length === 1) body.network = v.networks[0];
        else body.nics = v.networks.map((n) => ({ network: n }));
      }
      if (v.security_groups && v.security_groups.length) body.security_groups = v.security_groups;
      const answer = await api.post("/api/v1/instances", body);   // an error shows in the form
      m.close(answer.instance);
      if (onLaunched) onLaunched(answer.instance);
      follow(answer.instance, "launch", answer.operation.id);
    },
  });
  f.el.classList.add("launch-form");
  m = modal("Launch an instance", f.el, { wide: true });
  m.dialog.dataset.dialog = "launch";
  const first = f.inputs.name.input;
  first.focus();
  return m.done;
}

