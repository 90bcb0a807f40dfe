// The instance page: details and actions, graphs of CPU, memory and network, the console (a real
// terminal), the console log, a one-shot exec, and the instance's operations and events.
import { ACTIONS, actionsFor, onProgress, progressOf, runAction } from "../actions.js";
import { api, events } from "../api.js";
import { graph } from "../graph.js";
import { DASH, clear, every, fmtBytes, fmtPercent, fmtRate, fmtTime, h, pageHeader, stateBadge, table } from "../ui.js";
import { netRates } from "../usage.js";

const ENC = (s) => encodeURIComponent(s);

function tabs(defs) {
  const bar = h("div.tabs", { role: "tablist" });
  const panels = h("div.tab-panels");
  const shown = {};
  let current = null;
  const select = (key) => {
    for (const d of defs) {
      const on = d.key === key;
      d.button.setAttribute("aria-selected", String(on));
      d.button.tabIndex = on ? 0 : -1;
      d.panel.hidden = !on;
      if (on && !shown[key]) {
        shown[key] = true;
        if (d.first) d.first();
      }
      if (on && d.show) d.show();
    }
    current = key;
  };
  for (const d of defs) {
    d.button = h("button.tab", { type: "button", role: "tab", dataset: { tab: d.key },
      onclick: () => select(d.key) }, d.title);
    d.panel = h("div.tab-panel", { role: "tabpanel", dataset: { panel: d.key }, hidden: true }, d.body);
    bar.append(d.button);
    panels.append(d.panel);
  }
  bar.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const i = defs.findIndex((d) => d.key === current);
    const next = defs[(i + (ev.key === "ArrowRight" ? 1 : defs.length - 1)) % defs.length];
    select(next.key);
    next.button.focus();
  });
  return { el: h("div", bar, panels), select };
}

function details(i) {
  const lim = i.limits || {};
  const rows = [
    ["ID", i.id], ["State", stateBadge(i.state)], ["Address", i.ipv4 || DASH], ["Image", i.image || i.image_id],
    ["Type", i.instance_type], ["vCPUs", lim.cpus ?? DASH], ["Memory", lim.memory ? fmtBytes(lim.memory, 0) : DASH],
    ["Disk", lim.disk ? fmtBytes(lim.disk, 0) : DASH], ["Node", i.node || DASH], ["Project", i.project || DASH],
    ["Created", fmtTime(i.created)],
  ];
  for (const n of i.nics || []) rows.push([`NIC ${n.name}`, `${n.network} · ${n.ipv4 || "no address"} · ${n.mac}`]);
  return h("dl.details", rows.flatMap(([k, v]) => [h("dt", k), h("dd", v)]));
}

