// The instances page: the live list (virtualised: only the rows in view are in the DOM), a filter,
// sortable columns, actions with their progress, and the launch form.
import { actionsFor, ACTIONS, onProgress, progressOf, runAction } from "../actions.js";
import { api, events } from "../api.js";
import { openLaunch } from "../launch.js";
import { cpuCell, cpuOf, memCell, memOf, netCell, netOf } from "../usage.js";
import { debounce, every, h, pageHeader, stateBadge, virtualTable } from "../ui.js";

const USAGE_POLL_MS = 10000;

function matches(inst, words) {
  if (!words.length) return true;
  const hay = [inst.name, inst.id, inst.state, inst.ipv4, inst.instance_type, inst.image, inst.node,
    inst.project].filter(Boolean).join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

function progressCell(p) {
  const label = ACTIONS[p.action] ? ACTIONS[p.action].label : p.action;
  return h("span.op-progress", { role: "status" }, h("progress", { max: 100, value: p.progress || 0 }),
    `${label}: ${p.message || ""} ${p.progress ? `${p.progress}%` : ""}`);
}

export default {
  path: "#/instances",
  title: "Instances",
  nav: true,
  render(root, { navigate, me }) {
    let all = [];
    let loaded = false;
    const filter = h("input", { type: "search", placeholder: "Filter by name, state, address, type…", "aria-label": "Filter instances" });
    const count = h("span.muted.count", "loading…");
    const error = h("div.form-error", { role: "alert", hidden: true });
    const actionsCell = (inst) => {
      const p = progressOf(inst.id);
      if (p) return progressCell(p);
      return h("span", actionsFor(inst).map((a) =>
        h(`button.small${a === "delete" ? ".danger-outline" : ""}`, { type: "button", dataset: { action: a },
          onclick: () => runAction(inst, a).then(refetchSoon) }, ACTIONS[a].label)));
    };
    const columns = [
      { key: "name", title: "Name", width: "16%", render: (r) => h("a", { href: `#/instances/${encodeURIComponent(r.name)}` }, r.name) },
      { key: "state", title: "State", width: "9%", render: (r) => stateBadge(r.state) },
      { key: "ipv4", title: "Address", width: "10%", sort: (r) => (r.ipv4 || "").split(".").map((x) => x.padStart(3, "0")).join(".") },
      { key: "instance_type", title: "Type", width: "8%" },
      { key: "cpu", title: "CPU", width: "7%", className: "num", render: cpuCell, sort: cpuOf },
      { key: "memory", title: "Memory", width: "13%", className: "num", render: memCell, sort: memOf },
      { key: "network", title: "Network", width: "15%", className: "num", render: netCell, sort: netOf },
      { key: "actions", title: "Actions", sort: false, className: "actions-cell", render: actionsCell },
    ];
    if (me && me.is_admin) columns.splice(4, 0, { key: "project", title: "Project", width: "8%" });
    const table = virtualTable({
      columns,
      sortKey: "name",
      onRow: (r) => navigate(`#/instances/${encodeURIComponent(r.name)}`),
      empty: "No instances yet: launch one.",
    });
    const show = () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      const shown = words.length ? all.filter((i) => matches(i, words)) : all;
      table.update(shown);
      count.textContent = loaded ? (shown.length === all.length ? `${all.length} instances` : `${shown.length} of ${all.length} instances`) : "loading…";
    };
    let inflight = null;
    const refetch = async () => {
      if (inflight) return inflight;
      inflight = (async () => {
        try {
          all = await api.get("/api/v1/instances", { query: me && me.is_admin ? { all_projects: "true" } : {} });
          loaded = true;
          error.hidden = true;
          show();
        } catch (e) {
          if (e.status !== 401) {
            error.textContent = `Could not list the instances: ${e.message}`;
            error.hidden = false;
          }
        } finally {
          inflight = null;
        }
      })();
      return inflight;
    };
    const refetchSoon = debounce(refetch, 250);
    filter.addEventListener("input", debounce(show, 80));
    const launch = h("button.primary", { type: "button", onclick: () => openLaunch({ onLaunched: refetchSoon }) }, "Launch instance");
    root.append(
      pageHeader("Instances", count, launch),
      h("div.toolbar", filter),
      error,
      table.el,
    );
    const stopProgress = onProgress((id) => {
      table.invalidate(id);
    });
    const stopEvents = events({ type: "instance." }, (ev) => {
      if (ev === null || ev.type.startsWith("instance.")) refetchSoon();
    });
    const stopPoll = every(USAGE_POLL_MS, refetch);     // usage changes without events
    filter.focus();
    return () => {
      stopPoll();
      stopEvents();
      stopProgress();
      refetchSoon.cancel();
      table.destroy();
    };
  },
};
