//! The dashboard in a real browser: Debian's Chromium, headless, driven over chromedriver (WebDriver)
//! with `fantoccini`, against the whole service on 127.0.0.1:0 and an in-process `zendesk-sim`.
//!
//! The end-to-end test walks the seed page (`shared/seed/stitch-zendesk-integration.txt`): sign in,
//! Add an Integration → Zendesk, the live schema name, Save Integration, Success!, Tables to
//! Replicate, Run Extraction Now, the job finishing, rows on the Loads tab, usage growing, then a new
//! frequency and Pause Syncing; and the bad inputs (bad site prefix, wrong token, a clashing name). It
//! ends by reading the rows from the DuckDB warehouse the job loaded.
//! Every page is saved as a screenshot: to `docs/screenshots/*.png` (the ones README shows) when
//! `SEAM_UPDATE_SCREENSHOTS=1`, else under the test's temporary target directory, so a test run leaves
//! the work tree clean.
//!
//! Without chromium/chromedriver the tests print a SKIP line, unless `CI` or `SEAM_TEST_NO_SKIP` is
//! set: then a missing browser fails them (`.ci/run` installs both; `scripts/test` demands them).
#![allow(clippy::unwrap_used)]

use fantoccini::{Client, ClientBuilder, Locator};
// chromedriver listens on loopback: plain HTTP, no TLS stack needed.
use hyper_util::client::legacy::connect::HttpConnector;
use seam_server::Service;
use seam_test_support::{try_wait_for_async, wait_until_async};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

const PASSWORD: &str = "correct horse battery staple";
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 900;

// ---------------------------------------------------------------------------------------------
// The browser.

/// Chromium and chromedriver, or `None` after a SKIP line (a failure under CI and `scripts/test`).
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    const INSTALL: &str = "the browser test needs them: apt-get install chromium chromium-driver";
    let chromium = seam_test_support::require_program(&["chromium", "chromium-browser"], INSTALL)?;
    let driver = seam_test_support::require_program(&["chromedriver"], INSTALL)?;
    Some((chromium, driver))
}

struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{url}/status");
        wait_until_async(
            Duration::from_secs(30),
            format!("chromedriver to answer on {url}"),
            async || http.get(&status).send().await.is_ok(),
        )
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={WIDTH},{HEIGHT}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": chromium, "args": args}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap();
        client.set_window_size(WIDTH, HEIGHT).await.unwrap();
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service under test.

/// The whole service with its data (and the DuckDB warehouse) in `data`, Zendesk at the
/// simulator's address when given, and the admin password [`PASSWORD`].
async fn start_service(data: &tempfile::TempDir, sim: Option<&zendesk_sim::SimHandle>) -> Service {
    let factory = crate::real_connectors(data.path().join("warehouse.duckdb"), sim.map(|s| s.base_url()));
    let service = crate::start_service(crate::service_config(data.path().to_owned(), factory)).await;
    crate::set_admin_password(&service, PASSWORD).await;
    service
}

struct Stack {
    base: String,
    service: Option<Service>,
    sim: Option<zendesk_sim::SimHandle>,
    data: tempfile::TempDir,
    b: Browser,
}

const SIM_EMAIL: &str = "admin@acme.test";
const SIM_TOKEN: &str = "sim-token";

impl Stack {
    async fn start(chromium: &Path, chromedriver: &Path) -> Stack {
        let sim_config = zendesk_sim::SimConfig {
            tickets: 60,
            rate_limits: false,
            ..Default::default()
        };
        let sim = seam_test_support::sim::start_sim_with(sim_config).await;
        let data = tempfile::tempdir().unwrap();
        let service = start_service(&data, Some(&sim)).await;
        let base = format!("http://{}", service.addr());
        let b = Browser::start(chromium, chromedriver).await;
        Stack {
            base,
            service: Some(service),
            sim: Some(sim),
            data,
            b,
        }
    }

