// Charts drawn as inline SVG (no chart library): cumulative usage against the row limit, daily bars,
// horizontal bars, and a timeline of extraction jobs.

import { h, compact, num, duration } from "./dom.js";

const s = (tag, attrs, ...children) => h("svg:" + tag, attrs, ...children);

/** The smallest of 1, 2, 5 × 10^k (at least 1: rows are whole) that is ≥ `raw`. */
function niceStep(raw) {
  if (!(raw > 1)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/**
 * The y axis of a count chart that must reach `top`: whole-number ticks from 0, about `intervals`
 * apart, in steps of 1, 2 or 5 × 10^k. An empty chart (top 0) gets 0–4, so it reads "nothing yet",
 * never 0.3 rows.
 */
export function countAxis(top, intervals = 4) {
  const want = Math.max(0, Number(top) || 0);
  const step = want > 0 ? niceStep(want / intervals) : 1;
  const n = want > 0 ? Math.max(1, Math.ceil(want / step)) : intervals;
  const ticks = [];
  for (let k = 0; k <= n; k++) ticks.push(k * step);
  return { max: n * step, ticks };
}

function days(start, end) {
  const out = [];
  const d = new Date(start + "T00:00:00Z");
  const last = new Date(end + "T00:00:00Z");
  while (d <= last && out.length < 400) {
    out.push(d.toISOString().slice(0, 10));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

const shortDay = (iso) => new Date(iso + "T00:00:00Z").toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });

/**
 * Rows used so far in the billing period (a cumulative area, with daily bars beneath) against the row
 * limit (a dashed line). `usage` is the API's Usage object.
 */
export function usageChart(usage, { height = 230, showLimit = true } = {}) {
  const W = 1000, H = height, L = 56, R = 16, T = 16, B = 28;
  const period = usage.billing_period || {};
  const start = (period.start || "").slice(0, 10);
  const end = (period.end || "").slice(0, 10);
  const all = start && end ? days(start, end) : (usage.by_day || []).map((d) => d.day);
  const byDay = Object.fromEntries((usage.by_day || []).map((d) => [d.day, Number(d.rows)]));
  const today = new Date().toISOString().slice(0, 10);
  let running = 0;
  const points = [];
  all.forEach((d, i) => {
    running += byDay[d] || 0;
    if (d <= today) points.push({ i, d, total: running, daily: byDay[d] || 0 });
  });
  const limit = Number(usage.row_limit || 0);
  // Scale to the usage, so a small sync is visible; the limit line shows when it is in reach.
  const reach = showLimit && limit && running > 0 && limit <= running * 4 ? Math.max(limit, running) * 1.05 : running * 1.15;
  const axis = countAxis(reach);
  const max = axis.max;
  const n = Math.max(all.length, 1);
  const x = (i) => L + ((W - L - R) * (i + 0.5)) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Rows used this billing period: ${num(running)} of ${num(limit)}` });
  for (const v of axis.ticks) {
    svg.append(s("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s("text", { class: "y-tick", x: L - 8, y: y(v) + 4, "text-anchor": "end" }, compact(v)));
  }
  // Daily bars on the same scale as the running total: a bar is what that day added.
  const bw = Math.max(2, ((W - L - R) / n) * 0.6);
  for (const p of points) {
    if (!p.daily) continue;
    const bh = Math.max(1, y(0) - y(p.daily));
    svg.append(s("rect", { class: "bar-fill-soft", x: x(p.i) - bw / 2, y: y(0) - bh, width: bw, height: bh, rx: 2 },
      s("title", {}, `${shortDay(p.d)}: ${num(p.daily)} rows`)));
  }
  if (points.length) {
    const line = points.map((p) => `${x(p.i).toFixed(1)},${y(p.total).toFixed(1)}`).join(" L");
    const first = points[0], last = points[points.length - 1];
    svg.append(
      s("path", { class: "area", d: `M${x(first.i)},${y(0)} L${line} L${x(last.i)},${y(0)} Z` }),
      s("path", { class: "line", d: `M${line}` }),
      s("circle", { class: "dot", cx: x(last.i), cy: y(last.total), r: 4 }, s("title", {}, `${num(last.total)} rows so far`)));
  }
  if (showLimit && limit && limit <= max) {
    svg.append(s("line", { class: "limit-line", x1: L, x2: W - R, y1: y(limit), y2: y(limit) }),
      s("text", { class: "limit-label", x: W - R, y: y(limit) - 6, "text-anchor": "end" }, `row limit ${compact(limit)}`));
  }
  const step = Math.max(1, Math.ceil(n / 8));
  all.forEach((d, i) => {
    if (i % step === 0) svg.append(s("text", { x: x(i), y: H - 8, "text-anchor": "middle" }, shortDay(d)));
  });
  const legend = h("div", { class: "legend" },
    h("span", {}, h("i", { class: "l-used" }), "rows used (running total)"),
    h("span", {}, "▮ rows per day"),
    showLimit && limit ? h("span", {}, h("i", { class: "l-limit" }), limit > max ? `row limit ${num(limit)} (far above, not drawn to scale)` : `row limit ${num(limit)}`) : null);
  return h("div", {}, svg, legend);
}

/** Horizontal bars: [{label, value, sub}] largest first. */
export function hbars(items, { empty = "Nothing yet." } = {}) {
  if (!items.length) return h("p", { class: "muted" }, empty);
  const max = Math.max(1, ...items.map((i) => Number(i.value)));
  return h("div", { class: "hbars" }, items.map((i) => {
    const fill = h("div", { class: "fill" });
    fill.style.width = `${Math.max(1.5, (100 * Number(i.value)) / max)}%`;
    return [
      h("div", { title: i.label, class: "label" }, i.label, i.sub ? h("div", { class: "muted small" }, i.sub) : null),
      h("div", { class: "track" }, fill),
      h("div", { class: "val" }, num(i.value)),
    ];
  }));
}

/** Jobs as bars on a time axis (oldest left): width is the duration, colour the outcome. */
export function jobTimeline(jobs) {
  const list = [...jobs].reverse().slice(-30);
  if (!list.length) return h("p", { class: "muted" }, "No extractions yet.");
  const W = 1000, H = 90, L = 8, R = 8, T = 10, B = 24;
  const t0 = Math.min(...list.map((j) => new Date(j.start_time).getTime()));
  const t1 = Math.max(Date.now(), ...list.map((j) => new Date(j.completion_time || Date.now()).getTime()));
  const span = Math.max(t1 - t0, 60_000);
  const x = (t) => L + ((W - L - R) * (t - t0)) / span;
  const colour = { succeeded: "#15803d", succeeded_with_warnings: "#b45309", failed: "#b91c1c", cancelled: "#94a3b8", running: "#0f766e" };
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Extraction timeline" });
  svg.append(s("line", { class: "grid-line", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const j of list) {
    const a = new Date(j.start_time).getTime();
    const b = new Date(j.completion_time || Date.now()).getTime();
    const w = Math.max(8, x(b) - x(a));
    svg.append(s("rect", { x: x(a), y: T, width: w, height: H - T - B - 6, rx: 3, fill: colour[j.status] || "#64748b" },
      s("title", {}, `${j.job_name}: ${j.status}, ${duration(j.start_time, j.completion_time)}, ${num(j.rows_loaded)} rows`)));
  }
  const fmt = (t) => new Date(t).toLocaleString("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "UTC" });
  svg.append(s("text", { x: L, y: H - 6 }, fmt(t0) + " UTC"), s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
  return svg;
}
