// The resource pages: one list page each (images, key pairs, operations, nodes, events, volumes,
// snapshots, networks, security groups, addresses), built from one description: the list's
// path and columns, an optional create form, the row actions (destructive ones confirmed).
// Everything speaks REST only; server errors show in the form or a toast.
import { api, events, token, waitOperation } from "../api.js";
import { DASH, confirmDialog, every, fmtBytes, fmtPercent, fmtTime, form, h, modal, pageHeader, stateBadge, table, toast } from "../ui.js";

const ENC = encodeURIComponent;

function listPage({ path, name, title, list, columns, id, rowName, create, actions = [], poll = 0, live = null, extra = null }) {
  return {
    path, name, title, nav: true,
    render(root, ctx) {
      const error = h("div.form-error", { role: "alert", hidden: true });
      const count = h("span.muted.count", "loading…");
      const cols = [...columns];
      if (actions.length) {
        cols.push({ key: "actions", title: "Actions", sort: false, render: (r) => h("span",
          actions.filter((a) => !a.when || a.when(r)).map((a) => h(`button.small${a.danger ? ".danger-outline" : ""}`,
            { type: "button", onclick: () => act(a, r) }, a.label))) });
      }
      const t = table({ columns: cols, id: id || ((r) => r.id), name: rowName || ((r) => r.name), empty: `No ${title.toLowerCase()} yet.` });
      const refresh = async () => {
        try {
          const rows = await list(ctx);
          t.update(rows);
          count.textContent = `${rows.length} ${title.toLowerCase()}`;
          error.hidden = true;
        } catch (e) {
          error.textContent = `Could not list the ${title.toLowerCase()}: ${e.message}`;
          error.hidden = false;
        }
      };
      const act = async (a, r) => {
        if (a.confirm && !(await confirmDialog(`${a.label} ${r.name || r.id}?`, a.confirm, a.label))) return;
        try {
          const answer = await a.run(r, ctx);
          if (answer && answer.operation) await waitOperation(answer.operation.id || answer.operation, () => {});
          else if (answer && answer.id && String(answer.id).startsWith("op-")) await waitOperation(answer.id, () => {});
          toast(`${a.label}: ${r.name || r.id} done`, "ok", 2500);
        } catch (e) {
          toast(`${a.label} ${r.name || r.id}: ${e.message}`, "error");
        }
        refresh();
      };
      const buttons = [];
      if (create) {
        buttons.push(h("button.primary", { type: "button", onclick: () => {
          let m;
          const f = form({ fields: create.fields, submit: create.submit || "Create", cancel: () => m.close(),
            async onSubmit(v) {
              const out = await create.run(v, ctx);
              m.close(out);
              if (create.after) create.after(out);
              refresh();
            } });
          m = modal(create.title, f.el);
          m.dialog.dataset.dialog = `create-${name}`;
        } }, create.title));
      }
      root.append(...[pageHeader(title, count, ...buttons), error, extra ? extra(refresh) : null, t.el].filter(Boolean));
      refresh();
      const stops = [];
      if (poll) stops.push(every(poll, refresh));
      if (live) stops.push(events({ type: live }, () => refresh()));
      return () => stops.forEach((s) => s());
    },
  };
}

const del = (base) => ({ label: "Delete", danger: true, confirm: "This cannot be undone.",
  run: (r) => api.del(`${base}/${ENC(r.id)}`) });

