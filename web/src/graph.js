// A small line graph drawn on a <canvas> by hand (no charting library: a few hundred bytes).
// graph({title, format}) -> {el, update(points)} with points [[time, value], …]; the last value
// is shown as a readout and kept in the element's data-last (what tests and screen readers read).
import { h } from "./ui.js";

export function graph({ title, format, max = null, color = "#2b6cb0" }) {
  const canvas = h("canvas", { width: 360, height: 120, role: "img", "aria-label": title });
  const readout = h("span.readout", "–");
  const el = h("figure.graph", { dataset: { graph: title.toLowerCase().replace(/[^a-z]+/g, "-") } },
    h("figcaption", h("span", title), readout), canvas);

  function update(points) {
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360;
    const hgt = canvas.clientHeight || 120;
    if (canvas.width !== w * dpr) {
      canvas.width = w * dpr;
      canvas.height = hgt * dpr;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const last = points.length ? points[points.length - 1][1] : null;
    readout.textContent = last === null || last === undefined ? "–" : format(last);
    el.dataset.last = last === null || last === undefined ? "" : String(last);
    el.dataset.points = String(points.length);
    ctx.strokeStyle = "#e3e6ea";
    ctx.lineWidth = 1;
    for (let i = 1; i < 4; i++) {
      const y = Math.round((hgt * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
    }
    if (points.length < 2) return;
    const t0 = points[0][0];
    const t1 = points[points.length - 1][0];
    const top = Math.max(max || 0, ...points.map((p) => p[1] || 0)) || 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach(([t, v], i) => {
      const x = t1 > t0 ? ((t - t0) / (t1 - t0)) * (w - 2) + 1 : w / 2;
      const y = hgt - 2 - ((v || 0) / top) * (hgt - 6);
      if (i) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px sans-serif";
    ctx.fillText(format(top), 4, 12);
  }
  update([]);
  return { el, update };
}
