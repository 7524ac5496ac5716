// Add an Integration: the picker lists every connector of the registry (GET /v4/source-types).
// Zendesk Support keeps the seed's form; any other connector (a registered Singer tap) gets a form
// drawn from its spec, secrets as password fields. Save Integration creates the integration, the
// connection check runs with visible progress, and Success! shows at the top of the page; on an error
// the form stays as typed, with what to fix.

import { h, mount, banner } from "../dom.js";
import { api, ui, ApiError } from "../api.js";
import { schemaName } from "../naming.js";

export async function renderPicker(main) {
  let types = [];
  try { types = await api.get("/source-types"); } catch { /* the Zendesk tile still shows */ }
  const others = types.filter((t) => t.type !== "platform.zendesk");
  mount(main,
    h("div", { class: "crumbs" }, h("a", { href: "/", "data-link": true }, "Dashboard"), " / Add an Integration"),
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Add an Integration"), h("p", { class: "sub" }, "Pick the source to replicate into your warehouse."))),
    h("div", { class: "tiles" },
      h("a", { class: "card tile", href: "/integrations/new/zendesk", "data-link": true, id: "pick-zendesk" },
        h("img", { src: "/assets/zendesk.svg", alt: "", width: 56, height: 56 }), "Zendesk Support",
        h("span", { class: "muted small" }, "Tickets, users, organizations and 25 more tables")),
      others.map((t) => h("a", { class: "card tile", href: `/integrations/new/type/${encodeURIComponent(t.type)}`, "data-link": true, id: `pick-${t.type.replace(/[^a-z0-9]/g, "-")}` },
        t.display_name, h("span", { class: "muted small" }, t.type)))),
    h("p", { class: "muted small" }, others.length
      ? "Singer taps are registered by the admin when starting seam (seam serve --singer-tap NAME=PATH)."
      : "Register any Singer tap as a connector when starting seam: seam serve --singer-tap NAME=/path/to/tap."));
}

/** A form field for one property of a connector's spec (JSON Schema). */
export function specInput(name, prop, required) {
  const id = `prop-${name}`;
  const attrs = { id, name, autocomplete: "off", spellcheck: "false", "data-property": name, required: required || undefined };
  if (prop.writeOnly) return h("input", { ...attrs, type: "password" });
  if (prop.type === "integer") return h("input", { ...attrs, type: "number", step: "1" });
  if (prop.type === "number") return h("input", { ...attrs, type: "number", step: "any" });
  if (prop.type === "array" || prop.type === "object") return h("textarea", { ...attrs, rows: 3, placeholder: prop.type === "array" ? "[\"…\"]" : "{}" });
  if (prop.type === "boolean") return h("input", { ...attrs, type: "checkbox", required: undefined });
  return h("input", attrs);
}

/** The properties a spec form holds, as the API takes them; throws a message on bad input. */
export function specProperties(form, schema) {
  const out = {};
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const el = form.querySelector(`[data-property="${CSS.escape(name)}"]`);
    if (!el) continue;
    if (prop.type === "boolean") { out[name] = el.checked; continue; }
    const v = el.value.trim();
    if (v === "") continue;
    if (prop.type === "array" || prop.type === "object") {
      try { out[name] = JSON.parse(v); } catch (e) { throw new Error(`${prop.title || name} is not JSON: ${e.message}`); }
    } else {
      out[name] = prop.type === "integer" || prop.type === "number" ? Number(v) : v;
    }
  }
  const extra = form.querySelector("#prop-extra");
  if (extra && extra.value.trim()) {
    let parsed;
    try { parsed = JSON.parse(extra.value); } catch (e) { throw new Error(`Other settings are not JSON: ${e.message}`); }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("Other settings must be one JSON object");
    Object.assign(out, parsed);
  }
  return out;
}

