//! Deterministic generation of a Zendesk account for `(tickets, seed)`.
//!
//! Shapes follow the Zendesk Support API reference
//! (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/> and siblings).
//! Timestamps are laid out relative to an anchor a few minutes before the simulator starts, over
//! roughly two years, with many records sharing one second: a pool of "busy seconds", and one bulk
//! update that stamps up to 1,500 tickets (and up to 1,200 users) with the same second so that
//! export page boundaries fall inside equal-timestamp runs.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::{Store, TicketMeta, LIST_STREAMS};
use crate::clock::iso;

/// Seconds per day.
pub const DAY: i64 = 86_400;
/// Tickets closed this long before the anchor are archived (Zendesk archives 120 days after close).
pub const ARCHIVE_AFTER: i64 = 120 * DAY;
/// First id handed to non-ticket records (ticket ids are small and sequential, like Zendesk's).
const FIRST_ID: u64 = 360_000_000_000;
/// How far back the generated history goes.
const SPAN: i64 = 730 * DAY;
/// The newest generated timestamp is this many seconds before the simulator starts.
const ANCHOR_LAG: i64 = 300;

/// A custom ticket field and what its values look like.
#[derive(Debug, Clone)]
pub struct CustomField {
    /// Ticket field id.
    pub id: u64,
    /// Zendesk field type (`text`, `integer`, `multiselect`, ...).
    pub kind: &'static str,
    /// Option values for `tagger` / `multiselect`.
    pub options: Vec<String>,
}

const WORDS: &[&str] = &[
    "printer", "fire", "invoice", "refund", "login", "password", "shipping", "delayed", "broken", "screen",
    "account", "upgrade", "billing", "export", "report", "slow", "error", "crash", "sync", "mobile", "app",
    "order", "missing", "package", "warranty", "café", "naïve", "Zürich", "straße", "déjà", "vu", "über",
    "façade",
];
const UNICODE_SNIPPETS: &[&str] = &[
    "Привет, у меня проблема",
    "こんにちは、注文が届きません",
    "مرحبا، أحتاج إلى مساعدة",
    "שלום, החשבון נעול",
    "🔥🔥 the printer is on fire 🔥🔥",
    "👩‍💻 developer here 🚀",
    "e\u{301}le\u{300}ve — combining marks",
    "emoji flags 🇫🇷🇯🇵 and ✅ ❌",
    "tab\tand \"quotes\" and back\\slash",
    "null byte-free but zero\u{200b}width",
];
const TAG_POOL: &[&str] = &[
    "vip",
    "billing",
    "refund",
    "urgent",
    "mobile",
    "web",
    "bug",
    "feature_request",
    "churn_risk",
    "enterprise",
    "trial",
    "follow_up",
    "escalated",
    "spam",
    "español",
    "日本語",
    "printer",
    "shipping",
    "returns",
    "api",
];
const CHANNELS: &[&str] = &[
    "web",
    "email",
    "api",
    "mobile",
    "chat",
    "voice",
    "twitter",
    "any_channel",
];
const STATUSES: &[&str] = &["new", "open", "pending", "hold", "solved", "closed"];
const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
const TYPES: &[&str] = &["question", "incident", "problem", "task"];
const FIRST_NAMES: &[&str] = &[
    "Ana", "Bjørn", "Chloé", "Dmitri", "Eun-ji", "Fatima", "Giulia", "Hiroshi", "Ingrid", "José", "Kwame",
    "Léa", "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Renée", "Søren", "Tomás",
];
const LAST_NAMES: &[&str] = &[
    "García", "Müller", "O'Brien", "Nguyễn", "Kowalski", "Smith", "Dubois", "Rossi", "Tanaka", "Ivanova",
    "Okafor", "Jensen", "Silva", "Kim", "Novák", "Haddad",
];

/// Generator state: a seeded RNG plus the store being filled.
pub(crate) struct Gen<'a> {
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) store: &'a mut Store,
    pub(crate) host: String,
    pub(crate) anchor: i64,
    pub(crate) busy: Vec<i64>,
}

/// Ids of generated records by role, used to wire foreign keys.
#[derive(Debug, Default, Clone)]
pub struct People {
    /// Agents and admins.
    pub agents: Vec<u64>,
    /// Active end users.
    pub end_users: Vec<u64>,
    /// Live organizations.
    pub orgs: Vec<u64>,
    /// Groups.
    pub groups: Vec<u64>,
    /// Brands.
    pub brands: Vec<u64>,
    /// Ticket forms.
    pub forms: Vec<u64>,
}

/// Unix seconds of the newest generated record for a simulator started at `start`.
pub fn anchor_for(start: i64) -> i64 {
    start - start.rem_euclid(60) - ANCHOR_LAG
}

/// Builds the account. `start` is sim-now at startup; `me_email` is the API user's address.
pub fn generate(
    tickets: usize,
    seed: u64,
    start: i64,
    subdomain: &str,
    me_email: &str,
    me_role: &str,
) -> Store {
    let mut store = Store {
        next_id: FIRST_ID,
        host: format!("https://{subdomain}.zendesk.com"),
        ..Store::default()
    };
    for name in LIST_STREAMS {
        store.lists.insert(name, super::Collection::default());
    }
    let anchor = anchor_for(start);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_2e6d_e5c0_0001);
    let busy_count = (tickets / 20).max(3);
    let busy = (0..busy_count).map(|_| anchor - rng.gen_range(0..SPAN)).collect();
    let mut g = Gen {
        rng: &mut rng,
        store: &mut store,
        host: format!("https://{subdomain}.zendesk.com"),
        anchor,
        busy,
    };
    let mut people = People::default();
    g.config_objects(&mut people);
    g.organizations(tickets, &mut people);
    g.users(tickets, me_email, me_role, &mut people);
    g.memberships(&people);
    g.tickets(tickets, &people);
    g.satisfaction_ratings(&people);
    store.people = people;
    store
}

