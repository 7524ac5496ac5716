// Stitch Dashboard: every integration with its status, last and next sync, rows this billing period;
// the Add an Integration button; row usage against the limit.

import { h, mount, num, when, relative, pill, TYPE_LOGO, compact } from "../dom.js";
import { api } from "../api.js";
import { usageChart } from "../charts.js";

export function integrationCell(s) {
  return h("div", { class: "intg" },
    h("img", { src: TYPE_LOGO[s.type] || "/assets/favicon.svg", alt: "", width: 34, height: 34 }),
    h("div", {},
      h("a", { class: "name", href: `/integrations/${s.id}`, "data-link": true }, s.display_name),
      h("div", { class: "schema" }, s.name)));
}

export function meterClass(pct) {
  return pct >= 100 ? "meter over" : pct >= 70 ? "meter warn" : "meter";
}

export async function render(main) {
  const draw = async () => {
    const [sources, usage] = await Promise.all([api.get("/sources"), api.get("/usage")]);
    const rows = Object.fromEntries((usage.by_source || []).map((r) => [r.source_id, r.rows]));
    const pct = Number(usage.percent_used || 0);
    const meter = h("div", { class: meterClass(pct) }, h("div"));
    meter.firstChild.style.width = `${Math.min(100, pct)}%`;
    const counts = {};
    for (const s of sources) counts[s.status] = (counts[s.status] || 0) + 1;

    const table = sources.length === 0
      ? h("div", { class: "empty" },
          h("h2", {}, "No integrations yet"),
          h("p", {}, "Connect Zendesk Support and seam will replicate its data into your warehouse on a schedule."),
          h("p", {}, h("a", { class: "btn btn-primary", href: "/integrations/new", "data-link": true }, "Add an Integration")))
      : h("table", { id: "integrations" },
          h("thead", {}, h("tr", {},
            h("th", {}, "Integration"), h("th", {}, "Status"), h("th", {}, "Last sync"), h("th", {}, "Next sync"),
            h("th", { class: "num" }, "Rows this period"))),
          h("tbody", {}, sources.map((s) => h("tr", { "data-source-id": s.id },
            h("td", {}, integrationCell(s)),
            h("td", {}, pill(s.status), s.sync_status === "In Progress" ? h("div", { class: "muted small" }, h("span", { class: "pulse" }), " syncing") : null),
            h("td", { title: when(s.last_sync_completed_at || s.last_sync_started_at) }, relative(s.last_sync_completed_at || s.last_sync_started_at)),
            h("td", { title: when(s.schedule?.next_fire_time) }, s.paused_at ? "Paused" : s.status === "Not Configured" ? "Select tables first" : relative(s.schedule?.next_fire_time)),
            h("td", { class: "num" }, num(rows[s.id] || 0))))));

    mount(main,
      h("div", { class: "page-head" },
        h("div", {}, h("h1", {}, "Dashboard"), h("p", { class: "sub" }, "Your integrations and what they replicate.")),
        h("a", { class: "btn btn-primary", href: "/integrations/new", "data-link": true, id: "add-integration" }, "+ Add an Integration")),
      h("div", { class: "grid grid-4" },
        stat("Integrations", num(sources.length), Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(" · ") || "none yet"),
        stat("Rows this period", num(usage.rows_used), `${day(usage.billing_period?.start)} – ${day(usage.billing_period?.end)}`),
        h("div", { class: "card stat" }, h("div", { class: "label" }, "Row limit"), h("div", { class: "value" }, compact(usage.row_limit)),
          meter, h("div", { class: "note" }, `${pct.toFixed(pct < 1 && pct > 0 ? 2 : 1)}% used`)),
        stat("Syncing now", num(sources.filter((s) => s.sync_status === "In Progress").length), "jobs in progress")),
      h("div", { class: "card table-card" }, table),
      h("div", { class: "card" },
        h("div", { class: "page-head" }, h("h2", {}, "Row usage this billing period"), h("a", { href: "/usage", "data-link": true }, "Usage details →")),
        usageChart(usage)));
  };
  await draw();
  // Status and next sync move on their own: refresh every 10 seconds while the page is open.
  // Skipped while focus is inside the page, so keyboard users never lose their place.
  const timer = setInterval(() => {
    const focused = document.activeElement;
    if (focused && focused !== main && main.contains(focused)) return;
    draw().catch(() => {});
  }, 10_000);
  return () => clearInterval(timer);
}

function stat(label, value, note) {
  return h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "note" }, note));
}

function day(t) {
  if (!t) return "";
  return new Date(t.length <= 10 ? t + "T00:00:00Z" : t).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}