    /// The service (DuckDB warehouse in `data`, no Zendesk) with the Singer tap `registration`
    /// (`NAME=PATH[,SECRET...]`), a browser, and the admin signed in on the Dashboard.
    async fn with_tap(
        chromium: &Path,
        chromedriver: &Path,
        data: tempfile::TempDir,
        registration: &str,
    ) -> Stack {
        let tap = seam_singer::TapProgram::parse(registration).unwrap();
        let factory = std::sync::Arc::new(
            seam_server::connectors::DefaultFactory::new(
                seam_warehouse::DestinationSpec::DuckDb(data.path().join("warehouse.duckdb")),
                None,
            )
            .with_taps(vec![tap], seam_singer::TapLimits::default()),
        );
        let service = crate::start_service(crate::service_config(data.path().to_owned(), factory)).await;
        crate::set_admin_password(&service, PASSWORD).await;
        let s = Stack {
            base: format!("http://{}", service.addr()),
            service: Some(service),
            sim: None,
            data,
            b: Browser::start(chromium, chromedriver).await,
        };
        s.go("/").await;
        s.wait_text("h1", "Sign in").await;
        s.type_into("#password", &format!("{PASSWORD}\u{E007}")).await;
        s.wait_text("h1", "Dashboard").await;
        s
    }

    /// The service's API.
    fn api(&self) -> crate::Api {
        crate::Api::of(self.service.as_ref().unwrap())
    }