// --- images: list, import from a file (upload progress), build, delete
function importImage(refresh) {
  const file = h("input", { type: "file", name: "file", accept: ".tar,.tar.gz,.tgz,.tar.xz,.tar.zst,.zst,.xz,.gz" });
  const name = h("input", { type: "text", name: "image-name", placeholder: "name", "aria-label": "Image name" });
  const bar = h("progress", { max: 100, value: 0, hidden: true });
  const status = h("span.muted", { role: "status" });
  const go = h("button", { type: "button", onclick: () => {
    const f = file.files[0];
    if (!f || !name.value.trim()) { status.textContent = "choose a file and a name"; return; }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/images?name=${ENC(name.value.trim())}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token.get() || ""}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.value = (100 * e.loaded) / e.total; status.textContent = `${fmtBytes(e.loaded)} of ${fmtBytes(e.total)}`; } };
    xhr.onload = () => {
      bar.hidden = true;
      let msg = `imported ${name.value}`;
      if (xhr.status >= 400) { try { msg = JSON.parse(xhr.responseText).error; } catch { msg = xhr.statusText; } }
      status.textContent = msg;
      refresh();
    };
    xhr.onerror = () => { bar.hidden = true; status.textContent = "the upload failed"; };
    bar.hidden = false;
    xhr.send(f);
  } }, "Import");
  const build = h("select", { "aria-label": "Build an image" }, h("option", { value: "" }, "Build…"),
    h("option", { value: "busybox" }, "busybox"), h("option", { value: "debian" }, "debian"));
  build.addEventListener("change", async () => {
    const kind = build.value;
    if (!kind) return;
    build.value = "";
    status.textContent = `building ${kind}…`;
    try {
      const op = await api.post("/api/v1/images/build", { builder: kind });
      const done = await waitOperation(op.id, (o) => { status.textContent = `building ${kind}: ${o.progress}% ${o.message || ""}`; });
      status.textContent = done.status === "success" ? `built ${kind}` : `build failed: ${done.error}`;
    } catch (e) {
      status.textContent = e.message;
    }
    refresh();
  });
  return h("div.toolbar", file, name, go, bar, build, status);
}

const images = listPage({
  path: "#/images", name: "images", title: "Images", list: () => api.get("/api/v1/images"),
  columns: [{ key: "name", title: "Name" }, { key: "os", title: "OS" }, { key: "release", title: "Release" },
    { key: "size", title: "Size", className: "num", render: (r) => fmtBytes(r.size) }, { key: "id", title: "ID" }],
  actions: [del("/api/v1/images")], extra: importImage,
});

const keyPairs = listPage({
  path: "#/key-pairs", name: "key-pairs", title: "Key pairs", list: () => api.get("/api/v1/key-pairs"),
  id: (r) => r.name,
  columns: [{ key: "name", title: "Name" }, { key: "key_type", title: "Type" }, { key: "fingerprint", title: "Fingerprint" },
    { key: "created", title: "Created", render: (r) => fmtTime(r.created) }],
  actions: [{ label: "Delete", danger: true, confirm: "Instances keep the key they were given.",
    run: (r) => api.del(`/api/v1/key-pairs/${ENC(r.name)}`) }],
  create: { title: "Create key pair", fields: [{ name: "name", label: "Name", required: true },
    { name: "public_key", label: "Public key to import (empty: make a new pair)", type: "textarea", rows: 3 }],
  run: (v) => api.post("/api/v1/key-pairs", { name: v.name, public_key: v.public_key.trim() || null }),
  after: (k) => {
    if (!k || !k.private_key) return;
    const blob = URL.createObjectURL(new Blob([k.private_key], { type: "application/x-pem-file" }));
    modal("The private key (shown once)", h("div", h("pre.console-log", k.private_key),
      h("a.button", { href: blob, download: `${k.name}.pem` }, `Download ${k.name}.pem`)));
  } },
});

const operations = listPage({
  path: "#/operations", name: "operations", title: "Operations", list: () => api.get("/api/v1/operations"),
  columns: [{ key: "kind", title: "Kind" }, { key: "target", title: "Target" },
    { key: "status", title: "Status", render: (r) => stateBadge(r.status) },
    { key: "progress", title: "Progress", render: (r) => h("span.op-progress", h("progress", { max: 100, value: r.progress }), `${r.progress}% ${r.message || ""}`) },
    { key: "created", title: "Started", render: (r) => fmtTime(r.created) }, { key: "error", title: "Error", render: (r) => r.error || "" }],
  poll: 2000, live: "operation.",
});