impl Gen<'_> {
    pub(crate) fn id(&mut self) -> u64 {
        self.store.new_id()
    }

    pub(crate) fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.rng.gen_range(0..items.len())]
    }

    pub(crate) fn pick_id(&mut self, ids: &[u64]) -> Option<u64> {
        if ids.is_empty() {
            None
        } else {
            Some(ids[self.rng.gen_range(0..ids.len())])
        }
    }

    /// A timestamp in the history, snapped to a busy second 30% of the time.
    fn past_ts(&mut self) -> i64 {
        if self.rng.gen_bool(0.3) {
            let i = self.rng.gen_range(0..self.busy.len());
            self.busy[i]
        } else {
            self.anchor - self.rng.gen_range(0..SPAN)
        }
    }

    /// A timestamp between `from` and the anchor, snapped to a busy second when one fits.
    fn later_ts(&mut self, from: i64) -> i64 {
        if from >= self.anchor {
            return self.anchor;
        }
        if self.rng.gen_bool(0.25) {
            let i = self.rng.gen_range(0..self.busy.len());
            if self.busy[i] >= from {
                return self.busy[i];
            }
        }
        let max = (self.anchor - from).min(60 * DAY);
        from + self.rng.gen_range(0..=max)
    }

    pub(crate) fn words(&mut self, n: usize) -> String {
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            let w: &str = self.pick::<&str>(WORDS);
            out.push_str(w);
        }
        out
    }

    pub(crate) fn sentence(&mut self) -> String {
        if self.rng.gen_bool(0.2) {
            let s = *self.pick(UNICODE_SNIPPETS);
            let w = self.words(3);
            format!("{s} {w}")
        } else {
            let n = self.rng.gen_range(3..9);
            self.words(n)
        }
    }

    pub(crate) fn body(&mut self) -> String {
        if self.rng.gen_bool(0.02) {
            // A long body (10+ KB), as pasted logs and email threads produce.
            let para = self.sentence();
            let mut s = String::with_capacity(11_000);
            while s.len() < 10_500 {
                s.push_str(&para);
                s.push_str("\n\n> quoted line from the previous email, kept for context\n");
            }
            s
        } else {
            let n = self.rng.gen_range(1..4);
            (0..n).map(|_| self.sentence()).collect::<Vec<_>>().join("\n")
        }
    }

    pub(crate) fn tags(&mut self, max: usize) -> Vec<String> {
        let n = self.rng.gen_range(0..=max);
        let mut t: Vec<String> = (0..n).map(|_| (*self.pick(TAG_POOL)).to_owned()).collect();
        t.sort();
        t.dedup();
        t
    }

    pub(crate) fn name(&mut self) -> String {
        let f = *self.pick(FIRST_NAMES);
        let l = *self.pick(LAST_NAMES);
        format!("{f} {l}")
    }

    pub(crate) fn via(&mut self, channel: &str) -> Value {
        match channel {
            "email" => json!({"channel": "email", "source": {
                "from": {"address": "customer@example.com", "name": self.name()},
                "to": {"address": "support@acme.test", "name": "Acme Support"}, "rel": null}}),
            "voice" => json!({"channel": "voice", "source": {
                "from": {"phone": "+14155550100", "formatted_phone": "+1 (415) 555-0100"},
                "to": {"phone": "+14155550199"}, "rel": "inbound"}}),
            "api" => json!({"channel": "api", "source": {"from": {}, "to": {}, "rel": null}}),
            other => json!({"channel": other, "source": {"from": {}, "to": {}, "rel": null}}),
        }
    }

    pub(crate) fn attachment(&mut self) -> Value {
        let id = self.id();
        let thumb = self.id();
        let host = self.host.clone();
        let image = self.rng.gen_bool(0.6);
        let (name, ctype) = if image {
            ("screenshot 📷.png", "image/png")
        } else {
            ("logs.txt", "text/plain")
        };
        let thumbnails = if image {
            json!([{"id": thumb, "file_name": "screenshot 📷_thumb.png",
                "content_url": format!("{host}/attachments/token/t{thumb}/?name=thumb.png"),
                "mapped_content_url": format!("{host}/attachments/token/t{thumb}/?name=thumb.png"),
                "content_type": "image/png", "size": 2_048, "width": 80, "height": 60, "inline": false,
                "deleted": false, "url": format!("{host}/api/v2/attachments/{thumb}.json")}])
        } else {
            json!([])
        };
        json!({"id": id, "file_name": name,
            "content_url": format!("{host}/attachments/token/a{id}/?name=file"),
            "mapped_content_url": format!("{host}/attachments/token/a{id}/?name=file"),
            "content_type": ctype, "size": self.rng.gen_range(100..5_000_000),
            "width": if image { json!(1280) } else { Value::Null },
            "height": if image { json!(800) } else { Value::Null },
            "inline": false, "deleted": false, "malware_access_override": false,
            "malware_scan_result": "malware_not_found",
            "url": format!("{host}/api/v2/attachments/{id}.json"), "thumbnails": thumbnails})
    }

    pub(crate) fn put_list(&mut self, stream: &'static str, id: u64, ts: i64, v: &Value) {
        self.store.list_mut(stream).upsert(id, ts, v.to_string());
    }

    fn config_objects(&mut self, p: &mut People) {
        let host = self.host.clone();
        // Brands.
        for i in 0..2 {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let v = json!({"url": format!("{host}/api/v2/brands/{id}.json"), "id": id,
                "name": if i == 0 { "Acme" } else { "Acme Labs 🧪" }, "brand_url": format!("https://acme{i}.zendesk.com"),
                "subdomain": format!("acme{i}"), "host_mapping": null, "has_help_center": i == 0,
                "help_center_state": if i == 0 { "enabled" } else { "disabled" }, "active": true, "default": i == 0,
                "is_deleted": false, "logo": null, "ticket_form_ids": [], "signature_template": "{{agent.signature}}",
                "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("brands", id, u, &v);
            p.brands.push(id);
        }
        // Groups.
        for i in 0..6 {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let v = json!({"url": format!("{host}/api/v2/groups/{id}.json"), "id": id, "is_public": i != 5,
                "name": (["Support", "Billing", "Tier 2", "Escalations", "Ventes (FR)", "Internal"][i]),
                "description": if i % 2 == 0 { Value::Null } else { json!("Handles the hard ones") },
                "default": i == 0, "deleted": false, "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("groups", id, u, &v);
            p.groups.push(id);
        }
        // Ticket fields: system fields then one custom field of every type.
        let system = [
            "subject",
            "description",
            "status",
            "tickettype",
            "priority",
            "group",
            "assignee",
            "custom_status",
        ];
        for (pos, kind) in system.iter().enumerate() {
            let id = self.id();
            let c = self.anchor - SPAN;
            let v = self.ticket_field(id, kind, kind, pos, c, c, &[]);
            self.put_list("ticket_fields", id, c, &v);
        }
        let custom: [(&'static str, &str); 10] = [
            ("text", "Order number"),
            ("textarea", "Steps to reproduce"),
            ("integer", "Seats"),
            ("decimal", "Refund amount"),
            ("checkbox", "Escalated to vendor"),
            ("date", "Renewal date"),
            ("tagger", "Product area"),
            ("multiselect", "Affected platforms"),
            ("regexp", "Serial (AA-0000)"),
            ("lookup", "Account manager"),
        ];
        for (i, (kind, title)) in custom.iter().enumerate() {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let options: Vec<String> = match *kind {
                "tagger" => ["billing", "hardware", "software", "shipping"]
                    .iter()
                    .map(|s| format!("area_{s}"))
                    .collect(),
                "multiselect" => ["ios", "android", "web", "desktop"]
                    .iter()
                    .map(|s| format!("platform_{s}"))
                    .collect(),
                _ => vec![],
            };
            let v = self.ticket_field(id, kind, title, system.len() + i, c, u, &options);
            self.put_list("ticket_fields", id, u, &v);
            self.store.custom_fields.push(CustomField { id, kind, options });
        }
        // User and organization fields.
        for (stream, kinds) in [
            ("user_fields", ["text", "checkbox", "date", "dropdown", "integer"]),
            (
                "organization_fields",
                ["text", "decimal", "dropdown", "regexp", "textarea"],
            ),
        ] {
            for (pos, kind) in kinds.iter().enumerate() {
                let id = self.id();
                let c = self.past_ts();
                let u = self.later_ts(c);
                let key = format!("{}_{}", kind, pos);
                let options = if *kind == "dropdown" {
                    json!([{"id": id + 1_000_000, "name": "Gold", "raw_name": "Gold", "value": "gold"},
                           {"id": id + 1_000_001, "name": "Silver", "raw_name": "Silver", "value": "silver"}])
                } else {
                    Value::Null
                };
                let mut v = json!({"url": format!("{host}/api/v2/{stream}/{id}.json"), "id": id, "type": kind,
                    "key": key, "title": format!("{kind} field"), "raw_title": format!("{kind} field"),
                    "description": "", "raw_description": "", "position": pos, "active": true, "system": false,
                    "regexp_for_validation": if *kind == "regexp" { json!("^[A-Z]{2}-\\d{4}$") } else { Value::Null },
                    "created_at": iso(c), "updated_at": iso(u)});
                if !options.is_null() {
                    v["custom_field_options"] = options;
                }
                self.put_list(stream, id, u, &v);
            }
        }
        // Ticket forms.
        let field_ids: Vec<u64> = self
            .store
            .list("ticket_fields")
            .map(|c| c.iter().map(|r| r.id).collect())
            .unwrap_or_default();
        for (i, form_name) in ["Default form", "Refunds", "Hardware RMA"].iter().enumerate() {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let v = json!({"url": format!("{host}/api/v2/ticket_forms/{id}.json"), "id": id,
                "name": form_name, "raw_name": form_name, "display_name": form_name, "raw_display_name": form_name,
                "end_user_visible": true, "position": i, "ticket_field_ids": field_ids, "active": true, "default": i == 0,
                "in_all_brands": true, "restricted_brand_ids": [], "end_user_conditions": [], "agent_conditions": [],
                "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("ticket_forms", id, u, &v);
            p.forms.push(id);
        }
        // Custom roles, schedules, SLA policies, phone numbers.
        for (i, name) in ["Light agent", "Team lead", "Contributor"].iter().enumerate() {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let v = json!({"id": id, "name": name, "description": format!("{name} role"), "role_type": i,
                "created_at": iso(c), "updated_at": iso(u), "team_member_count": i * 3,
                "configuration": {"chat_access": true, "end_user_profile": "readonly", "forum_access": "readonly",
                    "macro_access": "readonly", "manage_business_rules": i == 1, "ticket_access": "within-groups",
                    "ticket_editing": true, "view_access": "readonly", "explore_access": "none"}});
            self.put_list("custom_roles", id, u, &v);
        }
        for (i, tz) in ["Pacific Time (US & Canada)", "Europe/Berlin"].iter().enumerate() {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let intervals: Vec<Value> = (1..6)
                .map(|d| json!({"start_time": d * 1440 + 540, "end_time": d * 1440 + 1020}))
                .collect();
            let v = json!({"id": id, "name": format!("Business hours {i}"), "time_zone": tz,
                "intervals": intervals, "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("schedules", id, u, &v);
        }
        for i in 0..2 {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let v = json!({"url": format!("{host}/api/v2/slas/policies/{id}.json"), "id": id,
                "title": (["Standard", "VIP"][i]), "description": "Reply fast", "position": i + 1,
                "filter": {"all": [{"field": "type", "operator": "is", "value": "incident"}], "any": []},
                "policy_metrics": [{"priority": "high", "metric": "first_reply_time", "target": 60, "business_hours": false},
                                   {"priority": "urgent", "metric": "first_reply_time", "target": 30, "business_hours": false}],
                "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("sla_policies", id, u, &v);
        }
        // Talk phone numbers as https://developer.zendesk.com/api-reference/voice/talk-api/phone_numbers/
        // describes them: `categorised_greetings` maps greeting category ids ("1" voicemail, "2"
        // available, ...: https://developer.zendesk.com/api-reference/voice/talk-api/greetings/) to
        // greeting names, and `categorised_greetings_with_sub_settings` gives each category's
        // settings, or the category's greeting name when it has none. Object keys are digits.
        for i in 0..2u64 {
            let id = self.id();
            let c = self.past_ts();
            let greetings = json!({"1": "voicemail_en", "2": "available_en"});
            let with_sub_settings = json!({
                "1": {"voicemail_on_outside_business_hours": "voicemail_en",
                      "voicemail_off_outside_business_hours": "voicemail_en_voicemail_config",
                      "voicemail_on_inside_business_hours": "voicemail_en",
                      "voicemail_off_inside_business_hours": "voicemail_en_voicemail_config"},
                "2": {"voicemail_on": "available_en_voicemail_config", "voicemail_off": "available_en"}});
            let v = json!({"id": id, "url": format!("{host}/api/v2/channels/voice/phone_numbers/{id}.json"),
                "number": format!("+1415555{:04}", 100 + i), "display_number": format!("+1 (415) 555-{:04}", 100 + i),
                "name": format!("Main line {i}"), "nickname": if i == 0 { json!("Main") } else { Value::Null },
                "country_code": "US", "location": "CA", "toll_free": false, "external": false, "line_type": "phone",
                "capabilities": {"sms": true, "mms": false, "voice": true}, "sms_enabled": false, "voice_enabled": true,
                "greeting_ids": [], "group_ids": [], "default_group_id": null, "default_greeting_ids": ["voicemail_en", "available_en"],
                "categorised_greetings": greetings, "categorised_greetings_with_sub_settings": with_sub_settings,
                "priority": 0, "recorded": true, "transcription": false,
                "token": format!("tok{id}"), "created_at": iso(c)});
            self.put_list("talk_phone_numbers", id, c, &v);
        }
        // Business rules.
        for (stream, n) in [("macros", 12), ("automations", 4), ("triggers", 8), ("views", 6)] {
            for pos in 0..n {
                let id = self.id();
                let c = self.past_ts();
                let u = self.later_ts(c);
                let title = format!("{} {} {}", stream.trim_end_matches('s'), pos, self.words(2));
                let path = if stream == "macros" { "macros" } else { stream };
                let mut v = json!({"url": format!("{host}/api/v2/{path}/{id}.json"), "id": id, "title": title,
                    "raw_title": title, "active": pos % 5 != 4, "position": pos, "description": null,
                    "created_at": iso(c), "updated_at": iso(u)});
                match stream {
                    "macros" => {
                        v["actions"] = json!([{"field": "status", "value": "solved"}, {"field": "comment_value", "value": "Thanks! 🙏"}]);
                        v["restriction"] = Value::Null;
                    }
                    "views" => {
                        v["conditions"] = json!({"all": [{"field": "status", "operator": "less_than", "value": "solved"}], "any": []});
                        v["execution"] = json!({"group_by": "status", "sort_by": "updated", "columns": [{"id": "subject", "title": "Subject"}]});
                        v["restriction"] = Value::Null;
                        v["default"] = json!(pos == 0);
                    }
                    _ => {
                        v["conditions"] = json!({"all": [{"field": "status", "operator": "is", "value": "solved"}], "any": []});
                        v["actions"] = json!([{"field": "status", "value": "closed"}]);
                    }
                }
                self.put_list(stream, id, u, &v);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ticket_field(
        &mut self,
        id: u64,
        kind: &str,
        title: &str,
        pos: usize,
        c: i64,
        u: i64,
        options: &[String],
    ) -> Value {
        let host = self.host.clone();
        let opts: Vec<Value> = options
            .iter()
            .enumerate()
            .map(|(i, o)| json!({"id": id * 10 + i as u64, "name": o.replace('_', " "), "raw_name": o.replace('_', " "), "value": o, "default": false}))
            .collect();
        json!({"url": format!("{host}/api/v2/ticket_fields/{id}.json"), "id": id, "type": kind, "title": title,
            "raw_title": title, "description": format!("{title} (agent help text)"), "raw_description": format!("{title} (agent help text)"),
            "position": pos, "active": true, "required": false, "collapsed_for_agents": false,
            "regexp_for_validation": if kind == "regexp" { json!("^[A-Z]{2}-\\d{4}$") } else { Value::Null },
            "title_in_portal": title, "raw_title_in_portal": title, "visible_in_portal": kind != "textarea",
            "editable_in_portal": false, "required_in_portal": false, "agent_can_edit": true, "tag": null,
            "created_at": iso(c), "updated_at": iso(u), "removable": !matches!(kind, "subject" | "description" | "status"),
            "key": null, "agent_description": null,
            "custom_field_options": if opts.is_empty() { Value::Null } else { Value::Array(opts) },
            "relationship_target_type": if kind == "lookup" { json!("zen:user") } else { Value::Null },
            "relationship_filter": if kind == "lookup" { json!({"all": [], "any": []}) } else { Value::Null }})
    }

    fn organizations(&mut self, tickets: usize, p: &mut People) {
        let host = self.host.clone();
        let n = (tickets / 50).max(1);
        for i in 0..n {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let tags = self.tags(2);
            let deleted = i % 30 == 29;
            let v = json!({"url": format!("{host}/api/v2/organizations/{id}.json"), "id": id,
                "name": format!("Org {i} {}", self.pick(LAST_NAMES)), "shared_tickets": i % 3 == 0, "shared_comments": false,
                "external_id": if i % 4 == 0 { json!(format!("crm-{i}")) } else { Value::Null },
                "created_at": iso(c), "updated_at": iso(u), "deleted_at": if deleted { json!(iso(u)) } else { Value::Null },
                "domain_names": [format!("org{i}.example.com")], "details": "", "notes": "",
                "group_id": null, "tags": tags,
                "organization_fields": {"text_0": "x", "decimal_1": 12.5, "dropdown_2": "gold", "regexp_3": null, "textarea_4": "multi\nline"}});
            for t in &tags {
                *self.store.tags.entry(t.clone()).or_insert(0) += 1;
            }
            self.store.organizations.upsert(id, u, v.to_string());
            if deleted {
                self.store.deleted_org_ids.insert(id);
            } else {
                p.orgs.push(id);
            }
        }
    }

    fn users(&mut self, tickets: usize, me_email: &str, me_role: &str, p: &mut People) {
        let n = (tickets / 2).max(5);
        let bulk = if n >= 2_400 { 1_200 } else { n / 4 };
        let bulk_ts = self.anchor - 2 * DAY - 17;
        for i in 0..n {
            let id = self.id();
            let c = self.past_ts();
            let mut u = self.later_ts(c);
            if i >= n - bulk && c < bulk_ts {
                u = bulk_ts;
            }
            let role = if i == 0 {
                me_role.to_owned()
            } else if i < (n / 20).max(3) {
                "agent".to_owned()
            } else {
                "end-user".to_owned()
            };
            let email = if i == 0 {
                me_email.to_owned()
            } else {
                format!("user{i}@example.com")
            };
            let deleted = role == "end-user" && i % 40 == 7;
            let org = if self.rng.gen_bool(0.7) {
                self.pick_id(&p.orgs)
            } else {
                None
            };
            let v = self.user_json(id, i, &email, &role, c, u, org, !deleted);
            self.store.users.upsert(id, u, v.to_string());
            if i == 0 {
                self.store.me_id = id;
            }
            if deleted {
                self.store.deleted_user_ids.insert(id);
            } else if role == "end-user" {
                p.end_users.push(id);
            } else {
                p.agents.push(id);
            }
            // Identities: a primary email, sometimes a phone number.
            let mut ids = Vec::new();
            for (k, kind) in ["email", "phone_number"].iter().enumerate() {
                if k == 1 && !self.rng.gen_bool(0.3) {
                    continue;
                }
                let iid = self.id();
                let value = if k == 0 {
                    email.clone()
                } else {
                    format!("+1555{:07}", i)
                };
                let iv = json!({"url": format!("{}/api/v2/users/{id}/identities/{iid}.json", self.host), "id": iid,
                    "user_id": id, "type": kind, "value": value, "verified": true, "primary": k == 0,
                    "created_at": iso(c), "updated_at": iso(u), "undeliverable_count": 0, "deliverable_state": "deliverable"});
                self.store.identities.upsert(iid, u, iv.to_string());
                ids.push(iid);
            }
            self.store.identities_by_user.insert(id, ids);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn user_json(
        &mut self,
        id: u64,
        i: usize,
        email: &str,
        role: &str,
        c: i64,
        u: i64,
        org: Option<u64>,
        active: bool,
    ) -> Value {
        let name = if i == 0 {
            "Admin Sim".to_owned()
        } else {
            self.name()
        };
        let tags = self.tags(2);
        for t in &tags {
            *self.store.tags.entry(t.clone()).or_insert(0) += 1;
        }
        let photo = if self.rng.gen_bool(0.1) {
            self.attachment()
        } else {
            Value::Null
        };
        json!({"id": id, "url": format!("{}/api/v2/users/{id}.json", self.host), "name": name, "email": email,
            "created_at": iso(c), "updated_at": iso(u), "time_zone": "Eastern Time (US & Canada)",
            "iana_time_zone": "America/New_York", "phone": null, "shared_phone_number": null, "photo": photo,
            "locale_id": 1, "locale": "en-US", "organization_id": org, "role": role, "verified": true,
            "external_id": null, "tags": tags, "alias": null, "active": active, "shared": false, "shared_agent": false,
            "last_login_at": if role == "end-user" { Value::Null } else { json!(iso(u)) },
            "two_factor_auth_enabled": null, "signature": null, "details": "", "notes": "",
            "role_type": if role == "agent" { json!(0) } else { Value::Null }, "custom_role_id": null,
            "moderator": role != "end-user", "ticket_restriction": if role == "end-user" { json!("requested") } else { Value::Null },
            "only_private_comments": false, "restricted_agent": false, "suspended": false, "default_group_id": null,
            "report_csv": role == "admin", "permanently_deleted": false,
            "user_fields": {"text_0": null, "checkbox_1": i.is_multiple_of(2), "date_2": "2024-02-29", "dropdown_3": "silver", "integer_4": i}})
    }

    fn memberships(&mut self, p: &People) {
        let host = self.host.clone();
        for (k, agent) in p.agents.iter().enumerate() {
            let n = 1 + k % 2;
            for j in 0..n {
                let id = self.id();
                let group = p.groups[(k + j) % p.groups.len()];
                let c = self.past_ts();
                let u = self.later_ts(c);
                let v = json!({"url": format!("{host}/api/v2/group_memberships/{id}.json"), "id": id, "user_id": agent,
                    "group_id": group, "default": j == 0, "created_at": iso(c), "updated_at": iso(u)});
                self.put_list("group_memberships", id, u, &v);
            }
        }
        let users: Vec<(u64, Value)> = self
            .store
            .users
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.json).ok().map(|v| (r.id, v)))
            .collect();
        for (uid, v) in users {
            let Some(org) = v["organization_id"].as_u64() else {
                continue;
            };
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let m = json!({"url": format!("{host}/api/v2/organization_memberships/{id}.json"), "id": id, "user_id": uid,
                "organization_id": org, "default": true, "organization_name": format!("Org {org}"), "view_tickets": false,
                "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("organization_memberships", id, u, &m);
        }
    }

    fn custom_value(&mut self, f: &CustomField, people: &People) -> Value {
        if self.rng.gen_bool(0.25) {
            return if f.kind == "multiselect" {
                json!([])
            } else if f.kind == "checkbox" {
                json!(false)
            } else {
                Value::Null
            };
        }
        match f.kind {
            "text" => json!(format!("ORD-{}", self.rng.gen_range(1000..99999))),
            "textarea" => json!(format!("1. {}\n2. {}", self.sentence(), self.sentence())),
            "integer" => json!(self.rng.gen_range(-5..5000)),
            "decimal" => json!((self.rng.gen_range(0..100_000) as f64) / 100.0),
            "checkbox" => json!(self.rng.gen_bool(0.5)),
            "date" => json!(format!(
                "20{:02}-{:02}-{:02}",
                self.rng.gen_range(23..27),
                self.rng.gen_range(1..13),
                self.rng.gen_range(1..29)
            )),
            "tagger" => json!(self.pick(&f.options).clone()),
            "multiselect" => {
                let mut vals: Vec<String> = f
                    .options
                    .iter()
                    .filter(|_| self.rng.gen_bool(0.4))
                    .cloned()
                    .collect();
                vals.sort();
                json!(vals)
            }
            "regexp" => json!(format!("AB-{:04}", self.rng.gen_range(0..10_000))),
            "lookup" => self.pick_id(&people.agents).map_or(Value::Null, |v| json!(v)),
            _ => Value::Null,
        }
    }

    fn tickets(&mut self, n: usize, p: &People) {
        let bulk = if n >= 6_000 { 1_500 } else { n / 4 };
        let bulk_ts = self.anchor - 3 * DAY - 7;
        for tid in 1..=n as u64 {
            let created = self.past_ts();
            let mut updated = self.later_ts(created);
            let mut status = (*self.pick(STATUSES)).to_owned();
            if (tid as usize) > n - bulk && created < bulk_ts {
                // The bulk update: one macro applied to many tickets in one second.
                updated = bulk_ts;
                if status == "closed" {
                    status = "solved".to_owned();
                }
            }
            let mut generated = updated;
            if self.rng.gen_bool(0.1) && updated < self.anchor {
                // A system update (e.g. SLA recalculation) bumps generated_timestamp only.
                generated = (updated + self.rng.gen_range(1..5 * DAY)).min(self.anchor);
            }
            let deleted = tid % 50 == 13;
            self.make_ticket(tid, created, updated, generated, &status, deleted, p);
        }
    }

    /// Creates one ticket with its audits, metric set and metric events. A ticket closed more
    /// than [`ARCHIVE_AFTER`] before the anchor is archived.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make_ticket(
        &mut self,
        tid: u64,
        created: i64,
        updated: i64,
        generated: i64,
        status: &str,
        deleted: bool,
        p: &People,
    ) {
        let fields = self.store.custom_fields.clone();
        let requesters: &[u64] = if p.end_users.is_empty() {
            &p.agents
        } else {
            &p.end_users
        };
        let archived = !deleted && status == "closed" && generated < self.anchor - ARCHIVE_AFTER;
        let final_status = if deleted {
            "deleted".to_owned()
        } else {
            status.to_owned()
        };
        let channel = (*self.pick(CHANNELS)).to_owned();
        let via = self.via(&channel);
        let requester = self.pick_id(requesters).unwrap_or(self.store.me_id);
        let assignee = if status == "new" {
            None
        } else {
            self.pick_id(&p.agents)
        };
        let group = self.pick_id(&p.groups);
        let org = if self.rng.gen_bool(0.6) {
            self.pick_id(&p.orgs)
        } else {
            None
        };
        let subject = self.sentence();
        let description = self.body();
        let tags = self.tags(4);
        for t in &tags {
            *self.store.tags.entry(t.clone()).or_insert(0) += 1;
        }
        let custom: Vec<Value> = fields
            .iter()
            .map(|f| json!({"id": f.id, "value": self.custom_value(f, p)}))
            .collect();
        let collaborators: Vec<u64> = (0..self.rng.gen_range(0..3))
            .filter_map(|_| self.pick_id(requesters))
            .collect();
        let followers: Vec<u64> = (0..self.rng.gen_range(0..2))
            .filter_map(|_| self.pick_id(&p.agents))
            .collect();
        let brand = self.pick_id(&p.brands);
        let form = self.pick_id(&p.forms);
        let ticket = json!({
            "url": format!("{}/api/v2/tickets/{tid}.json", self.host), "id": tid,
            "external_id": if tid.is_multiple_of(7) { json!(format!("ext-{tid}")) } else { Value::Null },
            "via": via.clone(), "created_at": iso(created), "updated_at": iso(updated),
            "generated_timestamp": generated,
            "type": if self.rng.gen_bool(0.2) { Value::Null } else { json!(self.pick(TYPES)) },
            "subject": subject, "raw_subject": subject, "description": description,
            "priority": if self.rng.gen_bool(0.2) { Value::Null } else { json!(self.pick(PRIORITIES)) },
            "status": final_status, "recipient": if channel == "email" { json!("support@acme.test") } else { Value::Null },
            "requester_id": requester, "submitter_id": requester, "assignee_id": assignee,
            "organization_id": org, "group_id": group, "collaborator_ids": collaborators.clone(),
            "follower_ids": followers, "email_cc_ids": collaborators, "forum_topic_id": null, "problem_id": null,
            "has_incidents": false, "is_public": true,
            "due_at": if tid.is_multiple_of(11) { json!(iso(updated + 7 * DAY)) } else { Value::Null },
            "tags": tags, "custom_fields": custom.clone(), "fields": custom,
            "satisfaction_rating": null, "sharing_agreement_ids": [], "custom_status_id": 360_000_000_001u64,
            "followup_ids": [], "ticket_form_id": form, "brand_id": brand, "allow_channelback": false,
            "allow_attachments": true, "from_messaging_channel": false});
        self.store.tickets.upsert(tid, generated, ticket.to_string());
        self.store
            .ticket_meta
            .insert(tid, TicketMeta { deleted, archived });
        if deleted {
            let d = json!({"id": tid, "subject": subject, "description": ticket["description"],
                "actor": {"id": self.store.me_id, "name": "Admin Sim"}, "deleted_at": iso(generated),
                "previous_state": status});
            self.store.deleted_tickets.upsert(tid, generated, d.to_string());
        }
        self.ticket_history(
            tid,
            created,
            updated,
            status,
            &via,
            requester,
            assignee,
            &p.agents,
            &description,
        );
        self.metric_set(tid, created, updated, status);
        self.metric_events(tid, created, updated);
    }

    /// ~3 audits per ticket: a Create audit carrying the first comment, then Change audits, the
    /// last one at `updated_at` (updated_at moves only when an audit is written).
    #[allow(clippy::too_many_arguments)]
    fn ticket_history(
        &mut self,
        tid: u64,
        created: i64,
        updated: i64,
        status: &str,
        via: &Value,
        requester: u64,
        assignee: Option<u64>,
        agents: &[u64],
        description: &str,
    ) {
        let n = self.rng.gen_range(1..=5usize);
        let mut times = vec![created];
        for k in 1..n {
            if k == n - 1 {
                times.push(updated.max(created));
            } else {
                let t = created + self.rng.gen_range(0..=(updated - created).max(0));
                times.push(t);
            }
        }
        times.sort();
        let mut prev_status = "new".to_owned();
        for (k, t) in times.iter().enumerate() {
            let author = if k == 0 {
                requester
            } else {
                self.pick_id(agents).unwrap_or(requester)
            };
            let mut events = Vec::new();
            if k == 0 {
                let comment = self.comment_event(author, description, true);
                events.push(comment);
                for (field, value) in [
                    ("status", json!("new")),
                    ("priority", json!("normal")),
                    ("requester_id", json!(requester)),
                ] {
                    events.push(
                        json!({"id": self.id(), "type": "Create", "field_name": field, "value": value}),
                    );
                }
            } else {
                let next = if k == times.len() - 1 {
                    status.to_owned()
                } else {
                    (*self.pick(&STATUSES[..5])).to_owned()
                };
                if next != prev_status {
                    events.push(json!({"id": self.id(), "type": "Change", "field_name": "status", "value": next, "previous_value": prev_status}));
                    prev_status = next;
                }
                if k == 1 {
                    if let Some(a) = assignee {
                        events.push(json!({"id": self.id(), "type": "Change", "field_name": "assignee_id", "value": a.to_string(), "previous_value": null}));
                    }
                }
                if self.rng.gen_bool(0.7) || events.is_empty() {
                    let body = self.body();
                    let public = self.rng.gen_bool(0.8);
                    events.push(self.comment_event(author, &body, public));
                }
            }
            self.put_audit(tid, *t, author, via, events);
        }
    }

    pub(crate) fn comment_event(&mut self, author: u64, body: &str, public: bool) -> Value {
        let id = self.id();
        let attachments: Vec<Value> = if self.rng.gen_bool(0.15) {
            (0..self.rng.gen_range(1..3)).map(|_| self.attachment()).collect()
        } else {
            vec![]
        };
        let html = format!(
            "<div class=\"zd-comment\" dir=\"auto\"><p>{}</p></div>",
            html_escape(body).replace('\n', "<br>")
        );
        json!({"id": id, "type": "Comment", "author_id": author, "body": body, "html_body": html, "plain_body": body,
            "public": public, "attachments": attachments})
    }

    pub(crate) fn put_audit(&mut self, tid: u64, t: i64, author: u64, via: &Value, mut events: Vec<Value>) {
        let aid = self.id();
        let mut comment_ids = Vec::new();
        for e in &mut events {
            if e["type"] == "Comment" {
                e["audit_id"] = json!(aid);
                comment_ids.extend(e["id"].as_u64());
            }
        }
        self.store.audit_meta.insert(
            aid,
            super::AuditMeta {
                ticket_id: tid,
                comment_ids,
            },
        );
        let audit = json!({"id": aid, "ticket_id": tid, "created_at": iso(t), "author_id": author,
            "metadata": {"system": {"client": "Mozilla/5.0 (X11; Linux x86_64)", "ip_address": "203.0.113.7",
                "location": "San Francisco, CA, United States", "latitude": 37.7758, "longitude": -122.4128}, "custom": {}},
            "via": via, "events": events});
        self.store.audits.upsert(aid, t, audit.to_string());
        self.store.audits_by_ticket.entry(tid).or_default().push(aid);
    }

    pub(crate) fn metric_set(&mut self, tid: u64, created: i64, updated: i64, status: &str) {
        let id = self.id();
        let v = metric_set_json(
            &self.host,
            id,
            tid,
            created,
            updated,
            status,
            self.rng.gen_range(0..4),
        );
        self.store.metric_sets.upsert(id, updated, v.to_string());
        self.store.metric_set_by_ticket.insert(tid, id);
    }

    pub(crate) fn metric_events(&mut self, tid: u64, created: i64, updated: i64) {
        let evs = [
            ("reply_time", "activate", created),
            ("agent_work_time", "activate", created),
            ("reply_time", "fulfill", updated),
            ("agent_work_time", "pause", updated),
        ];
        for (metric, kind, t) in evs {
            if kind != "activate" && self.rng.gen_bool(0.3) {
                continue;
            }
            let id = self.id();
            let v = json!({"id": id, "ticket_id": tid, "metric": metric, "instance_id": 1, "type": kind, "time": iso(t)});
            self.store.metric_events.upsert(id, t, v.to_string());
        }
    }

    fn satisfaction_ratings(&mut self, p: &People) {
        let host = self.host.clone();
        let ids: Vec<u64> = self
            .store
            .tickets
            .iter()
            .map(|r| r.id)
            .filter(|t| t % 5 == 0)
            .collect();
        for tid in ids {
            let id = self.id();
            let c = self.past_ts();
            let u = self.later_ts(c);
            let score = *self.pick(&["good", "bad", "offered"]);
            let v = json!({"url": format!("{host}/api/v2/satisfaction_ratings/{id}.json"), "id": id,
                "assignee_id": self.pick_id(&p.agents), "group_id": self.pick_id(&p.groups),
                "requester_id": self.pick_id(&p.end_users), "ticket_id": tid, "score": score,
                "comment": if score == "offered" { Value::Null } else { json!(self.sentence()) },
                "reason": if score == "bad" { json!("The issue took too long to resolve") } else { Value::Null },
                "reason_id": null, "reason_code": if score == "bad" { json!(5) } else { Value::Null },
                "created_at": iso(c), "updated_at": iso(u)});
            self.put_list("satisfaction_ratings", id, u, &v);
        }
    }
}

/// A ticket metric set (`/api/v2/ticket_metrics` shape).
pub fn metric_set_json(
    host: &str,
    id: u64,
    tid: u64,
    created: i64,
    updated: i64,
    status: &str,
    reopens: u64,
) -> Value {
    let solved = matches!(status, "solved" | "closed");
    let minutes = ((updated - created) / 60).max(0);
    json!({"url": format!("{host}/api/v2/ticket_metrics/{id}.json"), "id": id, "ticket_id": tid,
        "created_at": iso(created), "updated_at": iso(updated), "group_stations": 1, "assignee_stations": 1,
        "reopens": reopens, "replies": reopens + 1, "assignee_updated_at": iso(updated), "requester_updated_at": iso(created),
        "status_updated_at": iso(updated), "initially_assigned_at": iso(created), "assigned_at": iso(created),
        "solved_at": if solved { json!(iso(updated)) } else { Value::Null },
        "latest_comment_added_at": iso(updated), "custom_status_updated_at": iso(updated),
        "first_resolution_time_in_minutes": {"calendar": if solved { json!(minutes) } else { Value::Null }, "business": if solved { json!(minutes / 3) } else { Value::Null }},
        "reply_time_in_minutes": {"calendar": minutes.min(600), "business": minutes.min(600) / 3},
        "full_resolution_time_in_minutes": {"calendar": if solved { json!(minutes) } else { Value::Null }, "business": if solved { json!(minutes / 3) } else { Value::Null }},
        "agent_wait_time_in_minutes": {"calendar": 0, "business": 0},
        "requester_wait_time_in_minutes": {"calendar": minutes / 2, "business": minutes / 6},
        "on_hold_time_in_minutes": {"calendar": 0, "business": 0}})
}

/// Minimal HTML escaping for `html_body`.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Shuffles deterministically (used by mutations that pick many records).
pub fn shuffle<T>(rng: &mut ChaCha8Rng, v: &mut [T]) {
    v.shuffle(rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let a = generate(200, 7, 1_800_000_000, "acme", "admin@acme.test", "admin");
        let b = generate(200, 7, 1_800_000_000, "acme", "admin@acme.test", "admin");
        let ja: Vec<_> = a.tickets.iter().map(|r| r.json.clone()).collect();
        let jb: Vec<_> = b.tickets.iter().map(|r| r.json.clone()).collect();
        assert_eq!(ja, jb);
        assert_eq!(a.audits.len(), b.audits.len());
    }

    #[test]
    fn shapes_and_scale() {
        let s = generate(400, 1, 1_800_000_000, "acme", "admin@acme.test", "admin");
        assert_eq!(s.tickets.len(), 400);
        assert_eq!(s.users.len(), 200);
        assert_eq!(s.organizations.len(), 8);
        let anchor = anchor_for(1_800_000_000);
        assert!(s.tickets.iter().all(|r| r.ts <= anchor));
        // Equal timestamps: the bulk run shares one second.
        let mut counts = std::collections::HashMap::new();
        for r in s.tickets.iter() {
            *counts.entry(r.ts).or_insert(0) += 1;
        }
        assert!(counts.values().any(|c| *c >= 50));
        let t: Value = serde_json::from_str(&s.tickets.get(1).unwrap().json).unwrap();
        assert!(t["custom_fields"].as_array().unwrap().len() == 10);
        assert!(t["generated_timestamp"].is_i64());
        assert!(t["updated_at"].as_str().unwrap().ends_with('Z'));
        // ~3 audits per ticket, the first carrying a comment.
        assert!(s.audits.len() >= 400 * 2);
        let first = s.audits_by_ticket[&1][0];
        let a: Value = serde_json::from_str(&s.audits.get(first).unwrap().json).unwrap();
        assert_eq!(a["events"][0]["type"], "Comment");
    }
}