    /// Stops everything; returns the data directory (the DuckDB warehouse is in it).
    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.b.client.clone().close().await;
        if let Some(s) = self.service.take() {
            s.shutdown().await;
        }
        if let Some(s) = self.sim.take() {
            s.shutdown().await;
        }
        self.data
    }

    fn sim(&self) -> &zendesk_sim::SimHandle {
        self.sim.as_ref().unwrap()
    }

    fn c(&self) -> &Client {
        &self.b.client
    }

    async fn go(&self, path: &str) {
        self.c().goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Waits until `css` matches an element whose text contains `text`; returns that text.
    async fn wait_text(&self, css: &str, text: &str) -> String {
        let mut last = String::new();
        let found = try_wait_for_async(
            Duration::from_secs(60),
            format!("{css:?} to contain {text:?}"),
            async || {
                let els = self.c().find_all(Locator::Css(css)).await.ok()?;
                for e in els {
                    if let Ok(t) = e.text().await {
                        if t.contains(text) {
                            return Some(t);
                        }
                        last = t;
                    }
                }
                None
            },
        )
        .await;
        match found {
            Ok(t) => t,
            Err(timed_out) => {
                let url = self
                    .c()
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let shot = std::env::temp_dir().join("seam-browser-failure.png");
                self.shot_to(&shot).await;
                eprintln!("screenshot of the failure: {}", shot.display());
                panic!("{timed_out} on {url}; last text: {last:?}");
            }
        }
    }

    /// Waits until the JavaScript expression `cond` is true on the page.
    async fn wait_until(&self, cond: &str) {
        let script = format!("return !!({cond})");
        wait_until_async(Duration::from_secs(60), cond, async || {
            self.js(&script).await == Value::Bool(true)
        })
        .await;
    }

    async fn click(&self, css: &str) {
        wait_until_async(
            Duration::from_secs(30),
            format!("{css:?} to be clickable"),
            async || {
                let Ok(e) = self.c().find(Locator::Css(css)).await else {
                    return false;
                };
                // Centre it first, so sticky bars never cover what a person would click.
                let arg = serde_json::to_value(&e).unwrap();
                let _ = self
                    .c()
                    .execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg])
                    .await;
                e.click().await.is_ok()
            },
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self
            .c()
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn value(&self, css: &str) -> String {
        let e = self.c().find(Locator::Css(css)).await.unwrap();
        e.prop("value").await.unwrap().unwrap_or_default()
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// Saves the whole page (the window grows to the page's height) as `{name}.png` in the screenshot
    /// directory (see the module docs).
    async fn shot(&self, name: &str) {
        let dir = if std::env::var_os("SEAM_UPDATE_SCREENSHOTS").is_some() {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
        } else {
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
        };
        let _ = std::fs::create_dir_all(&dir);
        self.shot_to(&dir.join(format!("{name}.png"))).await;
    }

    async fn shot_to(&self, path: &Path) {
        tokio::time::sleep(Duration::from_millis(300)).await; // let transitions settle
        let size = self
            .js("window.scrollTo(0, 0); return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
            .await;
        let page = size[0].as_u64().unwrap_or(u64::from(HEIGHT));
        let chrome = size[1].as_u64().unwrap_or(0);
        let height = u32::try_from(page + chrome).unwrap_or(HEIGHT).clamp(HEIGHT, 2800);
        let _ = self.c().set_window_size(WIDTH, height).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.c().screenshot().await.unwrap();
        let _ = self.c().set_window_size(WIDTH, HEIGHT).await;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_flow_in_a_real_browser() {
    let Some((chromium, driver)) = browser_programs() else {
        return;
    };
    let s = Stack::start(&chromium, &driver).await;

    // Signed out: any page leads to the sign-in form; a wrong password is refused with a hint.
    s.go("/").await;
    s.wait_text("h1", "Sign in").await;
    let cookie_flags = reqwest::get(format!("{}/signin", s.base)).await.unwrap();
    let set_cookie = cookie_flags
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    s.type_into("#password", "wrong password").await;
    s.click("#signin-button").await;
    s.wait_text(".banner-error", "Wrong user name or password").await;
    s.shot("01-sign-in").await;
    // Enter in the password field signs in: the form works from the keyboard.
    s.type_into("#password", &format!("{PASSWORD}\u{E007}")).await;

    // The empty Dashboard, then Add an Integration → Zendesk.
    s.wait_text("h1", "Dashboard").await;
    s.wait_text(".empty", "No integrations yet").await;
    // The usage chart of an empty period: whole-number ticks (it used to read 0.3, 0.6, 0.8999999).
    let ticks = s
        .js("return [...document.querySelectorAll('svg.chart text.y-tick')].map((t) => t.textContent)")
        .await;
    assert_eq!(
        ticks,
        serde_json::json!(["0", "1", "2", "3", "4"]),
        "y-axis ticks"
    );
    s.click("#add-integration").await;
    s.wait_text("h1", "Add an Integration").await;
    s.shot("03-add-an-integration").await;
    s.click("#pick-zendesk").await;
    s.wait_text("h1", "Configure Zendesk Support").await;

    // The schema name shows as you type ("Stitch Zendesk" → stitch_zendesk).
    s.type_into("#display_name", "Stitch Zendesk").await;
    s.wait_text("#schema-name", "stitch_zendesk").await;
    assert_eq!(
        s.value("input[name=frequency]:checked").await,
        "30",
        "30 minutes is the preset frequency"
    );
    let start = s.value("#start_date").await;
    let year_back = (chrono::Utc::now().date_naive() - chrono::Days::new(366))
        .format("%Y-%m-%d")
        .to_string();
    assert!(start >= year_back, "start date {start} defaults to one year back");

    // A bad site prefix: the API says what to fix, nothing is created, the form is kept as typed.
    s.type_into("#subdomain", "acme.zendesk.com").await;
    s.type_into("#email", SIM_EMAIL).await;
    s.type_into("#api_token", "wrong-token").await;
    s.click("#save-integration").await;
    s.wait_text("#form-error", "site prefix").await;
    assert_eq!(s.value("#display_name").await, "Stitch Zendesk");
    assert_eq!(s.value("#email").await, SIM_EMAIL);
    assert_eq!(s.value("#api_token").await, "wrong-token");

    // A site prefix with no Zendesk account behind it: the check says so; the integration is saved.
    s.type_into("#subdomain", "acme-typo").await;
    s.type_into("#api_token", SIM_TOKEN).await;
    s.click("#save-integration").await;
    s.wait_text("#check-progress", "The connection check failed")
        .await;
    s.wait_text("#form-error", "acme-typo").await;
    assert_eq!(s.value("#subdomain").await, "acme-typo");

    // A wrong API token: the connection check fails with what to fix; the form is kept.
    s.type_into("#subdomain", "acme").await;
    s.type_into("#api_token", "wrong-token").await;
    s.click("#save-integration").await;
    s.wait_text("#check-progress", "The connection check failed")
        .await;
    let err = s.wait_text("#form-error", "The connection check failed").await;
    assert!(
        err.to_lowercase().contains("token"),
        "the error names the token: {err}"
    );
    assert_eq!(s.value("#subdomain").await, "acme");
    assert_eq!(s.value("#api_token").await, "wrong-token");
    s.shot("05-wrong-token").await;

    // The right token: Save Integration → check with progress → Success! at the top of the page.
    s.type_into("#api_token", SIM_TOKEN).await;
    s.click("#save-integration").await;
    s.wait_text("#flash .banner-success", "Success!").await;
    s.wait_text("h1#integration-name", "Stitch Zendesk").await;
    s.wait_text("#tab-tables[aria-selected=true]", "Tables to Replicate")
        .await;
    s.wait_text("#selection-count", "tables selected").await;
    s.shot("06-success-tables-to-replicate").await;

    // Tables to Replicate: a few tables, one column dropped; Finalize Your Selections. The simulated
    // Zendesk answers slowly for a while, so the first (scheduled) job is long enough to watch: its
    // streams are read side by side, a page or two each, so each answer must outlast the page's
    // one-second poll (at 500 ms the extraction phase once came and went between two polls).
    s.click("#select-none").await;
    for t in ["tickets", "users", "organizations", "groups"] {
        s.click(&format!("#stream-{t}")).await;
    }
    s.wait_text("#selection-count", "4 of").await;
    s.click("li[data-stream=users] button[aria-controls]").await;
    s.click("#columns-users input[data-field=notes]").await;
    s.sim().set_faults(zendesk_sim::FaultConfig {
        slow_ms: 2500,
        slow_rate: 1.0,
        ..Default::default()
    });
    s.click("#finalize-selections").await;
    s.wait_text("#flash .banner-success", "Selections saved").await;
    let pill = s.wait_text("h1#integration-name .pill", "").await;
    assert_ne!(pill, "Not Configured");

    // The first extraction starts on its own; its progress shows live, without reloading.
    s.click("#tab-extractions").await;
    s.wait_text("#live-job", "Extraction in progress").await;
    s.wait_text("#live-job", "phase: extraction").await;
    s.wait_text("#stop-extraction", "Stop Extraction").await;
    s.shot("07-live-progress").await;
    s.sim().set_faults(zendesk_sim::FaultConfig::default());
    s.wait_text("#extractions tr.job-row[data-job-status=succeeded]", "scheduled")
        .await;
    s.wait_text("#run-extraction", "Run Extraction Now").await;

    // Run Extraction Now: the job finishes, with its log.
    s.click("#run-extraction").await;
    s.wait_text(
        "#extractions tr.job-row[data-job-status=succeeded]",
        "Run Extraction Now",
    )
    .await;
    s.click("#extractions button[data-job]").await;
    s.wait_text("pre.logs", "Job finished").await;
    s.shot("08-extractions").await;
    s.click("#tab-loads").await;
    let tickets = s
        .wait_text("table#loads tr[data-table=tickets] td.rows", "")
        .await;
    assert!(
        tickets.replace(',', "").parse::<u64>().unwrap() > 0,
        "tickets loaded: {tickets}"
    );
    s.shot("09-loads").await;

    // A job that ends while Tables to Replicate holds an unsaved choice leaves the choice alone (the
    // page once redrew the table list whenever a job ended, and a click made meanwhile was lost).
    s.click("#tab-tables").await;
    s.wait_text("#selection-count", "4 of").await;
    s.sim().set_faults(zendesk_sim::FaultConfig {
        slow_ms: 1500,
        slow_rate: 1.0,
        ..Default::default()
    });
    s.click("#run-extraction").await;
    s.wait_text("#stop-extraction", "Stop Extraction").await;
    s.click("#stream-groups").await;
    s.wait_text("#selection-count", "3 of").await;
    s.sim().set_faults(zendesk_sim::FaultConfig::default());
    s.wait_text("#run-extraction", "Run Extraction Now").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // what a redraw would have done by now
    s.wait_text("#selection-count", "3 of").await;
    s.wait_until("!document.getElementById('stream-groups').checked")
        .await;

    // A second integration with a clashing name: the form says so live, and the API refuses it.
    s.go("/integrations/new/zendesk").await;
    s.type_into("#display_name", "Stitch-Zendesk").await;
    s.wait_text("#schema-note", "already used").await;
    s.type_into("#subdomain", "acme").await;
    s.type_into("#email", SIM_EMAIL).await;
    s.type_into("#api_token", SIM_TOKEN).await;
    s.click("#save-integration").await;
    s.wait_text("#form-error", "non-unique name").await;
    assert_eq!(s.value("#display_name").await, "Stitch-Zendesk");
    s.shot("04-add-zendesk-name-clash").await;
    // "Use a different schema name?" shows the name it would create instead.
    s.click("#use-different-schema").await;
    s.type_into("#schema_name", "zendesk_eu").await;
    s.wait_text("#schema-name", "zendesk_eu").await;

    s.go("/usage").await;
    let used = s.wait_text("#rows-used", "").await;
    assert!(
        used.replace(',', "").parse::<u64>().unwrap() > 0,
        "usage grew: {used}"
    );
    s.shot("11-usage").await;
    s.go("/").await;
    s.wait_text("#integrations", "Stitch Zendesk").await;
    s.shot("02-dashboard").await;

    // Settings: a new frequency, the cron preview, then Pause Syncing.
    s.go("/integrations/1/settings").await;
    s.wait_text("h2", "Replication Frequency").await;
    s.click("#use-default").await; // untick "Use integration default"
    s.click("label:has(#settings-frequency-60) span").await;
    s.click("#save-schedule").await;
    s.wait_text(".banner-success", "every 1 hour").await;
    s.wait_text(".page-head .sub", "every 1 hour").await;
    s.type_into("#cron_expression", "0 0 6 * * MON").await;
    s.wait_text("#cron-preview", "put ? in one of them").await;
    s.type_into("#cron_expression", "0 0 6 ? * MON-FRI").await;
    s.wait_text("#cron-preview", "Next runs").await;
    s.click("#pause-toggle").await;
    s.wait_text("#paused-state", "Paused").await;
    s.wait_text("h1#integration-name .pill", "Paused").await;
    s.shot("10-settings-paused").await;

    // A row limit the usage is close to: the next extraction raises usage notifications, which show
    // on the Notifications page and can be dismissed.
    s.go("/usage").await;
    s.type_into(
        "#row-limit",
        &(used.replace(',', "").parse::<u64>().unwrap() + 50).to_string(),
    )
    .await;
    s.click("#save-usage-settings").await;
    s.wait_text(".banner-warning", "of your row limit").await;
    s.go("/integrations/1/extractions").await;
    s.click("#run-extraction").await; // a paused integration still runs when asked
    s.wait_until(
        "document.querySelectorAll('#extractions tr.job-row[data-job-status=succeeded]').length >= 4",
    )
    .await;
    s.go("/notifications").await;
    s.wait_text("#notifications", "Row Limit").await;
    s.wait_text("#notification-count", "").await;
    s.shot("12-notifications").await;
    let before = s
        .c()
        .find_all(Locator::Css("#notifications li.note"))
        .await
        .unwrap()
        .len();
    s.click("#notifications button[data-dismiss]").await;
    s.wait_until(&format!(
        "document.querySelectorAll('#notifications li.note').length < {before}"
    ))
    .await;

    // A new historical start date needs the reset confirmation.
    s.go("/integrations/1/settings").await;
    s.wait_text("h2", "Sync Historical Data").await;
    s.js("const d = document.getElementById('settings-start-date'); d.value = '2026-06-01'; d.dispatchEvent(new Event('input'))").await;
    s.click("#save-start-date").await;
    s.wait_text("#reset-dialog", "Reset this integration?").await;
    s.click("#reset-confirm").await;
    s.wait_text(".banner-success", "Start date changed").await;

    // Delete: the integration goes, the warehouse schema stays.
    s.click("#delete-integration").await;
    s.wait_text("#delete-dialog", "Delete Stitch Zendesk?").await;
    s.click("#delete-confirm").await;
    s.wait_text("#flash .banner-success", "Integration deleted").await;
    s.wait_text(".empty", "No integrations yet").await;

    // The rows are in DuckDB, in the schema the integration name created.
    let data = s.stop().await;
    let db = duckdb::Connection::open(data.path().join("warehouse.duckdb")).unwrap();
    let tickets: i64 = db
        .query_row("SELECT count(*) FROM stitch_zendesk.tickets", [], |r| r.get(0))
        .unwrap();
    assert!(tickets > 0, "tickets in DuckDB: {tickets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_needs_a_session_and_a_csrf_token() {
    // No browser needed: the rules the browser relies on, over plain HTTP.
    let data = tempfile::tempdir().unwrap();
    let service = start_service(&data, None).await;
    let base = format!("http://{}", service.addr());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Signed out: pages redirect to the sign-in, the forwarder answers 401, the API still wants a token.
    let r = http.get(format!("{base}/usage")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/signin?next=/usage");
    assert_eq!(
        http.get(format!("{base}/ui/api/sources"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/v4/sources"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Sign in: the form's token must match its cookie.
    let page = http.get(format!("{base}/signin")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let form = [
        ("username", "admin"),
        ("password", PASSWORD),
        ("signin_token", token.as_str()),
        ("next", "/usage"),
    ];
    let forged = [
        ("username", "admin"),
        ("password", PASSWORD),
        ("signin_token", "forged"),
        ("next", "/"),
    ];
    let r = http
        .post(format!("{base}/signin"))
        .header("cookie", &cookie)
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{base}/signin"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/usage");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("seam_session="))
        .unwrap()
        .to_owned();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let session = session.split(';').next().unwrap().to_owned();

    // The page carries the session's CSRF token; reads need only the cookie, writes need the token.
    let html = http
        .get(format!("{base}/usage"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http
        .get(format!("{base}/ui/api/sources"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    let body = json!({"row_limit": 1000});
    let r = http
        .put(format!("{base}/ui/api/settings"))
        .header("cookie", &session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .put(format!("{base}/ui/api/settings"))
        .header("cookie", &session)
        .header("x-csrf-token", "nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .put(format!("{base}/ui/api/settings"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The schema-name helper: the server's rule, and clashes.
    let r: Value = http
        .get(format!("{base}/ui/schema-name?display_name=Stitch%20Zendesk"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["name"], "stitch_zendesk");
    let r: Value = http
        .get(format!(
            "{base}/ui/cron-preview?expression=0%200%206%20%3F%20*%20MON-FRI"
        ))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["valid"], true);
    assert_eq!(r["next"].as_array().unwrap().len(), 5);

    // Signing out ends the session.
    let form = [("csrf_token", csrf.as_str())];
    let r = http
        .post(format!("{base}/signout"))
        .header("cookie", &session)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        http.get(format!("{base}/ui/api/sources"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    service.shutdown().await;
}

#[tokio::test]
async fn the_admin_password_is_made_once_and_stored_hashed() {
    let store = seam_metastore::SqliteMetastore::open_in_memory().unwrap();
    let first = seam_server::ui::bootstrap_admin(&store, None)
        .await
        .unwrap()
        .unwrap();
    assert!(first.len() >= 16);
    assert_eq!(
        seam_server::ui::bootstrap_admin(&store, None).await.unwrap(),
        None,
        "printed once only"
    );
    let stored =
        seam_metastore::Metastore::get_setting(&store, seam_server::ui::session::ADMIN_PASSWORD_SETTING)
            .await
            .unwrap()
            .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&first));
    assert!(seam_server::ui::session::check_sign_in(&store, "admin", &first)
        .await
        .unwrap());
    // SEAM_ADMIN_PASSWORD replaces it.
    assert_eq!(
        seam_server::ui::bootstrap_admin(&store, Some("a new password"))
            .await
            .unwrap(),
        None
    );
    assert!(!seam_server::ui::session::check_sign_in(&store, "admin", &first)
        .await
        .unwrap());
    assert!(
        seam_server::ui::session::check_sign_in(&store, "admin", "a new password")
            .await
            .unwrap()
    );
    assert!(seam_server::ui::bootstrap_admin(&store, Some("short"))
        .await
        .is_err());
}

/// A plan-gated table (Zendesk answers 403): the real source skips it, the job ends "Succeeded with
/// warnings", and the integration page says so, naming the table, in the Extractions list and a
/// banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skipped_table_shows_as_succeeded_with_warnings() {
    let Some((chromium, driver)) = browser_programs() else {
        return;
    };
    let sim_config = zendesk_sim::SimConfig {
        tickets: 30,
        rate_limits: false,
        gated: vec!["sla_policies".to_owned()],
        ..Default::default()
    };
    let sim = seam_test_support::sim::start_sim_with(sim_config).await;
    let data = tempfile::tempdir().unwrap();
    let service = start_service(&data, Some(&sim)).await;
    let base = format!("http://{}", service.addr());
    let api = crate::Api::of(&service);
    let (source, check) = api
        .create_with(
            json!({"display_name": "Gated Zendesk", "properties": {"subdomain": "acme",
            "email": SIM_EMAIL, "api_token": SIM_TOKEN, "start_date": "2000-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(check["status"], "succeeded", "{check}");
    let id = source["id"].as_i64().unwrap();
    api.select(id, &["tickets", "sla_policies"]).await;
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |v| {
            v.as_array()
                .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
        })
        .await;
    assert_eq!(jobs[0]["status"], "succeeded_with_warnings", "{jobs}");
    assert!(
        jobs[0]["warning_message"]
            .as_str()
            .is_some_and(|w| w.contains("sla_policies") && w.contains("do not have access")),
        "{jobs}"
    );

    let s = Stack {
        base,
        service: Some(service),
        sim: Some(sim),
        data,
        b: Browser::start(&chromium, &driver).await,
    };
    s.go("/").await;
    s.wait_text("h1", "Sign in").await;
    s.type_into("#password", &format!("{PASSWORD}\u{E007}")).await;
    s.wait_text("h1", "Dashboard").await;
    s.go(&format!("/integrations/{id}/extractions")).await;
    s.wait_text(
        "#extractions tr.job-row[data-job-status=succeeded_with_warnings] .pill",
        "Succeeded with warnings",
    )
    .await;
    s.wait_text("#extractions .job-warning", "sla_policies").await;
    s.wait_text(
        "#extraction-warning",
        "Data has been replicated, but something may require your attention.",
    )
    .await;
    s.wait_text("#extraction-warning", "sla_policies").await;
    s.stop().await;
}

/// A Singer tap registered with the service shows on Add an Integration, and its form is drawn from
/// its spec: the secret as a password field, the rest of its config as JSON. Saving it runs the
/// connection check and lands on Tables to Replicate; the secret is sealed, never sent back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_singer_tap_is_added_with_a_form_drawn_from_its_spec() {
    let Some((chromium, driver)) = browser_programs() else {
        return;
    };
    if seam_test_support::require_program(&["python3"], "apt-get install python3").is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let tap_path = data.path().join("tap-items");
    seam_test_support::write_program(&tap_path, crate::singer::TAP);
    let registration = format!("items={},password", tap_path.display());
    let s = Stack::with_tap(&chromium, &driver, data, &registration).await;
    let api = s.api();
    s.go("/integrations/new").await;
    s.wait_text("#pick-singer-items", "items (Singer tap)").await;
    s.click("#pick-singer-items").await;
    s.wait_text("h1", "Configure items (Singer tap)").await;
    assert_eq!(
        s.js("return document.querySelector('#prop-password').type").await,
        "password",
        "a secret is a password field"
    );
    s.type_into("#display_name", "Items Tap").await;
    s.wait_text("#schema-name", "items_tap").await;
    s.type_into("#prop-password", "wrong").await;
    s.type_into("#prop-extra", r#"{"rows": 12}"#).await;
    s.shot("13-add-singer-tap").await;
    s.click("#save-integration").await;
    // The tap refuses the password: the check fails with its words and the form stays.
    s.wait_text("#form-error", "password authentication failed for user seam")
        .await;
    s.type_into("#prop-password", "s3cret").await;
    s.click("#save-integration").await;
    s.wait_text("h1", "Items Tap").await;
    s.wait_until("location.pathname.endsWith('/tables')").await;
    let (_, sources) = api.get("/v4/sources").await;
    let source = &sources[0];
    assert_eq!(source["type"], "singer.items", "{source}");
    assert_eq!(source["properties"]["rows"], 12, "{source}");
    assert_eq!(source["properties"]["credentials_set"], json!(["password"]));
    assert!(!sources.to_string().contains("s3cret"), "{sources}");

    // Its settings page draws the same spec: the secret kept unless typed, the rest editable.
    let id = source["id"].as_i64().unwrap();
    s.go(&format!("/integrations/{id}/settings")).await;
    s.wait_text("#connector-settings label", "password").await;
    assert_eq!(
        s.js("return document.querySelector('#connector-settings #prop-password').placeholder")
            .await,
        "unchanged"
    );
    assert!(s
        .value("#connector-settings #prop-extra")
        .await
        .contains("\"rows\": 12"));
    s.type_into("#connector-settings #prop-extra", r#"{"rows": 15}"#)
        .await;
    s.click("#save-connector-settings").await;
    s.wait_text("section", "The connection check passed.").await;
    let (_, source) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(source["properties"]["rows"], 15, "{source}");
    assert_eq!(
        source["properties"]["credentials_set"],
        json!(["password"]),
        "the secret was kept"
    );
    s.stop().await;
}

/// tap-jsonl from PyPI (its own virtualenv, as the script tests install it) through the dashboard:
/// registered as a connector, added with the form drawn from its spec, its stream selected on
/// Tables to Replicate, the scheduled job run; the warehouse then holds every record once, nested
/// object flattened and array as a subtable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tap_jsonl_from_pypi_through_the_dashboard() {
    let Some((chromium, driver)) = browser_programs() else {
        return;
    };
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-tool.sh");
    let out = std::process::Command::new(&tool)
        .arg("tap-jsonl==0.3.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "installing tap-jsonl (PyPI) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("tap-jsonl");
    let data = tempfile::tempdir().unwrap();
    let people = data.path().join("people.jsonl");
    let lines: Vec<String> = (1..=30)
        .map(|i| {
            json!({"id": i, "name": format!("person {i}"), "address": {"city": format!("c{}", i % 4)},
                   "tags": ["x", format!("t{i}")]})
            .to_string()
        })
        .collect();
    std::fs::write(&people, lines.join("\n") + "\n").unwrap();
    let s = Stack::with_tap(&chromium, &driver, data, &format!("jsonl={}", bin.display())).await;
    s.go("/integrations/new").await;
    s.click("#pick-singer-jsonl").await;
    s.wait_text("h1", "Configure jsonl (Singer tap)").await;
    s.type_into("#display_name", "People").await;
    let config = json!({"path": people, "stream_name": "people", "primary_keys": ["id"]});
    s.type_into("#prop-extra", &config.to_string()).await;
    s.click("#save-integration").await;
    s.wait_text("#flash .banner-success", "Success!").await;
    s.wait_text("#tab-tables[aria-selected=true]", "Tables to Replicate")
        .await;
    // tap-jsonl (a Meltano SDK tap) marks its stream selected in its own catalog: the table arrives
    // selected (the test once clicked it "on", and passed only while a job's end redrew the list).
    s.wait_text("#selection-count", "1 of 1").await;
    s.click("#stream-people").await;
    s.wait_text("#selection-count", "0 of 1").await;
    s.click("#stream-people").await;
    s.wait_text("#selection-count", "1 of 1").await;
    s.click("#finalize-selections").await;
    s.wait_text("#flash .banner-success", "Selections saved").await;
    s.click("#tab-extractions").await;
    s.wait_text("#extractions tr.job-row[data-job-status=succeeded]", "scheduled")
        .await;
    let data = s.stop().await;
    let conn = duckdb::Connection::open(data.path().join("warehouse.duckdb")).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(DISTINCT id) FROM people.people"), 30);
    assert_eq!(count("SELECT count(*) FROM people.people"), 30);
    assert_eq!(
        count("SELECT count(*) FROM people.people WHERE address__city = 'c' || (id % 4)"),
        30
    );
    assert_eq!(count("SELECT count(*) FROM people.people__tags"), 60);
}