const nodes = listPage({
  path: "#/nodes", name: "nodes", title: "Nodes",
  list: async () => Promise.all((await api.get("/api/v1/nodes")).map(async (n) => {
    try { return { ...n, m: (await api.get(`/api/v1/nodes/${ENC(n.name)}/metrics`)).current }; } catch { return { ...n, m: null }; }
  })),
  columns: [{ key: "name", title: "Name" }, { key: "status", title: "Status", render: (r) => stateBadge(r.status) },
    { key: "cpu", title: "CPU", render: (r) => (r.m ? `${fmtPercent(r.m.cpu_percent)} of ${r.m.cpus * 100}%` : DASH) },
    { key: "load", title: "Load", render: (r) => (r.m ? r.m.load.map((x) => x.toFixed(2)).join(" ") : DASH) },
    { key: "mem", title: "Memory available", render: (r) => (r.m ? `${fmtBytes(r.m.memory_available_bytes)} of ${fmtBytes(r.m.memory_total_bytes)}` : DASH) },
    { key: "pools", title: "Pools", render: (r) => (r.m ? Object.entries(r.m.pools).map(([k, p]) => `${k}: ${fmtBytes(p.used_bytes)} used${p.capacity_bytes ? ` of ${fmtBytes(p.capacity_bytes)}` : ""}`).join("; ") : DASH) },
    { key: "instances", title: "Instances", render: (r) => (r.m ? Object.entries(r.m.instances).map(([k, v]) => `${v} ${k}`).join(", ") || "none" : DASH) }],
  id: (r) => r.name, poll: 10000,
});

const eventsPage = listPage({
  path: "#/events", name: "events", title: "Events", list: async () => (await api.get("/api/v1/events", { query: { limit: 200 } })).reverse(),
  id: (r) => String(r.id), rowName: (r) => r.type,
  columns: [{ key: "id", title: "#", className: "num" }, { key: "time", title: "Time", render: (r) => fmtTime(r.time) },
    { key: "type", title: "Type" }, { key: "instance_name", title: "Instance", render: (r) => r.instance_name || DASH },
    { key: "message", title: "Message" }],
  live: "",
});

const volumes = listPage({
  path: "#/volumes", name: "volumes", title: "Volumes", list: () => api.get("/api/v1/volumes"),
  columns: [{ key: "name", title: "Name" }, { key: "state", title: "State", render: (r) => stateBadge(r.state) },
    { key: "size", title: "Size", className: "num", render: (r) => fmtBytes(r.size) }, { key: "pool", title: "Pool" }, { key: "id", title: "ID" }],
  actions: [{ label: "Snapshot", run: (r) => api.post(`/api/v1/volumes/${ENC(r.id)}/snapshots`, {}) },
    { label: "Detach", when: (r) => (r.attachments || []).length > 0, run: (r) => api.post(`/api/v1/volumes/${ENC(r.id)}/detach`, {}) },
    del("/api/v1/volumes")],
  create: { title: "Create volume", fields: [{ name: "name", label: "Name" }, { name: "size", label: "Size", placeholder: "1GiB", required: true }],
    run: (v) => api.post("/api/v1/volumes", { name: v.name || null, size: v.size }) },
});

const snapshots = listPage({
  path: "#/snapshots", name: "snapshots", title: "Snapshots", list: () => api.get("/api/v1/snapshots"),
  columns: [{ key: "name", title: "Name", render: (r) => r.name || r.id }, { key: "state", title: "State", render: (r) => stateBadge(r.state) },
    { key: "created", title: "Created", render: (r) => fmtTime(r.created) }, { key: "id", title: "ID" }],
  actions: [{ label: "Restore", confirm: "What was written since is lost.", run: (r) => api.post(`/api/v1/snapshots/${ENC(r.id)}/restore`, {}) },
    { label: "Delete", danger: true, confirm: "This cannot be undone.", run: (r) => api.del(`/api/v1/snapshots/${ENC(r.id)}`) }],
});

