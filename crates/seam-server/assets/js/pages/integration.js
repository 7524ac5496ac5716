// Integration Details: the header (status, Pause/Resume Syncing, Run Extraction Now / Stop Extraction),
// live progress of a running job, and the Extractions, Loads, Tables to Replicate and Settings tabs.

import { h, mount, num, when, relative, duration, pill, banner, frequencyLabel, TYPE_LOGO, TYPE_NAME } from "../dom.js";
import { api, ui, ApiError } from "../api.js";
import { jobTimeline } from "../charts.js";
import { specInput, specProperties } from "./add.js";

const TABS = [["extractions", "Extractions"], ["loads", "Loads"], ["tables", "Tables to Replicate"], ["settings", "Settings"]];

// How the Extractions list names a job's status.
const JOB_STATUS_LABEL = { succeeded_with_warnings: "Succeeded with warnings", pending: "Queued" };
const jobPill = (status) => pill(status, JOB_STATUS_LABEL[status] || status);

export async function render(main, [id, tabArg], ctx) {
  let source = await api.get(`/sources/${id}`);
  if (source.deleted_at) {
    mount(main, banner("warning", "This integration was deleted.", `${source.display_name} was deleted ${when(source.deleted_at)}; its schema ${source.name} and the data in it stay in your warehouse.`));
    return;
  }
  const tab = tabArg || (source.status === "Not Configured" ? "tables" : "extractions");
  const head = h("div", { id: "integration-head" });
  const live = h("div", { id: "live-progress" });
  const body = h("div", { id: "tab-body" });
  let timers = [];
  let wasRunning = false;
  let stopped = false;

  const refreshSource = async () => { source = await api.get(`/sources/${id}`); drawHead(); };

  const act = async (button, fn, okTitle) => {
    button.disabled = true;
    try {
      const r = await fn();
      if (okTitle) ctx.flash("success", okTitle, "");
      return r;
    } catch (e) {
      ctx.flash("error", e.code === "NotConfigured" ? "Nothing to replicate yet." : "That did not work.", e.message,
        e.code === "NotConfigured" ? "Select at least one table on the Tables to Replicate tab and click Finalize Your Selections." : null);
      return null;
    } finally {
      button.disabled = false;
    }
  };

  function drawHead() {
    const paused = !!source.paused_at;
    const running = source.sync_status === "In Progress" || wasRunning;
    const toggle = h("button", { class: "switch", type: "button", role: "switch", id: "pause-toggle", "aria-checked": String(!paused), "aria-label": paused ? "Resume Syncing" : "Pause Syncing", title: paused ? "Resume Syncing" : "Pause Syncing" });
    toggle.addEventListener("click", () => act(toggle, async () => {
      await api.put(`/sources/${id}`, { paused_at: paused ? null : new Date().toISOString() });
      await refreshSource();
    }, paused ? "Syncing resumed." : "Syncing paused."));
    const run = running
      ? h("button", { class: "btn btn-danger", id: "stop-extraction", type: "button" }, "Stop Extraction")
      : h("button", { class: "btn btn-primary", id: "run-extraction", type: "button" }, "Run Extraction Now");
    run.addEventListener("click", () => act(run, async () => {
      if (running) await api.del(`/sources/${id}/sync`);
      else await api.post(`/sources/${id}/sync`);
      await pollProgress();
      await refreshSource();
      if (!wasRunning && showsJobs()) await drawTab(); // a short job may be over before the first poll
    }));
    const schedule = source.properties.cron_expression
      ? `cron ${source.properties.cron_expression}`
      : `every ${frequencyLabel(source.properties.frequency_in_minutes)}`;
    mount(head,
      h("div", { class: "crumbs" }, h("a", { href: "/", "data-link": true }, "Dashboard"), ` / ${source.display_name}`),
      h("div", { class: "page-head" },
        h("div", { class: "intg" },
          h("img", { src: TYPE_LOGO[source.type] || "/assets/favicon.svg", alt: "", width: 48, height: 48 }),
          h("div", {},
            h("h1", { id: "integration-name" }, source.display_name, " ", pill(source.status)),
            h("p", { class: "sub" }, `${TYPE_NAME[source.type] || source.type} · `,
              source.type === "platform.zendesk" ? h("code", {}, `${source.properties.subdomain}.zendesk.com`) : h("code", {}, source.type), " → schema ", h("code", { id: "integration-schema" }, source.name), ` · ${schedule}`))),
        h("div", { class: "actions" },
          h("div", { class: "toggle-row" }, h("span", { class: "muted" }, "Integration is ", h("strong", { id: "paused-state" }, paused ? "Paused" : "Active")), toggle),
          run)),
      h("div", { class: "card summary" },
        h("div", {}, h("div", { class: "k" }, "Last Sync Started"), h("div", { class: "v", title: when(source.last_sync_started_at) }, relative(source.last_sync_started_at))),
        h("div", {}, h("div", { class: "k" }, "Last Sync Completed"), h("div", { class: "v", title: when(source.last_sync_completed_at) }, relative(source.last_sync_completed_at))),
        h("div", {}, h("div", { class: "k" }, "Sync Status"), h("div", { class: "v", id: "sync-status" }, source.sync_status)),
        h("div", {}, h("div", { class: "k" }, "Next Sync"), h("div", { class: "v", id: "next-sync", title: when(source.schedule?.next_fire_time) },
          paused ? "Paused" : source.status === "Not Configured" ? "Select tables first" : relative(source.schedule?.next_fire_time)))),
      source.status === "Failing" && source.consecutive_failures
        ? banner("error", "Extractions are failing.", `${source.consecutive_failures} extraction(s) in a row failed; see Extractions and View Logs for the error.`) : null,
      h("nav", { class: "tabs", role: "tablist", "aria-label": "Integration" }, TABS.map(([k, label]) =>
        h("a", { href: `/integrations/${id}/${k}`, "data-link": true, role: "tab", id: `tab-${k}`, "aria-selected": String(k === tab) }, label))));
  }

  // What a job's end changes on the open tab: Extractions and Loads list jobs, and Tables to
  // Replicate fills in once discovery has found tables. A drawn table list and the Settings form
  // hold the user's unsaved choices, which a redraw would throw away.
  const showsJobs = () => tab === "extractions" || tab === "loads" || (tab === "tables" && !body.querySelector("#streams"));

  // Live progress: poll the running job every second; when it ends, redraw the page's numbers.
  async function pollProgress() {
    if (stopped) return;
    let p = null;
    try { p = await api.get(`/sources/${id}/extractions/current`); } catch (e) { if (!(e instanceof ApiError && e.status === 404)) throw e; }
    if (p) {
      if (!wasRunning) { wasRunning = true; drawHead(); }
      drawLive(p);
    } else if (wasRunning) {
      wasRunning = false;
      live.replaceChildren();
      await refreshSource();
      if (showsJobs()) await drawTab();
    }
  }

  function drawLive(p) {
    const streams = Object.entries(p.records_by_stream || {});
    const max = Math.max(1, ...streams.map(([, n]) => n));
    mount(live, h("div", { class: "card live", id: "live-job" },
      h("div", { class: "live-head" },
        h("div", {}, h("h2", {}, h("span", { class: "pulse" }), ` Extraction in progress · ${p.job_name}`),
          h("div", { class: "muted small" }, `Started ${relative(p.started_at)} · ${duration(p.started_at)} · phase: ${p.phase}${p.waiting_on_warehouse_secs != null ? ` · waiting on the warehouse for ${p.waiting_on_warehouse_secs} s` : ""}${p.stopping ? " · stopping…" : ""}`)),
        h("div", { class: "grid grid-2" },
          h("div", { class: "stat" }, h("div", { class: "label" }, "Records extracted"), h("div", { class: "value", id: "live-records" }, num(p.records_extracted))),
          h("div", { class: "stat" }, h("div", { class: "label" }, "Rows loaded"), h("div", { class: "value", id: "live-rows" }, num(p.rows_loaded))))),
      h("div", { class: "muted" }, "Current table: ", h("strong", { id: "live-stream" }, p.current_stream || "—")),
      streams.length ? h("div", { class: "stream-bars" }, streams.map(([name, n]) => {
        const fill = h("div");
        fill.style.width = `${(100 * n) / max}%`;
        return [h("div", { class: name === p.current_stream ? "current" : "" }, name), h("div", { class: "bar" }, fill), h("div", { class: "muted" }, num(n))];
      })) : null));
  }

  async function drawTab() {
    if (tab === "extractions") return drawExtractions();
    if (tab === "loads") return drawLoads();
    if (tab === "tables") return drawTables();
    return drawSettings();
  }

  async function drawExtractions() {
    const jobs = await api.get(`/sources/${id}/extractions?limit=50`);
    // A job listed as running is redrawn once the poll finds it over, even one that ends before the
    // poll first sees it (its row said "running" for good).
    if (jobs.some((j) => j.status === "running")) wasRunning = true;
    if (!jobs.length) {
      mount(body, h("div", { class: "card empty" }, h("h2", {}, "No extractions yet"),
        h("p", {}, source.status === "Not Configured" ? "Select tables on Tables to Replicate first." : "The first one starts at the next scheduled time, or now with Run Extraction Now.")));
      return;
    }
    const rows = [];
    for (const j of jobs) {
      const logs = h("tr", { class: "logs-row", hidden: true }, h("td", { colspan: 6 }, h("pre", { class: "logs" }, "Loading…")));
      const view = h("button", { class: "btn btn-small", type: "button", "data-job": j.job_id }, "View Logs");
      view.addEventListener("click", async () => {
        logs.hidden = !logs.hidden;
        view.textContent = logs.hidden ? "View Logs" : "Hide Logs";
        if (logs.hidden) return;
        try {
          const l = await api.get(`/sources/${id}/extractions/${j.job_id}/logs`);
          const errors = new Set(l.errors || []);
          mount(logs.querySelector("pre"), (l.lines || []).map((x) => h("div", { class: errors.has(x.line) || x.level === "ERROR" || x.level === "CRITICAL" ? "err" : "" }, x.line)));
          if (!(l.lines || []).length) logs.querySelector("pre").textContent = "No log lines.";
        } catch (e) { logs.querySelector("pre").textContent = e.message; }
      });
      rows.push(h("tr", { class: "job-row", "data-job-status": j.status },
        h("td", {}, h("div", { class: "mono" }, j.job_name), h("div", { class: "muted small" }, j.trigger === "manual" ? "Run Extraction Now" : "scheduled",
          j.worker ? ` · on ${j.worker}` : ""),
          j.error_message ? h("div", { class: "job-error" }, j.error_message) : null,
          j.warning_message ? h("div", { class: "job-warning" }, j.warning_message) : null),
        h("td", {}, jobPill(j.status)),
        h("td", { title: when(j.start_time) }, when(j.start_time)),
        h("td", {}, duration(j.start_time, j.completion_time)),
        h("td", { class: "num" }, num(j.rows_loaded)),
        h("td", { class: "num" }, view)), logs);
    }
    // The latest finished job replicated data but skipped part of the selection: say so up front.
    const last = jobs.find((j) => j.status !== "running");
    mount(body,
      last && last.status === "succeeded_with_warnings"
        ? h("div", { id: "extraction-warning" }, banner("warning", "Data has been replicated, but something may require your attention.", last.warning_message || ""))
        : null,
      h("div", { class: "card" }, h("h2", {}, "Extraction timeline"), jobTimeline(jobs),
        h("div", { class: "legend" }, h("span", {}, "■ width = duration"), h("span", {}, "green succeeded · amber succeeded with warnings · red failed · grey cancelled · teal running"))),
      h("div", { class: "card table-card" },
        h("table", { id: "extractions" },
          h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Status"), h("th", {}, "Started"), h("th", {}, "Duration"), h("th", { class: "num" }, "Rows loaded"), h("th", { class: "num" }, "Logs"))),
          h("tbody", {}, rows))));
  }

  async function drawLoads(period = "this_billing") {
    const loads = await api.get(`/sources/${id}/loads?period=${period}`);
    const select = h("select", { id: "loads-period", "aria-label": "Period" },
      [["24h", "Last 24 hours"], ["this_billing", "This billing period"], ["prev_billing", "Previous billing period"]].map(([v, l]) => h("option", { value: v, selected: v === period }, l)));
    select.addEventListener("change", () => drawLoads(select.value));
    const total = loads.reduce((a, l) => a + Number(l.rows_loaded || 0), 0);
    mount(body, h("div", { class: "card table-card" },
      h("div", { class: "page-head" }, h("h2", {}, `Loads · ${num(total)} rows`), select),
      loads.length === 0 ? h("p", { class: "empty" }, "No rows loaded in this period.") :
        h("table", { id: "loads" },
          h("thead", {}, h("tr", {}, h("th", {}, "Table"), h("th", { class: "num" }, "Rows loaded"), h("th", {}, "Last loaded"), h("th", {}, "Bookmark"), h("th", {}, "Status"))),
          h("tbody", {}, loads.map((l) => h("tr", { "data-table": l.stream_name },
            h("td", { class: "mono" }, `${source.name}.${l.stream_name}`),
            h("td", { class: "num rows" }, num(l.rows_loaded)),
            h("td", { title: when(l.last_batch_loaded_at) }, relative(l.last_batch_loaded_at)),
            h("td", { class: "mono small" }, l.max_bookmark_value || "—"),
            h("td", {}, l.error_state ? h("span", { class: "job-error" }, l.error_state.message) : pill("succeeded", "Loaded"))))))));
    const head = body.querySelector(".page-head");
    if (head) head.style.padding = "16px 20px 0";
  }

  async function drawTables() {
    const streams = await api.get(`/sources/${id}/streams`);
    if (!streams.length) {
      let check = null;
      try { check = await api.get(`/sources/${id}/last-connection-check`); } catch { /* none yet */ }
      mount(body, h("div", { class: "card empty" }, h("h2", {}, "No tables discovered yet"),
        h("p", {}, check?.status === "failed" ? `The connection check failed: ${check.message}. Fix the credentials on the Settings tab.` : "The connection check is discovering your Zendesk tables; this page fills in when it is done.")));
      return;
    }
    const state = new Map(); // tap_stream_id → {selected, fields: Map(name → selected) | null}
    const list = h("ul", { class: "streams", id: "streams" });
    const count = h("span", { class: "muted", id: "selection-count" });
    const updateCount = () => {
      const n = [...state.values()].filter((s) => s.selected).length;
      count.textContent = `${n} of ${streams.length} tables selected`;
    };
    for (const s of streams) {
      const st = { selected: s.selected, fields: null, summary: s };
      state.set(s.tap_stream_id, st);
      const box = h("input", { type: "checkbox", id: `stream-${s.tap_stream_id}`, checked: s.selected, "data-stream": s.tap_stream_id });
      const columns = h("div", { class: "columns", hidden: true });
      const toggle = h("button", { type: "button", class: "btn btn-small btn-quiet", "aria-expanded": "false", "aria-controls": `columns-${s.tap_stream_id}` }, "Columns");
      columns.id = `columns-${s.tap_stream_id}`;
      box.addEventListener("change", () => { st.selected = box.checked; updateCount(); });
      toggle.addEventListener("click", async () => {
        columns.hidden = !columns.hidden;
        toggle.setAttribute("aria-expanded", String(!columns.hidden));
        if (columns.hidden || st.fields) return;
        const d = await api.get(`/sources/${id}/streams/${s.tap_stream_id}`);
        st.fields = new Map();
        mount(columns, (d.fields || []).map((f) => {
          st.fields.set(f.name, f.inclusion === "automatic" ? true : f.selected);
          const c = h("input", { type: "checkbox", checked: f.inclusion === "automatic" || f.selected, disabled: f.inclusion !== "available", "data-field": f.name });
          c.addEventListener("change", () => st.fields.set(f.name, c.checked));
          return h("label", { class: "check", title: (f.type || []).join(", ") }, c, f.name,
            f.inclusion === "automatic" ? h("span", { class: "tag" }, "key") : f.inclusion === "unsupported" ? h("span", { class: "tag" }, "not supported") : null);
        }));
      });
      const method = s.replication_method === "INCREMENTAL" ? `Incremental on ${s.replication_key || "bookmark"}` : "Full Table";
      list.append(h("li", { class: "stream", "data-stream": s.tap_stream_id },
        h("div", { class: "stream-head" },
          h("label", { class: "check", for: box.id }, box, h("span", { class: "mono" }, s.stream_name)),
          h("span", { class: "meta" }, method, ` · ${s.selected ? s.selected_field_count : s.field_count} of ${s.field_count} columns`, s.parent ? ` · child of ${s.parent}` : ""),
          toggle),
        columns));
    }
    updateCount();
    const finalize = h("button", { class: "btn btn-primary", type: "button", id: "finalize-selections" }, "Finalize Your Selections");
    finalize.addEventListener("click", () => act(finalize, async () => {
      const payload = [];
      for (const [sid, st] of state) {
        const metadata = [{ breadcrumb: [], metadata: { selected: st.selected } }];
        if (st.fields) for (const [f, sel] of st.fields) metadata.push({ breadcrumb: ["properties", f], metadata: { selected: sel } });
        payload.push({ tap_stream_id: sid, metadata });
      }
      await api.put(`/sources/${id}/streams`, { streams: payload });
      await refreshSource();
      ctx.flash("success", "Selections saved.", `${[...state.values()].filter((s) => s.selected).length} tables will replicate ${source.properties.cron_expression ? "on the cron schedule" : "every " + frequencyLabel(source.properties.frequency_in_minutes)}.`,
        "Run Extraction Now to start the first sync right away.");
      await drawTables();
    }));
    const all = h("button", { class: "btn btn-small", type: "button", id: "select-all" }, "Select all");
    all.addEventListener("click", () => { for (const b of list.querySelectorAll("input[data-stream]")) { b.checked = true; state.get(b.dataset.stream).selected = true; } updateCount(); });
    const none = h("button", { class: "btn btn-small", type: "button", id: "select-none" }, "Clear");
    none.addEventListener("click", () => { for (const b of list.querySelectorAll("input[data-stream]")) { b.checked = false; state.get(b.dataset.stream).selected = false; } updateCount(); });
    mount(body,
      h("div", { class: "card table-card" },
        h("div", { class: "page-head stream-toolbar" }, h("div", {}, h("h2", {}, "Tables to Replicate"),
          h("p", { class: "muted small" }, "Every selected table and column counts toward your row usage; pick what your reports need.")),
          h("div", { class: "actions" }, all, none)),
        list),
      h("div", { class: "sticky-actions" }, finalize, count));
    body.querySelector(".stream-toolbar").style.padding = "16px 18px 4px";
  }

  /** The settings box of a connector other than Zendesk, drawn from its spec. */
  async function connectorSettings(p, box) {
    const types = await api.get("/source-types").catch(() => []);
    const spec = types.find((t) => t.type === source.type);
    if (!spec) return box("Connector settings", `${source.type} is no longer registered with this seam.`);
    const schema = spec.properties_schema || {};
    const declared = schema.properties || {};
    const common = new Set(["start_date", "frequency_in_minutes", "anchor_time", "cron_expression", "credentials_set", "auth_method"]);
    const form = h("form", { id: "connector-settings", onsubmit: (e) => e.preventDefault() });
    for (const [name, prop] of Object.entries(declared)) {
      const input = specInput(name, prop, false);
      if (prop.writeOnly) input.placeholder = (p.credentials_set || []).includes(name) ? "unchanged" : "not set";
      else if (prop.type === "boolean") input.checked = !!p[name];
      else if (p[name] !== null && p[name] !== undefined) input.value = typeof p[name] === "object" ? JSON.stringify(p[name]) : String(p[name]);
      form.append(h("div", { class: "field" }, h("label", { for: `prop-${name}` }, prop.title || name), input));
    }
    if (schema.additionalProperties) {
      const rest = Object.fromEntries(Object.entries(p).filter(([k]) => !common.has(k) && !(k in declared)));
      form.append(h("div", { class: "field" }, h("label", { for: "prop-extra" }, "Other settings (JSON)"),
        h("textarea", { id: "prop-extra", rows: 6, spellcheck: "false" }, JSON.stringify(rest, null, 2)),
        h("p", { class: "hint" }, "Set a key to null to remove it.")));
    }
    const msg = h("div");
    const save = h("button", { class: "btn btn-primary", type: "button", id: "save-connector-settings" }, "Update Settings");
    save.addEventListener("click", () => act(save, async () => {
      let props;
      try { props = specProperties(form, schema); } catch (e) { mount(msg, banner("error", "Not saved.", e.message)); throw e; }
      try { await api.put(`/sources/${id}`, { properties: props }); } catch (e) { mount(msg, banner("error", "Not saved.", e.message)); throw e; }
      mount(msg, banner("info", "Saved. Checking the connection…", ""));
      for (let i = 0; i < 600; i++) {
        const c = await api.get(`/sources/${id}/last-connection-check`);
        if (c.status !== "running") {
          mount(msg, c.status === "succeeded" ? banner("success", "Success!", "The connection check passed.") : banner("error", "The connection check failed.", c.message));
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      await refreshSource();
    }));
    return box(`${spec.display_name} settings`, "Changing them runs the connection check again. Secrets are never shown: leave them empty to keep them.",
      form, h("div", { class: "form-actions" }, save), msg);
  }

  async function drawSettings() {
    const p = source.properties;
    const box = (title, desc, ...content) => h("section", { class: "card" }, h("h2", {}, title), desc ? h("p", { class: "muted small" }, desc) : null, ...content);

    // Replication schedule.
    const useDefault = h("input", { type: "checkbox", id: "use-default", checked: p.frequency_in_minutes === "30" && !p.anchor_time && !p.cron_expression });
    const freqSet = h("fieldset", { class: "segmented", id: "settings-frequency" }, h("legend", {}, "Replication Frequency"),
      [[30, "30 minutes"], [60, "1 hour"], [180, "3 hours"], [360, "6 hours"], [720, "12 hours"], [1440, "24 hours"]].map(([m, l]) =>
        h("label", {}, h("input", { type: "radio", name: "settings-frequency", value: m, id: `settings-frequency-${m}`, checked: String(m) === p.frequency_in_minutes }), h("span", {}, l))));
    const anchor = h("input", { type: "time", id: "anchor_time", value: p.anchor_time ? p.anchor_time.slice(11, 16) : "" });
    const cron = h("input", { id: "cron_expression", value: p.cron_expression || "", placeholder: "0 0 6 ? * MON-FRI", spellcheck: "false", class: "mono" });
    const cronOut = h("div", { id: "cron-preview", class: "hint" });
    const scheduleMsg = h("div");
    let cronTimer = null;
    const syncDefault = () => {
      for (const i of [...freqSet.querySelectorAll("input"), anchor, cron]) i.disabled = useDefault.checked;
      if (useDefault.checked) { freqSet.querySelector("input[value='30']").checked = true; anchor.value = ""; cron.value = ""; cronOut.replaceChildren(); }
    };
    const previewCron = () => {
      clearTimeout(cronTimer);
      const v = cron.value.trim();
      if (!v) { mount(cronOut, h("span", { class: "muted" }, "Empty: the frequency above is used.")); return; }
      cronTimer = setTimeout(async () => {
        try {
          const r = await ui.get(`/cron-preview?expression=${encodeURIComponent(v)}`);
          if (r.valid) mount(cronOut, h("div", {}, h("strong", {}, r.description)), h("div", {}, "Next runs (UTC): ", r.next.map((t) => when(t)).join(" · ")));
          else mount(cronOut, h("span", { class: "error-text" }, r.error));
        } catch (e) { mount(cronOut, h("span", { class: "error-text" }, e.message)); }
      }, 200);
    };
    useDefault.addEventListener("change", syncDefault);
    cron.addEventListener("input", previewCron);
    const saveSchedule = h("button", { class: "btn btn-primary", type: "button", id: "save-schedule" }, "Update Settings");
    saveSchedule.addEventListener("click", () => act(saveSchedule, async () => {
      const minutes = freqSet.querySelector("input:checked")?.value || "30";
      const today = new Date().toISOString().slice(0, 10);
      const props = useDefault.checked
        ? { frequency_in_minutes: null, anchor_time: null, cron_expression: null }
        : { frequency_in_minutes: String(minutes), anchor_time: anchor.value ? `${today}T${anchor.value}:00Z` : null, cron_expression: cron.value.trim() || null };
      try {
        await api.put(`/sources/${id}`, { properties: props });
      } catch (e) { mount(scheduleMsg, banner("error", "Not saved.", e.message)); throw e; }
      await refreshSource();
      mount(scheduleMsg, banner("success", "Settings updated.", source.properties.cron_expression
        ? `Runs on the cron schedule; next ${when(source.schedule?.next_fire_time)}.`
        : `Replicates every ${frequencyLabel(source.properties.frequency_in_minutes)}; next ${when(source.schedule?.next_fire_time)}.`));
    }));

    // Credentials.
    const sub = h("input", { id: "settings-subdomain", value: p.subdomain });
    const em = h("input", { id: "settings-email", type: "email", value: p.email || "" });
    const tok = h("input", { id: "settings-api-token", type: "password", placeholder: "unchanged", autocomplete: "off" });
    const credMsg = h("div");
    const saveCred = h("button", { class: "btn btn-primary", type: "button", id: "save-credentials" }, "Update Settings");
    saveCred.addEventListener("click", () => act(saveCred, async () => {
      const props = { subdomain: sub.value.trim(), email: em.value.trim() };
      if (tok.value) props.api_token = tok.value;
      try { await api.put(`/sources/${id}`, { properties: props }); } catch (e) { mount(credMsg, banner("error", "Not saved.", e.message)); throw e; }
      mount(credMsg, banner("info", "Saved. Checking the connection…", ""));
      for (let i = 0; i < 240; i++) {
        const c = await api.get(`/sources/${id}/last-connection-check`);
        if (c.status !== "running") {
          mount(credMsg, c.status === "succeeded" ? banner("success", "Success!", "The connection check passed.") : banner("error", "The connection check failed.", c.message));
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      tok.value = "";
      await refreshSource();
    }));

    // Historical data (reset).
    const startInput = h("input", { type: "date", id: "settings-start-date", value: p.start_date.slice(0, 10), max: new Date().toISOString().slice(0, 10) });
    const resetMsg = h("div");
    const resetDialog = h("dialog", { id: "reset-dialog", "aria-labelledby": "reset-title" },
      h("h2", { id: "reset-title" }, "Reset this integration?"),
      h("p", {}, "Changing the start date clears every bookmark: the next extraction re-replicates all data from the new date. Those rows count toward your usage. This cannot be undone."),
      h("div", { class: "form-actions" },
        h("button", { class: "btn", type: "button", id: "reset-cancel", onclick: () => resetDialog.close() }, "Cancel"),
        h("button", { class: "btn btn-danger-solid", type: "button", id: "reset-confirm" }, "Reset and re-replicate")));
    resetDialog.querySelector("#reset-confirm").addEventListener("click", async (e) => {
      resetDialog.close();
      await act(e.target, async () => {
        try { await api.put(`/sources/${id}`, { properties: { start_date: `${startInput.value}T00:00:00Z` }, confirm_reset: true }); }
        catch (err) { mount(resetMsg, banner("error", "Not saved.", err.message)); throw err; }
        await refreshSource();
        mount(resetMsg, banner("success", "Start date changed.", `Bookmarks cleared: the next extraction replicates everything since ${startInput.value}.`));
      });
    });
    const saveStart = h("button", { class: "btn", type: "button", id: "save-start-date" }, "Change start date…");
    saveStart.addEventListener("click", () => {
      if (startInput.value === p.start_date.slice(0, 10)) { mount(resetMsg, banner("info", "Nothing to change.", "Pick a different date first.")); return; }
      resetDialog.showModal();
    });

    // Name.
    const dn = h("input", { id: "settings-display-name", value: source.display_name });
    const nameMsg = h("div");
    const saveName = h("button", { class: "btn", type: "button", id: "save-name" }, "Rename");
    saveName.addEventListener("click", () => act(saveName, async () => {
      try { await api.put(`/sources/${id}`, { display_name: dn.value }); } catch (e) { mount(nameMsg, banner("error", "Not renamed.", e.message)); throw e; }
      await refreshSource();
      mount(nameMsg, banner("success", "Renamed.", `The schema stays ${source.name}.`));
    }));

    // Delete.
    const delDialog = h("dialog", { id: "delete-dialog", "aria-labelledby": "delete-title" },
      h("h2", { id: "delete-title" }, `Delete ${source.display_name}?`),
      h("p", {}, "seam stops replicating it and forgets its settings and bookmarks. The schema ", h("code", {}, source.name), " and the data already in your warehouse stay."),
      h("div", { class: "form-actions" },
        h("button", { class: "btn", type: "button", onclick: () => delDialog.close() }, "Cancel"),
        h("button", { class: "btn btn-danger-solid", type: "button", id: "delete-confirm" }, "Delete Integration")));
    delDialog.querySelector("#delete-confirm").addEventListener("click", async (e) => {
      delDialog.close();
      const ok = await act(e.target, () => api.del(`/sources/${id}`));
      if (ok) { ctx.flash("success", "Integration deleted.", `${source.display_name} is gone; the schema ${source.name} stays in your warehouse.`, null, { persist: true }); ctx.navigate("/"); }
    });
    const del = h("button", { class: "btn btn-danger", type: "button", id: "delete-integration", onclick: () => delDialog.showModal() }, "Delete Integration");
    const pauseBtn = h("button", { class: "btn", type: "button", id: "pause-syncing" }, source.paused_at ? "Resume Syncing" : "Pause Syncing");
    pauseBtn.addEventListener("click", () => act(pauseBtn, async () => {
      await api.put(`/sources/${id}`, { paused_at: source.paused_at ? null : new Date().toISOString() });
      await refreshSource();
      await drawTab();
    }, source.paused_at ? "Syncing resumed." : "Syncing paused."));

    mount(body, h("div", { class: "grid grid-2" },
      h("div", { class: "stack" },
        box("Replication Frequency", "How often seam starts an extraction. Only one runs at a time; a slot that comes while one runs is skipped.",
          h("div", { class: "field" }, h("label", { class: "check" }, useDefault, "Use integration default (30 minutes)")),
          h("div", { class: "field" }, freqSet),
          h("div", { class: "field" }, h("label", { for: "anchor_time" }, "Anchor time (UTC, optional)"), anchor,
            h("p", { class: "hint" }, "Runs line up with this time of day, e.g. 06:00 with 6 hours → 00:00, 06:00, 12:00, 18:00. Needs 1 hour or more.")),
          h("div", { class: "field" }, h("label", { for: "cron_expression" }, "Advanced Scheduling: cron expression (Quartz, UTC)"), cron, cronOut,
            h("p", { class: "hint" }, "Six fields: seconds minutes hours day-of-month month day-of-week; seconds 0 and one of the day fields ?. Wins over the frequency.")),
          h("div", { class: "form-actions" }, saveSchedule), scheduleMsg),
        box("Integration Name", `The schema name ${source.name} cannot change.`,
          h("div", { class: "field" }, h("label", { for: "settings-display-name" }, "Integration Name"), dn), h("div", { class: "form-actions" }, saveName), nameMsg)),
      h("div", { class: "stack" },
        source.type === "platform.zendesk"
          ? box("Zendesk credentials", "Changing them runs the connection check again.",
            h("div", { class: "field" }, h("label", { for: "settings-subdomain" }, "Zendesk Site Prefix"), h("div", { class: "affix" }, sub, h("span", { class: "suffix" }, ".zendesk.com"))),
            h("div", { class: "field" }, h("label", { for: "settings-email" }, "Zendesk Login Email"), em),
            h("div", { class: "field" }, h("label", { for: "settings-api-token" }, "Zendesk API Token"), tok, h("p", { class: "hint" }, "Leave empty to keep the saved token.")),
            h("div", { class: "form-actions" }, saveCred), credMsg)
          : await connectorSettings(p, box),
        box("Sync Historical Data", `Replicating data changed since ${p.start_date.slice(0, 10)}.`,
          h("div", { class: "field" }, h("label", { for: "settings-start-date" }, "Start date"), startInput),
          h("div", { class: "form-actions" }, saveStart), resetMsg, resetDialog),
        box("Pause or delete", null,
          h("p", { class: "small" }, "Pause Syncing stops scheduled extractions (Run Extraction Now still works). Deleting keeps the warehouse data."),
          h("div", { class: "form-actions" }, pauseBtn, del), delDialog))));
    syncDefault();
    if (!useDefault.checked) previewCron();
  }

  mount(main, head, live, body);
  drawHead();
  await drawTab();
  await pollProgress().catch(() => {});
  const tick = async () => {
    if (stopped) return;
    try { await pollProgress(); } catch { /* the next tick tries again */ }
    timers.push(setTimeout(tick, 1000));
  };
  timers.push(setTimeout(tick, 1000));
  return () => { stopped = true; timers.forEach(clearTimeout); };
}