export default {
  path: "#/instances/:name",
  name: "instance",
  title: "Instance",
  nav: false,
  render(root, { params, navigate }) {
    const ref = params.name;
    let inst = null;
    const head = h("div");
    const detailBox = h("div.detail-box");
    const error = h("div.form-error", { role: "alert", hidden: true });
    const cpu = graph({ title: "CPU", format: (v) => fmtPercent(v), max: 100 });
    const mem = graph({ title: "Memory", format: (v) => fmtBytes(v) });
    const net = graph({ title: "Network", format: (v) => fmtRate(v) });
    const graphs = h("div.graphs", cpu.el, mem.el, net.el);
    const overview = h("div", detailBox, h("h2", "Usage"), graphs);

    const log = h("pre.console-log", { tabindex: "0" }, "");
    const loadLog = async () => {
      try {
        log.textContent = (await api.get(`/api/v1/instances/${ENC(ref)}/console`)) || "(empty)";
      } catch (e) {
        log.textContent = `could not read the console log: ${e.message}`;
      }
    };
    const logPanel = h("div", h("div.toolbar", h("button.small", { type: "button", onclick: loadLog }, "Refresh")), log);

    const cmd = h("input", { type: "text", name: "command", placeholder: "uname -a", "aria-label": "Command" });
    const out = h("pre.exec-output", { role: "log" });
    const execForm = h("form.exec-form", { "aria-label": "Run a command" }, cmd, h("button.primary", { type: "submit" }, "Run"));
    execForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!cmd.value.trim()) return;
      out.textContent = "running…";
      try {
        const r = await api.post(`/api/v1/instances/${ENC(ref)}/exec`, { argv: ["sh", "-c", cmd.value] });
        out.textContent = `${r.stdout || ""}${r.stderr || ""}\n(exit ${r.exit_code})`;
        out.dataset.exit = String(r.exit_code);
      } catch (e) {
        out.textContent = e.message;
      }
    });
    const execPanel = h("div", execForm, out);

    // xterm.js is a chunk of its own, fetched the first time a terminal tab opens (the list's
    // first paint does not wait for it); null when the page was left meanwhile or it failed
    let left = false;
    const loadTerminal = async (panel) => {
      const wait = h("p.muted", "Loading the terminal…");
      panel.append(wait);
      try {
        const { terminal } = await import("../terminal.js");
        return left ? null : terminal;
      } catch (e) {
        panel.append(h("div.form-error", { role: "alert" }, `The terminal could not be loaded: ${e.message}`));
        return null;
      } finally {
        wait.remove();
      }
    };
    let consoleTerm = null;
    const consolePanel = h("div.console-panel");
    let shellTerm = null;
    const shellPanel = h("div.console-panel");

    const opsBox = h("div");
    const evBox = h("div");
    const activity = h("div", h("h2", "Operations"), opsBox, h("h2", "Events"), evBox);
    const opsTable = table({ columns: [
      { key: "kind", title: "Operation" }, { key: "status", title: "Status", render: (o) => stateBadge(o.status) },
      { key: "progress", title: "Progress", render: (o) => `${o.progress}% ${o.message || ""}` },
      { key: "created", title: "Started", render: (o) => fmtTime(o.created) },
      { key: "error", title: "Error", render: (o) => o.error || "" }], empty: "No operations." });
    opsBox.append(opsTable.el);
    const evTable = table({ columns: [
      { key: "time", title: "Time", render: (e) => fmtTime(e.time) }, { key: "type", title: "Type" },
      { key: "message", title: "Message" }], id: (e) => String(e.id), name: (e) => e.type, empty: "No events yet." });
    evBox.append(evTable.el);
    let evs = [];

    const t = tabs([
      { key: "overview", title: "Overview", body: overview },
      { key: "console", title: "Console", body: consolePanel, first: async () => {
        const terminal = await loadTerminal(consolePanel);
        if (!terminal) return;
        consoleTerm = terminal({ path: `/api/v1/instances/${ENC(inst ? inst.id : ref)}/console/ws`, label: "Console" });
        window.lxcloudTerm = consoleTerm.term;        // for tests and debugging
        consolePanel.append(h("p.muted", "The instance's console (its login prompt). Detach leaves it running."), consoleTerm.el);
        consoleTerm.connect();
      } },
      { key: "shell", title: "Shell", body: shellPanel, first: async () => {
        const terminal = await loadTerminal(shellPanel);
        if (!terminal) return;
        shellTerm = terminal({ path: `/api/v1/instances/${ENC(inst ? inst.id : ref)}/exec/ws`, query: { command: "/bin/sh -l" },
          reconnect: false, label: "Shell" });
        window.lxcloudShell = shellTerm.term;
        shellPanel.append(h("p.muted", "An interactive shell inside the instance (a new process; it ends when you exit)."), shellTerm.el);
        shellTerm.connect();
      } },
      { key: "log", title: "Console log", body: logPanel, first: loadLog },
      { key: "exec", title: "Exec", body: execPanel, show: () => cmd.focus() },
      { key: "activity", title: "Operations & events", body: activity },
    ]);

    const renderHead = () => {
      clear(head);
      if (!inst) return;
      const p = progressOf(inst.id);
      const buttons = p ? [h("span.op-progress", { role: "status" }, h("progress", { max: 100, value: p.progress || 0 }), `${p.action}: ${p.message || ""}`)]
        : actionsFor(inst).map((a) => h(`button${a === "delete" ? ".danger-outline" : ""}`, { type: "button", dataset: { action: a },
          onclick: async () => {
            const op = await runAction(inst, a);
            if (a === "delete" && op && op.status === "success") navigate("#/instances");
            else refresh();
          } }, ACTIONS[a].label));
      head.append(pageHeader(inst.name, stateBadge(inst.state), ...buttons));
    };
    const refresh = async () => {
      try {
        inst = await api.get(`/api/v1/instances/${ENC(ref)}`);
        error.hidden = true;
      } catch (e) {
        error.textContent = e.status === 404 ? `There is no instance ${ref} (in your project).` : e.message;
        error.hidden = false;
        return;
      }
      renderHead();
      clear(detailBox);
      detailBox.append(details(inst));
    };
    const refreshMetrics = async () => {
      if (!inst) return;
      try {
        const m = await api.get(`/api/v1/instances/${ENC(inst.id)}/metrics`);
        const s = m.samples || [];
        cpu.update(s.map((x) => [x.time, x.cpu_percent]));
        mem.update(s.map((x) => [x.time, x.memory_bytes]));
        net.update(s.map((x) => { const r = netRates(x); return [x.time, r ? r.rx + r.tx : 0]; }));
      } catch { /* shown as empty graphs */ }
    };
    const refreshActivity = async () => {
      if (!inst) return;
      try {
        const ops = await api.get("/api/v1/operations");
        opsTable.update(ops.filter((o) => o.target === inst.id).slice(0, 20));
        evs = await api.get("/api/v1/events", { query: { instance: inst.id, limit: 50 } });
        evTable.update([...evs].reverse());
      } catch { /* left as it was */ }
    };

    root.append(head, error, t.el);
    t.select("overview");
    refresh().then(() => { refreshMetrics(); refreshActivity(); });
    const stopPoll = every(5000, () => { refreshMetrics(); });
    const stopEvents = events({ type: "instance." }, (ev) => {
      if (ev === null || (inst && ev.instance === inst.id)) { refresh(); refreshActivity(); }
    });
    const stopProgress = onProgress((id) => { if (inst && id === inst.id) renderHead(); });
    return () => {
      left = true;
      stopPoll();
      stopEvents();
      stopProgress();
      if (consoleTerm) consoleTerm.dispose();
      if (shellTerm) shellTerm.dispose();
      delete window.lxcloudTerm;
      delete window.lxcloudShell;
    };
  },
};
