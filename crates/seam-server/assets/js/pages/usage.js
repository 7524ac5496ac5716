// Usage: rows this billing period per day, per integration and per table, against the row limit, and
// the ways to use fewer rows.

import { h, mount, num, compact, banner } from "../dom.js";
import { api } from "../api.js";
import { usageChart, hbars } from "../charts.js";
import { meterClass } from "./dashboard.js";

export async function render(main, _params, ctx) {
  const [usage, settings, sources] = await Promise.all([api.get("/usage"), api.get("/settings"), api.get("/sources")]);
  const names = Object.fromEntries(sources.map((s) => [s.id, s]));
  for (const s of usage.by_source || []) names[s.source_id] = names[s.source_id] || { name: s.name, display_name: s.display_name };
  const pct = Number(usage.percent_used || 0);
  const meter = h("div", { class: meterClass(pct) }, h("div"));
  meter.firstChild.style.width = `${Math.min(100, pct)}%`;
  const period = usage.billing_period || {};
  const days = (usage.by_day || []).filter((d) => d.rows > 0).length;
  const perDay = days ? usage.rows_used / days : 0;

  const limit = h("input", { type: "number", id: "row-limit", min: 1, step: 1000, value: settings.row_limit });
  const stopAt = h("input", { type: "checkbox", id: "stop-at-limit", checked: settings.stop_replication_at_limit });
  const settingsMsg = h("div");
  const save = h("button", { class: "btn", type: "button", id: "save-usage-settings" }, "Update Settings");
  save.addEventListener("click", async () => {
    save.disabled = true;
    try {
      await api.put("/settings", { row_limit: Number(limit.value), stop_replication_at_limit: stopAt.checked });
      mount(settingsMsg, banner("success", "Saved.", ""));
      ctx.navigate("/usage", { replace: true });
    } catch (e) { mount(settingsMsg, banner("error", "Not saved.", e.message)); } finally { save.disabled = false; }
  });

  mount(main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Usage"),
      h("p", { class: "sub" }, `Billing period ${period.start?.slice(0, 10) || "?"} – ${period.end?.slice(0, 10) || "?"}. Rows count once per load: every new or changed row in every selected table and column.`))),
    pct >= 100 ? banner("error", "You are over the row limit.", settings.stop_replication_at_limit ? "Scheduled extractions are stopped until the next billing period." : "Extractions go on; lower your usage with the tips below.")
      : pct >= 70 ? banner("warning", `You have used ${pct.toFixed(0)}% of your row limit.`, "See the tips below to use fewer rows.") : null,
    h("div", { class: "grid grid-3" },
      h("div", { class: "card stat" }, h("div", { class: "label" }, "Rows used"), h("div", { class: "value", id: "rows-used" }, num(usage.rows_used)),
        meter, h("div", { class: "note" }, `${pct.toFixed(pct > 0 && pct < 1 ? 2 : 1)}% of ${num(usage.row_limit)}`)),
      h("div", { class: "card stat" }, h("div", { class: "label" }, "Row limit"), h("div", { class: "value" }, compact(usage.row_limit)),
        h("div", { class: "note" }, usage.stop_replication_at_limit ? "Extractions stop at the limit" : "Extractions go on past the limit")),
      h("div", { class: "card stat" }, h("div", { class: "label" }, "Average per active day"), h("div", { class: "value" }, num(Math.round(perDay))),
        h("div", { class: "note" }, perDay ? `≈ ${compact(perDay * 30)} rows per 30 days at this pace` : "no rows yet"))),
    h("div", { class: "card" }, h("h2", {}, "Rows per day, and the running total against the limit"), usageChart(usage, { height: 260 })),
    h("div", { class: "grid grid-2" },
      h("div", { class: "card" }, h("h2", {}, "By integration"),
        hbars((usage.by_source || []).map((s) => ({ label: s.display_name, sub: s.name, value: s.rows })), { empty: "No rows loaded this period." })),
      h("div", { class: "card" }, h("h2", {}, "By table"),
        hbars((usage.by_table || []).slice(0, 15).map((t) => ({ label: `${names[t.source_id]?.name || t.source_id}.${t.table_name}`, value: t.rows })), { empty: "No rows loaded this period." }))),
    h("div", { class: "grid grid-main" },
      h("div", { class: "card" }, h("h2", {}, "How to use fewer rows"),
        h("ul", { class: "tips", id: "usage-tips" },
          h("li", {}, h("strong", {}, "Replicate fewer tables. "), "Deselect tables nobody reports on (Tables to Replicate). Child tables such as ticket_audits and ticket_comments are large."),
          h("li", {}, h("strong", {}, "Replicate fewer columns. "), "A row counts once however many columns it has, but dropping wide columns keeps loads small and fast."),
          h("li", {}, h("strong", {}, "Lower the Replication Frequency. "), "A ticket changed ten times in a day is one row at 24 hours and up to ten at 30 minutes."),
          h("li", {}, h("strong", {}, "Prefer incremental tables. "), "Incremental tables load only new and changed rows; Full Table ones (groups, ticket_fields, …) reload every row on every sync."),
          h("li", {}, h("strong", {}, "Think before a reset. "), "Changing the historical start date re-replicates everything since that date."))),
      h("div", { class: "card" }, h("h2", {}, "Row limit"),
        h("div", { class: "field" }, h("label", { for: "row-limit" }, "Rows per billing period"), limit),
        h("div", { class: "field" }, h("label", { class: "check" }, stopAt, "Stop scheduled extractions at the limit")),
        h("div", { class: "form-actions" }, save), settingsMsg)));
}