/** Add an Integration → any connector but Zendesk: a form drawn from its spec. */
export async function renderConnector(main, params, { navigate, flash }) {
  const type = decodeURIComponent(params[0]);
  const types = await api.get("/source-types");
  const spec = types.find((t) => t.type === type);
  if (!spec) {
    mount(main, banner("error", "Unknown connector", `seam has no connector ${type}: pick one on Add an Integration.`));
    return;
  }
  const schema = spec.properties_schema || {};
  const required = new Set(schema.required || []);
  const name = h("input", { id: "display_name", name: "display_name", required: true, autocomplete: "off" });
  const schemaOut = h("code", { id: "schema-name" }, "—");
  name.addEventListener("input", () => { schemaOut.textContent = schemaName(name.value) || "—"; });
  const start = h("input", { id: "start_date", name: "start_date", type: "date", required: true, value: oneYearBack(), max: new Date().toISOString().slice(0, 10) });
  const freq = h("fieldset", { class: "segmented", id: "frequency", "aria-labelledby": "frequency-title" },
    FREQUENCIES.map(([m, label]) => h("label", {}, h("input", { type: "radio", name: "frequency", value: m, checked: m === 30, id: `frequency-${m}` }), h("span", {}, label))));
  const formError = h("div", { id: "form-error" });
  const progress = h("div", { id: "check-progress", class: "card", hidden: true });
  const save = h("button", { type: "submit", class: "btn btn-primary", id: "save-integration" }, "Save Integration");
  let createdId = null;
  let cancelled = false;

  const fields = Object.entries(schema.properties || {}).map(([pname, prop]) =>
    field(`prop-${pname}`, prop.title || pname, specInput(pname, prop, required.has(pname)),
      [prop.description && prop.description.replace(/\.$/, ""), prop.writeOnly ? "stored encrypted, never shown again" : null]
        .filter(Boolean).join("; ")));
  const extra = schema.additionalProperties
    ? field("prop-extra", "Other settings (JSON)", h("textarea", { id: "prop-extra", rows: 6, spellcheck: "false", placeholder: "{\"host\": \"db.internal\", \"port\": 5432}" }),
      "The rest of the connector's config, as one JSON object: the tap checks it at the connection check.")
    : null;

  const waitForCheck = async (id, previousName) => {
    for (let i = 0; i < 1200 && !cancelled; i++) {
      let check = null;
      try { check = await api.get(`/sources/${id}/last-connection-check`); } catch (e) { if (!(e instanceof ApiError && e.status === 404)) throw e; }
      if (check && check.name !== previousName && check.status !== "running") return check;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new ApiError(0, "Timeout", "the connection check is taking too long: look at the integration's Extractions tab");
  };

  const onSubmit = async (e) => {
    e.preventDefault();
    formError.replaceChildren();
    if (!form.reportValidity()) return;
    save.disabled = true;
    save.textContent = "Saving…";
    try {
      const properties = {
        ...specProperties(form, schema),
        start_date: `${start.value}T00:00:00Z`,
        frequency_in_minutes: String(form.querySelector("input[name=frequency]:checked")?.value || 30),
      };
      mount(progress, h("h2", {}, "Checking the connection…"), h("div", { class: "bar indeterminate" }, h("div")));
      progress.hidden = false;
      let previousName = null;
      let source;
      if (createdId === null) {
        source = await api.post("/sources", { display_name: name.value.trim(), type, properties });
        createdId = source.id;
      } else {
        previousName = (await api.get(`/sources/${createdId}/last-connection-check`).catch(() => null))?.name || null;
        source = await api.put(`/sources/${createdId}`, { properties, confirm_reset: true });
        const now = await api.get(`/sources/${createdId}/last-connection-check`).catch(() => null);
        if (!now || now.name === previousName) await api.post(`/sources/${createdId}/check`);
      }
      const check = await waitForCheck(createdId, previousName);
      progress.hidden = true;
      if (check.status === "succeeded") {
        flash("success", "Success!", `${source.display_name} is connected.`,
          "Now choose the Tables to Replicate; seam starts replicating once you Finalize Your Selections.", { persist: true });
        navigate(`/integrations/${createdId}/tables`);
        return;
      }
      name.disabled = true;
      mount(formError, banner("error", "The connection check failed.", check.message || "the connection check failed",
        "Fix the settings below and click Save Integration to check again."));
    } catch (err) {
      progress.hidden = true;
      mount(formError, banner("error", "Could not save the integration.", err.message));
    } finally {
      save.disabled = false;
      save.textContent = "Save Integration";
      window.scrollTo({ top: 0, behavior: "instant" });
    }
  };

  const form = h("form", { class: "form", id: "connector-form", onsubmit: onSubmit },
    field("display_name", "Integration Name", name, null),
    h("p", { class: "schema-preview", id: "schema-preview" }, "Creates the schema ", schemaOut, " in your warehouse."),
    h("h2", { class: "section-title" }, `${spec.display_name} settings`),
    fields, extra,
    h("h2", { class: "section-title" }, "Sync Historical Data"),
    field("start_date", "Replicate data from", start, "Passed to the connector as start_date."),
    h("h2", { class: "section-title", id: "frequency-title" }, "Replication Frequency"),
    h("div", { class: "field" }, freq),
    h("div", { class: "form-actions" }, save, h("a", { class: "btn btn-quiet", href: "/", "data-link": true }, "Cancel")));

  mount(main,
    h("div", { class: "crumbs" }, h("a", { href: "/", "data-link": true }, "Dashboard"), " / ", h("a", { href: "/integrations/new", "data-link": true }, "Add an Integration"), ` / ${spec.display_name}`),
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, `Configure ${spec.display_name}`), h("p", { class: "sub" }, type))),
    formError,
    h("div", { class: "grid grid-main" }, h("div", { class: "card" }, form), h("div", { class: "stack" }, progress)));
  name.focus();
  return () => { cancelled = true; };
}

