// Small UI toolkit: the element builder h(), a table, a confirm dialog, a form, toasts, formatting.

/**
 * h("button.primary", {onclick, type: "button"}, "Start") -> HTMLElement.
 * The tag may carry ".class" parts and one "#id". Props: on* -> listeners, class/className,
 * dataset: {...}, style: {...} or string, attributes otherwise (false/null omit them).
 */
export function h(tag, props, ...children) {
  if (props === null || typeof props !== "object" || props instanceof Node || Array.isArray(props)) {
    children.unshift(props);
    props = {};
  }
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || "div");
  for (const part of rest) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else if (part[0] === "#") el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "class" || k === "className") String(v).split(/\s+/).filter(Boolean).forEach((c) => el.classList.add(c));
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// ---- formatting ----
const DASH = "–";
export function fmtBytes(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(digits)} ${units[i]}`;
}
/** Bits per second -> "1.2 Mbit/s". */
export function fmtRate(bps) {
  if (bps === null || bps === undefined || Number.isNaN(bps)) return DASH;
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
  let v = Number(bps);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}
export function fmtPercent(p, digits = 1) {
  if (p === null || p === undefined || Number.isNaN(p)) return DASH;
  return `${Number(p).toFixed(digits)} %`;
}
export function fmtTime(t) {
  if (!t) return DASH;
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleString(undefined, { hour12: false });
}
export function fmtAge(t) {
  if (!t) return DASH;
  const d = typeof t === "number" ? t * 1000 : Date.parse(t);
  const s = Math.max(0, (Date.now() - d) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
export { DASH };

/** A state badge: <span class="state state-running">running</span> */
export function stateBadge(state) {
  return h("span", { class: `state state-${String(state || "unknown").replace(/[^a-z0-9_-]/gi, "")}` },
    state || DASH);
}

/** A row's cells (each column's render, or its key's value), clickable when `onRow` is given
 * (not when the click was on a control of the row). */
function rowCells(tr, r, columns, onRow) {
  if (onRow) {
    tr.classList.add("clickable");
    tr.addEventListener("click", (ev) => {
      if (ev.target.closest("button, a, input, select, label")) return;
      onRow(r, ev);
    });
  }
  for (const col of columns) {
    const v = col.render ? col.render(r) : r[col.key];
    tr.append(h("td", { class: col.className }, v ?? DASH));
  }
  return tr;
}

// ---- table ----
/**
 * table({columns: [{key, title, render?(row) -> node|string, sort?(row) -> value}], rows,
 *        id?(row), name?(row), onRow?(row, ev), empty?}) -> {el, update(rows)}
 * A plain (not virtualised) table with sortable headers; rows carry data-id / data-name.
 */
export function table({ columns, rows = [], id = (r) => r.id, name = (r) => r.name, onRow, empty = "Nothing here yet." }) {
  let sortKey = null;
  let sortDir = 1;
  let current = rows;
  const tbody = h("tbody");
  const headRow = h("tr");
  const el = h("table.grid", h("thead", headRow), tbody);
  const paintHead = () => {
    clear(headRow);
    for (const col of columns) {
      const sortable = col.sort !== false;
      const arrow = sortKey === col.key ? (sortDir > 0 ? " ▲" : " ▼") : "";
      headRow.append(h("th", {
        scope: "col",
        "aria-sort": sortKey === col.key ? (sortDir > 0 ? "ascending" : "descending") : null,
      }, sortable ? h("button.th-sort", {
        type: "button",
        onclick: () => {
          if (sortKey === col.key) sortDir = -sortDir;
          else { sortKey = col.key; sortDir = 1; }
          paintHead();
          paint();
        },
      }, col.title + arrow) : col.title));
    }
  };
  const valueOf = (col, r) => (typeof col.sort === "function" ? col.sort(r) : r[col.key]);
  const paint = () => {
    clear(tbody);
    let list = current;
    if (sortKey) {
      const col = columns.find((c) => c.key === sortKey);
      list = [...current].sort((a, b) => compare(valueOf(col, a), valueOf(col, b)) * sortDir);
    }
    if (!list.length) {
      tbody.append(h("tr.empty", h("td", { colspan: columns.length }, empty)));
      return;
    }
    for (const r of list) {
      tbody.append(rowCells(h("tr", { dataset: { id: id(r) ?? "", name: name(r) ?? "" } }), r, columns, onRow));
    }
  };
  paintHead();
  paint();
  return {
    el,
    update(rows2) {
      current = rows2;
      paint();
    },
  };
}

export function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// ---- dialogs ----
/** A modal <dialog>; Esc closes it (resolves undefined). Returns {dialog, close(value), done}. */
export function modal(title, body, { wide = false } = {}) {
  let resolve;
  const done = new Promise((r) => (resolve = r));
  const dialog = h(`dialog.modal${wide ? ".wide" : ""}`, { "aria-label": title },
    h("h2", title), body);
  const close = (value) => {
    if (dialog.open) dialog.close();
    dialog.remove();
    resolve(value);
  };
  dialog.addEventListener("cancel", (ev) => {
    ev.preventDefault();
    close(undefined);
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close, done };
}

/** await confirmDialog("Delete web1?", "It cannot be undone.", "Delete") -> true | false */
export function confirmDialog(title, text, okLabel = "OK", { danger = true } = {}) {
  const ok = h(`button${danger ? ".danger" : ".primary"}`, { type: "submit" }, okLabel);
  const cancel = h("button", { type: "button" }, "Cancel");
  const form = h("form", { method: "dialog" }, h("p", text), h("div.actions", cancel, ok));
  const m = modal(title, form);
  m.dialog.classList.add("confirm");
  cancel.addEventListener("click", () => m.close(false));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    m.close(true);
  });
  ok.focus();
  return m.done.then((v) => v === true);
}

// ---- forms ----
/**
 * form({fields: [{name, label, type?: "text"|"number"|"textarea"|"select"|"multiselect"|"checkbox"|"file",
 *        options?: [[value, label]], value?, placeholder?, required?, help?}],
 *       submit: "Launch", onSubmit(values, {setError}) }) -> {el, error(msg), values(), busy(b)}
 * The server's error is shown inline (role="alert"); Enter submits.
 */
export function form({ fields, submit = "Submit", onSubmit, cancel }) {
  const inputs = {};
  const errorBox = h("div.form-error", { role: "alert", hidden: true });
  const button = h("button.primary", { type: "submit" }, submit);
  const el = h("form.form", { novalidate: false });
  for (const f of fields) {
    const id = `f-${f.name}-${Math.random().toString(36).slice(2, 8)}`;
    let input;
    if (f.type === "textarea") {
      input = h("textarea", { id, name: f.name, rows: f.rows || 4, placeholder: f.placeholder, required: f.required }, f.value ?? "");
    } else if (f.type === "select" || f.type === "multiselect") {
      input = h("select", { id, name: f.name, required: f.required, multiple: f.type === "multiselect", size: f.type === "multiselect" ? Math.min(4, Math.max(2, (f.options || []).length)) : null },
        (f.options || []).map(([v, label]) => h("option", { value: v, selected: Array.isArray(f.value) ? f.value.includes(v) : f.value === v }, label ?? v)));
    } else if (f.type === "checkbox") {
      input = h("input", { id, name: f.name, type: "checkbox", checked: !!f.value });
    } else {
      input = h("input", { id, name: f.name, type: f.type || "text", value: f.value ?? "", placeholder: f.placeholder, required: f.required, min: f.min, step: f.step, autocomplete: "off" });
    }
    inputs[f.name] = { input, f };
    el.append(h(`div.field${f.type === "checkbox" ? ".check" : ""}`, h("label", { for: id }, f.label), input,
      f.help ? h("small.help", f.help) : null));
  }
  const actions = h("div.actions", cancel ? h("button", { type: "button", onclick: cancel }, "Cancel") : null, button);
  el.append(errorBox, actions);
  const values = () => {
    const out = {};
    for (const [name, { input, f }] of Object.entries(inputs)) {
      if (f.type === "checkbox") out[name] = input.checked;
      else if (f.type === "multiselect") out[name] = [...input.selectedOptions].map((o) => o.value);
      else if (f.type === "file") out[name] = input.files && input.files[0];
      else if (f.type === "number") out[name] = input.value === "" ? null : Number(input.value);
      else out[name] = input.value;
    }
    return out;
  };
  const setError = (msg) => {
    errorBox.textContent = msg || "";
    errorBox.hidden = !msg;
  };
  const busy = (b) => {
    button.disabled = b;
    el.classList.toggle("busy", b);
  };
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setError("");
    busy(true);
    try {
      await onSubmit(values(), { setError });
    } catch (e) {
      setError(e.message || String(e));
    } finally {
      busy(false);
    }
  });
  return { el, inputs, values, error: setError, busy };
}

// ---- toasts ----
let toastBox = null;
/** toast("Started web1") or toast(error, "error"): a short message in the corner, gone after a while. */
export function toast(msg, kind = "info", ms = 5000) {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = h("div.toasts", { role: "status", "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const text = msg instanceof Error ? msg.message : String(msg);
  const t = h(`div.toast.toast-${kind}`, text, h("button.toast-close", { type: "button", "aria-label": "Dismiss", onclick: () => t.remove() }, "×"));
  toastBox.append(t);
  setTimeout(() => t.remove(), kind === "error" ? ms * 2 : ms);
  return t;
}

/** Calls fn() now and every ms while the page is shown; returns a stop function. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      if (!document.hidden) await fn();
    } catch (e) {
      if (e && e.name !== "AbortError" && e.status !== 401) console.warn(e);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Debounces fn: called once, `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

