// The dashboard's entry point: a small client-side router over the pages in ./pages/. Each page is
// `render(main, params, ctx)` and may return a cleanup function (stops its polling timers).

import { h, mount, banner } from "./dom.js";
import { api } from "./api.js";
import * as dashboard from "./pages/dashboard.js";
import * as add from "./pages/add.js";
import * as integration from "./pages/integration.js";
import * as usage from "./pages/usage.js";
import * as notifications from "./pages/notifications.js";

const routes = [
  [/^\/$/, dashboard.render, "dashboard", "Dashboard"],
  [/^\/integrations\/new\/?$/, add.renderPicker, "dashboard", "Add an Integration"],
  [/^\/integrations\/new\/zendesk\/?$/, add.renderZendesk, "dashboard", "Add Zendesk Support"],
  [/^\/integrations\/new\/type\/([^/]+)\/?$/, add.renderConnector, "dashboard", "Add an Integration"],
  [/^\/integrations\/(\d+)(?:\/(extractions|loads|tables|settings))?\/?$/, integration.render, "dashboard", "Integration Details"],
  [/^\/usage\/?$/, usage.render, "usage", "Usage"],
  [/^\/notifications\/?$/, notifications.render, "notifications", "Notifications"],
];

const main = document.getElementById("main");
const flashArea = document.getElementById("flash");
let cleanup = null;
let pendingFlash = null;

/** Shows a banner at the top of the page; `persist` keeps it across the next navigation. */
export function flash(kind, title, message, fix, { persist = false } = {}) {
  const b = banner(kind, title, message, fix);
  b.append(h("button", { class: "btn btn-quiet btn-small close", type: "button", "aria-label": "Dismiss", onclick: () => b.remove() }, "✕"));
  if (persist) pendingFlash = b;
  else mount(flashArea, b);
  return b;
}

export function clearFlash() {
  flashArea.replaceChildren();
}

/** Goes to a page inside the app without reloading. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", path);
  else history.pushState({}, "", path);
  route();
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* a page's cleanup never blocks navigation */ } }
  cleanup = null;
  clearFlash();
  if (pendingFlash) { flashArea.append(pendingFlash); pendingFlash = null; }
  const path = location.pathname;
  for (const [re, render, nav, title] of routes) {
    const m = path.match(re);
    if (!m) continue;
    document.title = `${title} · seam`;
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    mount(main, h("p", { class: "loading" }, "Loading…"));
    try {
      const ret = await render(main, m.slice(1), { navigate, flash });
      if (typeof ret === "function") cleanup = ret;
    } catch (e) {
      mount(main, banner("error", "Could not load this page.", e.message));
    }
    refreshNotificationCount();
    return;
  }
  mount(main, h("div", { class: "empty card" }, h("h2", {}, "Page not found"), h("p", {}, h("a", { href: "/", "data-link": true }, "Back to the Dashboard"))));
}

async function refreshNotificationCount() {
  try {
    const list = await api.get("/notifications");
    const el = document.getElementById("notification-count");
    el.textContent = String(list.length);
    el.hidden = list.length === 0;
  } catch { /* the count is a hint, never an error */ }
}

// Same-origin links marked data-link navigate in place.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
route();