const FREQUENCIES = [[30, "30 minutes"], [60, "1 hour"], [180, "3 hours"], [360, "6 hours"], [720, "12 hours"], [1440, "24 hours"]];

function oneYearBack() {
  const d = new Date();
  d.setUTCFullYear(d.getUTCFullYear() - 1);
  return d.toISOString().slice(0, 10);
}

function field(id, label, input, hint) {
  return h("div", { class: "field", id: `field-${id}` },
    h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    h("p", { class: "error-text", id: `${id}-error`, hidden: true }));
}

/** Which form field an API error message is about, so the form can point at it. */
function fieldOf(message) {
  const m = message.toLowerCase();
  if (m.includes("subdomain") || m.includes("site prefix") || m.includes("zendesk.com") || m.includes("no zendesk account")) return "subdomain";
  if (m.includes("schema name") && !m.includes("display_name")) return "schema_name";
  if (m.includes("name") && (m.includes("display_name") || m.includes("non-unique") || m.includes("schema"))) return "display_name";
  if (m.includes("token") || m.includes("401") || m.includes("credential") || m.includes("password")) return "api_token";
  if (m.includes("email") || m.includes("agent")) return "email";
  if (m.includes("start_date")) return "start_date";
  if (m.includes("frequency") || m.includes("cron")) return "frequency";
  return null;
}

const FIX = {
  subdomain: "Check the Zendesk site prefix: only the part before .zendesk.com (acme for acme.zendesk.com).",
  display_name: "Choose another Integration Name, or click “Use a different schema name?”.",
  schema_name: "Schema names use only lowercase letters, digits and underscores, and must be unique.",
  api_token: "Check the Zendesk login email and API token (Zendesk: Settings → Channels → API → Token Access).",
  email: "Use the email you sign in to Zendesk with; an admin account reads every table.",
  start_date: "Pick a past date for Sync Historical Data.",
  frequency: "Pick one of the Replication Frequency values.",
};