/** A page header: title, optional actions on the right. */
export function pageHeader(title, ...actions) {
  return h("div.page-header", h("h1", title), h("div.page-actions", actions));
}

// ---- virtualised table ----
/**
 * virtualTable({columns: [{key, title, width?, className?, render(row), sort?(row)|false, sig?}],
 *               rowHeight, id(row), name(row), onRow?(row, ev), empty, sortKey?})
 *   -> {el, update(rows), sorted() -> rows}
 * Only the rows in view (plus a few) are in the DOM, between two spacer rows: a thousand rows
 * cost what thirty do. Headers sort (click or Enter); rows carry data-id / data-name. A row is
 * re-rendered only when its data changed (the focus in a row's buttons survives an update).
 */
export function virtualTable({ columns, rowHeight = 34, id = (r) => r.id, name = (r) => r.name, onRow,
  empty = "Nothing here yet.", sortKey: initialSort = null, overscan = 8 }) {
  let sortKey = initialSort;
  let sortDir = 1;
  let rows = [];
  let view = [];
  const cache = new Map();      // id -> {sig, tr}
  const colgroup = h("colgroup", columns.map((c) => h("col", { style: c.width ? { width: c.width } : null })));
  const headRow = h("tr");
  const top = h("tr.vt-pad", h("td", { colspan: columns.length }));
  const bottom = h("tr.vt-pad", h("td", { colspan: columns.length }));
  const tbody = h("tbody");
  const tableEl = h("table.grid.vt-table", colgroup, h("thead", headRow), tbody);
  const el = h("div.vt", { tabindex: "-1" }, tableEl);
  let frame = 0;

  const valueOf = (col, r) => (typeof col.sort === "function" ? col.sort(r) : r[col.key]);
  const resort = () => {
    view = rows;
    if (sortKey) {
      const col = columns.find((c) => c.key === sortKey);
      if (col) view = [...rows].sort((a, b) => compare(valueOf(col, a), valueOf(col, b)) * sortDir);
    }
  };
  const paintHead = () => {
    clear(headRow);
    for (const col of columns) {
      const sorted = sortKey === col.key;
      headRow.append(h("th", { scope: "col", class: col.className, "aria-sort": sorted ? (sortDir > 0 ? "ascending" : "descending") : null },
        col.sort === false ? col.title : h("button.th-sort", {
          type: "button",
          onclick: () => {
            if (sortKey === col.key) sortDir = -sortDir;
            else { sortKey = col.key; sortDir = 1; }
            resort();
            paintHead();
            paint();
          },
        }, col.title, sorted ? (sortDir > 0 ? " ▲" : " ▼") : "")));
    }
  };
  const rowOf = (r) => {
    const key = id(r);
    const sig = JSON.stringify(r);
    const hit = cache.get(key);
    if (hit && hit.sig === sig) return hit.tr;
    const tr = rowCells(h("tr.vt-row", { dataset: { id: key ?? "", name: name(r) ?? "" } }), r, columns, onRow);
    cache.set(key, { sig, tr });
    return tr;
  };
  const paint = () => {
    frame = 0;
    if (!view.length) {
      clear(tbody);
      tbody.append(h("tr.empty", h("td", { colspan: columns.length }, empty)));
      return;
    }
    const headH = headRow.offsetHeight || rowHeight;
    const viewH = el.clientHeight || 600;
    const scroll = Math.max(0, el.scrollTop - headH);
    const first = Math.max(0, Math.floor(scroll / rowHeight) - overscan);
    const last = Math.min(view.length, Math.ceil((scroll + viewH) / rowHeight) + overscan);
    top.firstChild.style.height = `${first * rowHeight}px`;
    bottom.firstChild.style.height = `${(view.length - last) * rowHeight}px`;
    top.hidden = first === 0;
    bottom.hidden = last === view.length;
    const wanted = [top];
    for (let i = first; i < last; i++) wanted.push(rowOf(view[i]));
    wanted.push(bottom);
    // replace the children only where they differ (keeps focus and avoids layout churn)
    let node = tbody.firstChild;
    for (const w of wanted) {
      if (node === w) {
        node = node.nextSibling;
        continue;
      }
      tbody.insertBefore(w, node);
    }
    while (node) {
      const next = node.nextSibling;
      tbody.removeChild(node);
      node = next;
    }
  };
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(paint);
  };
  el.addEventListener("scroll", schedule, { passive: true });
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(schedule) : null;
  if (ro) ro.observe(el);
  paintHead();
  return {
    el,
    update(next) {
      rows = next;
      const ids = new Set(next.map(id));
      for (const k of cache.keys()) if (!ids.has(k)) cache.delete(k);
      resort();
      paint();
    },
    /** Forgets rendered rows (e.g. when something outside the rows' data changed). */
    invalidate(key) {
      if (key === undefined) cache.clear();
      else cache.delete(key);
      paint();
    },
    sorted: () => view,
    destroy() {
      if (ro) ro.disconnect();
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
