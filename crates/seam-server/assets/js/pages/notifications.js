// Notifications: what seam told you (failed extractions, usage thresholds, …), with Dismiss, and the
// webhook that receives them too.

import { h, mount, when, relative, pill, banner } from "../dom.js";
import { api } from "../api.js";

export async function render(main, _params, ctx) {
  const showAll = new URLSearchParams(location.search).get("all") === "1";
  const [list, settings] = await Promise.all([api.get(`/notifications${showAll ? "?include_dismissed=true" : ""}`), api.get("/settings")]);
  const items = list.map((n) => {
    const dismiss = n.dismissed_at ? null : h("button", { class: "btn btn-small", type: "button", "data-dismiss": n.id }, "Dismiss");
    dismiss?.addEventListener("click", async () => {
      dismiss.disabled = true;
      try { await api.post(`/notifications/${n.id}/dismiss`); ctx.navigate(location.pathname + location.search, { replace: true }); }
      catch (e) { ctx.flash("error", "Not dismissed.", e.message); dismiss.disabled = false; }
    });
    return h("li", { class: n.dismissed_at ? "note dismissed" : "note", "data-notification": n.id },
      pill(n.level),
      h("div", { class: "body" }, h("strong", {}, n.subject), h("p", { class: "small" }, n.message),
        h("div", { class: "muted small", title: when(n.created_at) }, relative(n.created_at),
          n.source_id ? [" · ", h("a", { href: `/integrations/${n.source_id}`, "data-link": true }, "open the integration")] : null)),
      dismiss);
  });
  const hook = h("input", { type: "url", id: "webhook-url", value: settings.notification_webhook_url || "", placeholder: "https://hooks.example.com/seam" });
  const hookMsg = h("div");
  const save = h("button", { class: "btn", type: "button", id: "save-webhook" }, "Update Settings");
  save.addEventListener("click", async () => {
    save.disabled = true;
    try {
      await api.put("/settings", { notification_webhook_url: hook.value.trim() || null });
      mount(hookMsg, banner("success", "Saved.", hook.value.trim() ? "Notifications are also posted to this URL as JSON." : "No webhook."));
    } catch (e) { mount(hookMsg, banner("error", "Not saved.", e.message)); } finally { save.disabled = false; }
  });
  mount(main,
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Notifications"), h("p", { class: "sub" }, "Failed extractions, connection problems and row-usage thresholds.")),
      h("a", { class: "btn btn-small", href: showAll ? "/notifications" : "/notifications?all=1", "data-link": true }, showAll ? "Hide dismissed" : "Show dismissed")),
    h("div", { class: "grid grid-main" },
      h("div", { class: "card table-card" },
        items.length ? h("ul", { class: "notes", id: "notifications" }, items)
          : h("div", { class: "empty" }, h("h2", {}, "All quiet"), h("p", {}, "seam tells you here when an extraction fails or usage nears the row limit."))),
      h("div", { class: "card" }, h("h2", {}, "Webhook"),
        h("p", { class: "muted small" }, "seam can also POST each notification as JSON to a URL of yours (Slack, PagerDuty, a script)."),
        h("div", { class: "field" }, h("label", { for: "webhook-url" }, "Webhook URL"), hook),
        h("div", { class: "form-actions" }, save), hookMsg)));
}
