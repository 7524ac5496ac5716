// Small DOM helpers: build elements without innerHTML (nothing from the API is ever parsed as HTML),
// and format numbers, times and durations the same way on every page.

/** h("div", {class: "x", onclick: fn}, child, "text", [children]) */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected" || k === "indeterminate") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const nf = new Intl.NumberFormat("en-US");
export const num = (n) => nf.format(Number(n || 0));

export function compact(n) {
  n = Number(n || 0);
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1).replace(/\.0$/, "") + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1).replace(/\.0$/, "") + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1).replace(/\.0$/, "") + "k";
  return String(n);
}

const dtf = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "UTC" });
const df = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", year: "numeric", timeZone: "UTC" });

/** "Dec 1, 13:05 UTC" */
export function when(t) {
  if (!t) return "—";
  return dtf.format(new Date(t)) + " UTC";
}

export function day(t) {
  if (!t) return "—";
  return df.format(new Date(t));
}

/** "3 min ago" / "in 25 min" */
export function relative(t, now = Date.now()) {
  if (!t) return "—";
  const s = Math.round((new Date(t).getTime() - now) / 1000);
  const a = Math.abs(s);
  let text;
  if (a < 45) text = "a few seconds";
  else if (a < 90 * 60) text = `${Math.round(a / 60)} min`;
  else if (a < 36 * 3600) text = `${Math.round(a / 3600)} h`;
  else text = `${Math.round(a / 86400)} days`;
  if (a < 45) return s <= 0 ? "just now" : "in a few seconds";
  return s < 0 ? `${text} ago` : `in ${text}`;
}

/** "1 min 05 s" */
export function duration(start, end) {
  if (!start) return "—";
  const ms = (end ? new Date(end) : new Date()).getTime() - new Date(start).getTime();
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function frequencyLabel(minutes) {
  const m = Number(minutes);
  if (m < 60) return `${m} minutes`;
  if (m === 60) return "1 hour";
  return `${m / 60} hours`;
}

/** A status pill: Active, Pending, Not Configured, Paused, Failing, running, succeeded, … */
export function pill(status, text) {
  const cls = "pill pill-" + String(status).toLowerCase().replace(/\s+/g, "-");
  return h("span", { class: cls, "data-status": status }, text || status);
}

export function banner(kind, title, message, fix) {
  return h("div", { class: `banner banner-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("div", {},
      title ? h("strong", {}, title, " ") : null,
      message ? h("span", { class: "message" }, message) : null,
      fix ? h("span", { class: "fix" }, fix) : null));
}

export const TYPE_LOGO = { "platform.zendesk": "/assets/zendesk.svg" };
export const TYPE_NAME = { "platform.zendesk": "Zendesk Support" };