const networks = listPage({
  path: "#/networks", name: "networks", title: "Networks", list: () => api.get("/api/v1/networks"),
  columns: [{ key: "name", title: "Name" }, { key: "cidr", title: "Subnet" }, { key: "mode", title: "Mode" },
    { key: "gateway", title: "Gateway" }, { key: "dns_domain", title: "DNS domain" }, { key: "bridge", title: "Bridge" }],
  actions: [del("/api/v1/networks")],
  create: { title: "Create network", fields: [{ name: "name", label: "Name", required: true },
    { name: "subnet", label: "Subnet", placeholder: "10.20.0.0/24", required: true },
    { name: "mode", label: "Mode", type: "select", value: "nat", options: [["nat", "nat"], ["routed", "routed"], ["isolated", "isolated"]] },
    { name: "dns_domain", label: "DNS domain", placeholder: "lxcloud" }],
  run: (v) => api.post("/api/v1/networks", { name: v.name, subnet: v.subnet, mode: v.mode, dns_domain: v.dns_domain }) },
});

const ruleText = (r) => `${r.direction} ${r.protocol}${r.port_from !== null && r.port_from !== undefined ? ` ${r.port_from}${r.port_to !== r.port_from ? `-${r.port_to}` : ""}` : ""} ${r.cidr || r.source_group || "anywhere"}`;
const secgroups = listPage({
  path: "#/security-groups", name: "security-groups", title: "Security groups", list: () => api.get("/api/v1/security-groups"),
  columns: [{ key: "name", title: "Name" }, { key: "description", title: "Description" },
    { key: "rules", title: "Rules", render: (r) => h("ul.rules", (r.rules || []).map((x) => h("li", ruleText(x)))) }, { key: "id", title: "ID" }],
  actions: [{ label: "Add rule", run: (r) => {
    const spec = window.prompt(`A rule for ${r.name}: DIRECTION PROTOCOL [PORT[-PORT]] [CIDR]`, "ingress tcp 22 0.0.0.0/0");
    if (!spec) return null;
    const [direction, protocol, ports, cidr] = spec.trim().split(/\s+/);
    const [from, to] = (ports || "").split("-");
    return api.post(`/api/v1/security-groups/${ENC(r.id)}/rules`, { direction, protocol,
      port_from: from ? Number(from) : null, port_to: to ? Number(to) : (from ? Number(from) : null), cidr: cidr || null });
  } }, { label: "Delete", danger: true, confirm: "Its rules go with it.", run: (r) => api.del(`/api/v1/security-groups/${ENC(r.id)}`) }],
  create: { title: "Create security group", fields: [{ name: "name", label: "Name", required: true }, { name: "description", label: "Description" }],
    run: (v) => api.post("/api/v1/security-groups", { name: v.name, description: v.description }) },
});

const addresses = listPage({
  path: "#/addresses", name: "addresses", title: "Addresses", list: () => api.get("/api/v1/addresses"),
  columns: [{ key: "address", title: "Address" }, { key: "instance", title: "Instance", render: (r) => r.instance_name || r.instance_id || DASH },
    { key: "private_ip", title: "Private address", render: (r) => r.private_ip || DASH }, { key: "id", title: "ID" }],
  actions: [{ label: "Disassociate", when: (r) => !!(r.instance_id || r.instance), run: (r) => api.post(`/api/v1/addresses/${ENC(r.id)}/disassociate`, {}) },
    { label: "Release", danger: true, confirm: "The address goes back to its pool.", run: (r) => api.del(`/api/v1/addresses/${ENC(r.id)}`) }],
  create: { title: "Allocate address", fields: [{ name: "pool", label: "Pool (empty: the first with room)" }],
    run: (v) => api.post("/api/v1/addresses", v.pool ? { pool: v.pool } : {}) },
});

export default [images, keyPairs, operations, nodes, eventsPage, volumes, snapshots, networks, secgroups, addresses];
