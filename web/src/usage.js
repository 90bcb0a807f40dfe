// An instance's `usage` (the latest metrics sample, null until the collector has one) as figures.
import { DASH, fmtBytes, fmtPercent, fmtRate, h } from "./ui.js";

/** Bits per second received and sent over all NICs, or null. */
export function netRates(u) {
  if (!u || !u.nics) return null;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(u.nics)) {
    rx += (n.rx_bps || 0);
    tx += (n.tx_bps || 0);
  }
  return { rx, tx };
}

export const cpuOf = (i) => (i.usage ? i.usage.cpu_percent : null);
export const memOf = (i) => (i.usage ? i.usage.memory_bytes : null);
export const netOf = (i) => {
  const r = netRates(i.usage);
  return r ? r.rx + r.tx : null;
};

export function cpuCell(i) {
  return i.usage ? fmtPercent(i.usage.cpu_percent) : DASH;
}
export function memCell(i) {
  const u = i.usage;
  if (!u) return DASH;
  return u.memory_limit_bytes ? `${fmtBytes(u.memory_bytes)} / ${fmtBytes(u.memory_limit_bytes, 0)}` : fmtBytes(u.memory_bytes);
}
export function netCell(i) {
  const r = netRates(i.usage);
  if (!r) return DASH;
  return h("span", { title: "received · sent" }, `↓ ${fmtRate(r.rx)} ↑ ${fmtRate(r.tx)}`);
}