export async function renderZendesk(main, _params, { navigate, flash }) {
  const name = h("input", { id: "display_name", name: "display_name", required: true, autocomplete: "off", placeholder: "Stitch Zendesk", "aria-describedby": "schema-preview" });
  const schemaOut = h("code", { id: "schema-name" }, "—");
  const schemaNote = h("span", { id: "schema-note" });
  const preview = h("p", { class: "schema-preview", id: "schema-preview" }, "Creates the schema ", schemaOut, " in your warehouse. ", schemaNote);
  const schemaInput = h("input", { id: "schema_name", name: "schema_name", autocomplete: "off", placeholder: "zendesk_support", pattern: "[a-z0-9_]+" });
  const schemaField = field("schema_name", "Integration Schema Name", schemaInput, "Lowercase letters, digits and underscores. Schema names cannot be changed after you save the integration.");
  schemaField.hidden = true;
  const toggleSchema = h("button", { type: "button", class: "linklike small", id: "use-different-schema", "aria-expanded": "false" }, "Use a different schema name?");
  const subdomain = h("input", { id: "subdomain", name: "subdomain", required: true, autocomplete: "off", placeholder: "acme", spellcheck: "false" });
  const siteOut = h("span", { class: "suffix", id: "site-url" }, ".zendesk.com");
  const email = h("input", { id: "email", name: "email", type: "email", required: true, autocomplete: "email", placeholder: "you@company.com" });
  const token = h("input", { id: "api_token", name: "api_token", type: "password", required: true, autocomplete: "off", spellcheck: "false" });
  const start = h("input", { id: "start_date", name: "start_date", type: "date", required: true, value: oneYearBack(), max: new Date().toISOString().slice(0, 10) });
  const freq = h("fieldset", { class: "segmented", id: "frequency", "aria-labelledby": "frequency-title" },
    FREQUENCIES.map(([m, label]) => h("label", {}, h("input", { type: "radio", name: "frequency", value: m, checked: m === 30, id: `frequency-${m}` }), h("span", {}, label))));
  const save = h("button", { type: "submit", class: "btn btn-primary", id: "save-integration" }, "Save Integration");
  const progress = h("div", { id: "check-progress", class: "card", hidden: true });
  const formError = h("div", { id: "form-error" });

  let createdId = null;
  let lastServerName = null;
  let timer = null;
  let cancelled = false;

  const showSchema = (value, note, bad) => {
    schemaOut.textContent = value || "—";
    schemaNote.textContent = note || "";
    schemaNote.className = bad ? "error-text" : "muted";
    name.setAttribute("aria-invalid", bad ? "true" : "false");
  };
  const updateSchema = () => {
    const explicit = !schemaField.hidden && schemaInput.value.trim();
    const local = explicit ? schemaInput.value.trim() : schemaName(name.value);
    showSchema(local, name.value.trim() && !local ? "An Integration Name needs at least one letter or digit." : "", name.value.trim() && !local);
    clearTimeout(timer);
    if (!name.value.trim()) return;
    // The server is the authority on the name and knows which names are taken.
    timer = setTimeout(async () => {
      const q = new URLSearchParams({ display_name: name.value });
      if (explicit) q.set("name", schemaInput.value.trim());
      try {
        const r = await ui.get(`/schema-name?${q}`);
        lastServerName = r.name;
        showSchema(r.name || local, r.error || "", !!r.error);
      } catch { /* keep the local preview */ }
    }, 200);
  };
  name.addEventListener("input", updateSchema);
  schemaInput.addEventListener("input", updateSchema);
  toggleSchema.addEventListener("click", () => {
    schemaField.hidden = !schemaField.hidden;
    toggleSchema.setAttribute("aria-expanded", String(!schemaField.hidden));
    toggleSchema.textContent = schemaField.hidden ? "Use a different schema name?" : "Use the name derived from the Integration Name";
    if (!schemaField.hidden) { schemaInput.value = schemaInput.value || schemaName(name.value) || ""; schemaInput.focus(); }
    updateSchema();
  });
  subdomain.addEventListener("input", () => {
    const v = subdomain.value.trim();
    siteOut.textContent = ".zendesk.com";
    subdomain.title = v ? `https://${v}.zendesk.com` : "";
  });

  const clearErrors = () => {
    formError.replaceChildren();
    for (const el of main.querySelectorAll(".error-text[id$='-error']")) { el.hidden = true; el.textContent = ""; }
    for (const el of main.querySelectorAll("[aria-invalid=true]")) el.setAttribute("aria-invalid", "false");
  };
  const showError = (title, message) => {
    const f = fieldOf(message);
    mount(formError, banner("error", title, message, f ? FIX[f] : null));
    if (f) {
      const err = document.getElementById(`${f}-error`);
      if (err) { err.textContent = FIX[f]; err.hidden = false; }
      const input = document.getElementById(f);
      if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    }
    window.scrollTo({ top: 0, behavior: "instant" });
  };

  const steps = (state, failedAt) => {
    const items = [
      ["save", "Saving the integration"],
      ["connect", `Connecting to ${subdomain.value.trim()}.zendesk.com as ${email.value.trim()}`],
      ["discover", "Discovering the tables your account can replicate"],
      ["done", "Success!"],
    ];
    const order = items.map(([k]) => k);
    const at = order.indexOf(state);
    mount(progress,
      h("h2", {}, failedAt ? "The connection check failed" : state === "done" ? "Connected" : "Checking the connection…"),
      h("div", { class: failedAt || state === "done" ? "bar" : "bar indeterminate" }, h("div")),
      h("ol", { class: "progress-steps" }, items.map(([k, label], i) => {
        let cls = i < at ? "done" : i === at ? (failedAt ? "failed" : state === "done" ? "done" : "active") : "";
        return h("li", { class: cls, "data-step": k }, label);
      })));
    if (state === "done" && progress.querySelector(".bar > div")) progress.querySelector(".bar > div").style.width = "100%";
    progress.hidden = false;
  };

  const waitForCheck = async (id, previousName) => {
    steps("connect");
    for (let i = 0; i < 600 && !cancelled; i++) {
      let check = null;
      try { check = await api.get(`/sources/${id}/last-connection-check`); } catch (e) { if (!(e instanceof ApiError && e.status === 404)) throw e; }
      if (check && check.name !== previousName) {
        if (check.status === "succeeded") return check;
        if (check.status === "failed") return check;
        steps(check.check_exit_status === 0 ? "discover" : "connect");
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new ApiError(0, "Timeout", "the connection check is taking too long: look at the integration's Extractions tab");
  };

  const onSubmit = async (e) => {
    e.preventDefault();
    clearErrors();
    if (!form.reportValidity()) return;
    save.disabled = true;
    save.textContent = "Saving…";
    const properties = {
      subdomain: subdomain.value.trim(),
      email: email.value.trim(),
      api_token: token.value,
      start_date: `${start.value}T00:00:00Z`,
      frequency_in_minutes: String(form.querySelector("input[name=frequency]:checked")?.value || 30),
    };
    try {
      steps("save");
      let previousName = null;
      let source;
      if (createdId === null) {
        const body = { display_name: name.value.trim(), type: "platform.zendesk", properties };
        if (!schemaField.hidden && schemaInput.value.trim()) body.name = schemaInput.value.trim();
        source = await api.post("/sources", body);
        createdId = source.id;
      } else {
        // Saved before with a failed check: update it and check again (the name is already taken by it).
        previousName = (await api.get(`/sources/${createdId}/last-connection-check`).catch(() => null))?.name || null;
        source = await api.put(`/sources/${createdId}`, { display_name: name.value.trim(), properties, confirm_reset: true });
        const now = await api.get(`/sources/${createdId}/last-connection-check`).catch(() => null);
        if (!now || now.name === previousName) await api.post(`/sources/${createdId}/check`);
      }
      const check = await waitForCheck(createdId, previousName);
      if (check.status === "succeeded") {
        steps("done");
        flash("success", "Success!", `${source.display_name} is connected to ${properties.subdomain}.zendesk.com.`,
          "Now choose the Tables to Replicate; seam starts replicating once you Finalize Your Selections.", { persist: true });
        navigate(`/integrations/${createdId}/tables`);
        return;
      }
      steps("connect", true);
      if (check.check_exit_status === 0) steps("discover", true);
      showError("The connection check failed.", check.message || check.check_error_message || "the connection check failed");
      name.disabled = true; // saved: the name (and schema) is fixed now
      toggleSchema.hidden = true;
      mount(document.getElementById("name-note"), "The integration is saved as ", h("strong", {}, source.display_name),
        "; fix the fields below and click Save Integration to check again.");
    } catch (err) {
      progress.hidden = true;
      showError("Could not save the integration.", err.message);
    } finally {
      save.disabled = false;
      save.textContent = "Save Integration";
    }
  };

  const form = h("form", { class: "form", id: "zendesk-form", novalidate: false, onsubmit: onSubmit },
    field("display_name", "Integration Name", name, null),
    preview, h("p", { class: "hint", id: "name-note" }, "The name shown on the Dashboard; it also names the schema in your warehouse."),
    toggleSchema, schemaField,
    h("h2", { class: "section-title" }, "Zendesk credentials"),
    field("subdomain", "Zendesk Site Prefix", h("div", { class: "affix" }, subdomain, siteOut), "For https://acme.zendesk.com enter only acme."),
    field("email", "Zendesk Login Email", email, null),
    field("api_token", "Zendesk API Token", token, "Zendesk: Settings → Channels → API → Token Access → Add New Token (label it “seam”)."),
    h("h2", { class: "section-title" }, "Sync Historical Data"),
    field("start_date", "Replicate data from", start, "seam replicates rows changed since this date (default: one year back). Earlier data costs rows once."),
    h("h2", { class: "section-title", id: "frequency-title" }, "Replication Frequency"),
    h("div", { class: "field" }, freq,
      h("p", { class: "hint" }, "How often seam extracts new and changed data. More frequent syncs use more of your row limit: pick the slowest frequency that serves your reports. You can change it at any time in the Integration Settings.")),
    h("div", { class: "form-actions" }, save, h("a", { class: "btn btn-quiet", href: "/", "data-link": true }, "Cancel")));

  mount(main,
    h("div", { class: "crumbs" }, h("a", { href: "/", "data-link": true }, "Dashboard"), " / ", h("a", { href: "/integrations/new", "data-link": true }, "Add an Integration"), " / Zendesk Support"),
    h("div", { class: "page-head" },
      h("div", { class: "intg" }, h("img", { src: "/assets/zendesk.svg", alt: "", width: 44, height: 44 }),
        h("div", {}, h("h1", {}, "Configure Zendesk Support"), h("p", { class: "sub" }, "Connect your Zendesk account, then choose the tables to replicate.")))),
    formError,
    h("div", { class: "grid grid-main" }, h("div", { class: "card" }, form),
      h("div", { class: "stack" }, progress,
        h("div", { class: "card" }, h("h3", {}, "Where do I find the API token?"),
          h("ol", { class: "tips small" },
            h("li", {}, "Sign in to Zendesk and open Settings (bottom left)."),
            h("li", {}, "Under Channels click API, then enable Token Access."),
            h("li", {}, "Click Add New Token, label it “seam”, Create, and copy the token.")),
          h("p", { class: "muted small" }, "An admin account can read every table; agents cannot read the incremental exports.")))));
  name.focus();
  return () => { cancelled = true; clearTimeout(timer); };
}
