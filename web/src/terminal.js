// A terminal in the browser: xterm.js (bundled, with its fit addon) over a websocket of the API —
// the instance's console, or an interactive exec. Resizes with its box (a {"resize":[cols,rows]}
// text frame), reconnects with backoff when the socket drops while it should be open, detaches
// on demand (the instance keeps running).
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { wsUrl } from "./api.js";
import { h } from "./ui.js";

/**
 * terminal({path, query?, reconnect?: bool}) -> {el, term, connect(), detach(), dispose()}
 * `path`: the websocket's API path (console/ws or exec/ws).
 */
export function terminal({ path, query = {}, reconnect = true, label = "Terminal" }) {
  const status = h("span.term-status", { role: "status" }, "not connected");
  const box = h("div.term-box", { tabindex: "-1" });
  const connectBtn = h("button.small", { type: "button" }, "Connect");
  const detachBtn = h("button.small", { type: "button", disabled: true }, "Detach");
  const el = h("div.lx-term", { "aria-label": label },
    h("div.term-bar", connectBtn, detachBtn, status), box);
  const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13,
    fontFamily: "ui-monospace, Menlo, Consolas, monospace", scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  let opened = false;
  let ws = null;
  let wanted = false;       // the user wants it connected (a drop reconnects)
  let retry = 1000;
  let timer = null;
  const enc = new TextEncoder();

  const say = (text) => { status.textContent = text; el.dataset.status = text.split(" ")[0]; };
  const sendSize = () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [term.cols, term.rows] }));
  };
  const refit = () => {
    if (!opened || !box.isConnected) return;
    try { fit.fit(); } catch { /* not laid out yet */ }
  };
  term.onResize(sendSize);
  term.onData((d) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
  const observer = new ResizeObserver(() => refit());

  function connect() {
    if (!opened) {
      term.open(box);
      opened = true;
      observer.observe(box);
    }
    refit();
    wanted = true;
    clearTimeout(timer);
    if (ws) ws.close();
    say("connecting…");
    const sock = new WebSocket(wsUrl(path, { ...query, cols: term.cols, rows: term.rows }));
    sock.binaryType = "arraybuffer";
    ws = sock;
    sock.onopen = () => {
      retry = 1000;
      say("connected");
      connectBtn.textContent = "Reconnect";
      detachBtn.disabled = false;
      sendSize();
      term.focus();
    };
    sock.onmessage = (m) => term.write(typeof m.data === "string" ? m.data : new Uint8Array(m.data));
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      detachBtn.disabled = true;
      if (ev.code >= 4000) {          // refused by the API: say why, do not retry
        wanted = false;
        say(`refused: ${ev.reason || ev.code}`);
        return;
      }
      if (!wanted) { say("detached"); return; }
      if (!reconnect || ev.code === 1000) {
        wanted = false;
        say(ev.reason ? `ended: ${ev.reason}` : "ended");
        return;
      }
      say(`disconnected; reconnecting in ${Math.round(retry / 1000)} s`);
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  function detach() {
    wanted = false;
    clearTimeout(timer);
    if (ws) ws.close(1000);
    say("detached");
  }
  connectBtn.addEventListener("click", connect);
  detachBtn.addEventListener("click", detach);
  function dispose() {
    detach();
    observer.disconnect();
    term.dispose();
  }
  say("not connected");
  return { el, term, connect, detach, dispose };
}
