//! The dashboard: Stitch's pages in the browser, served by `seam serve` from assets embedded in the
//! binary (plain HTML, CSS and JavaScript modules under `crates/seam-server/assets/`; no bundler).
//!
//! # Routes (the API owns `/v4`, `/health`, `/openapi.json`, `/metrics`; everything here is the UI's)
//! | route | what |
//! |---|---|
//! | `GET /signin`, `POST /signin` | the sign-in form (user `admin`); a double-submit cookie guards the form; wrong passwords are throttled per client and overall (429 with `Retry-After`, see [`throttle`]); `next` must be a path on this site |
//! | `POST /signout` | ends the session (CSRF token in the form) |
//! | `GET /`, `/integrations/…`, `/usage`, `/notifications` | the app shell; the page is drawn by `assets/js/app.js` |
//! | `GET /assets/{file}` | embedded CSS, JavaScript, images |
//! | `ANY /ui/api/{rest}` | forwarded in-process to `/v4/{rest}` (session cookie; CSRF header unless GET) |
//! | `GET /ui/schema-name?display_name=&name=` | the schema name an integration name creates, and whether it is taken |
//! | `GET /ui/cron-preview?expression=` | the next runs of a Quartz cron expression, or what is wrong with it |
//!
//! # How a browser request reaches the API
//! The API wants `Authorization: Bearer <token>` and stores only token hashes, so the dashboard holds
//! no token. Instead `/ui/api/*` checks the session cookie (and, for anything but GET/HEAD, the
//! session's CSRF token in the `x-csrf-token` header), then rewrites the path to `/v4/*`, drops the
//! cookies, adds a [`crate::auth::DashboardCaller`] request extension and calls the API router in
//! process (`tower::ServiceExt::oneshot`). The API's auth layer accepts that extension in place of a
//! bearer token; nothing from the network can set one.
//!
//! # No state in the process
//! Sessions ([`session`]) and the sign-in throttle's budgets ([`throttle`]) live in the metastore, so
//! several `seam serve` processes behind one load balancer, sharing one PostgreSQL metastore, serve
//! the same browsers: any of them accepts a session (and its CSRF token) made on another, and their
//! sign-in failures count together. Only the password-check slots are each process's own.

pub mod assets;
pub mod proxy;
pub mod session;
pub mod throttle;

use crate::auth::DashboardCaller;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use session::{Sessions, CSRF_HEADER, SESSION_COOKIE, SIGNIN_COOKIE};
use std::net::SocketAddr;
use std::sync::Arc;
use throttle::{ClientKey, SignInThrottle};
use tower::ServiceExt as _;
use tracing::{info, warn};

pub use session::{bootstrap_admin, set_admin_password, ADMIN_PASSWORD_ENV, ADMIN_USERNAME};

/// Content-Security-Policy of every page: only this origin's scripts and styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Paths (first segment) the app shell answers; the browser-side router draws the page.
const APP_PAGES: [&str; 5] = ["/", "/integrations", "/usage", "/notifications", "/account"];

/// What the dashboard's handlers share.
#[derive(Debug, Clone)]
struct UiState {
    app: AppState,
    /// The API router, called in process.
    api: Router,
    sessions: Sessions,
    throttle: SignInThrottle,
}

/// The dashboard's router (merged into [`crate::app`]).
pub fn router(state: AppState) -> Router {
    let ui = UiState {
        api: crate::api::router(state.clone()),
        throttle: state.sign_in.clone(),
        sessions: Sessions::new(Arc::clone(&state.metastore), Arc::clone(&state.clock)),
        app: state,
    };
    let mut r = Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/assets/{*file}", get(asset))
        .route("/ui/api/{*rest}", any(forward))
        .route("/ui/schema-name", get(schema_name))
        .route("/ui/cron-preview", get(cron_preview));
    for page in APP_PAGES {
        r = r.route(page, get(shell));
        if page != "/" {
            r = r.route(&format!("{page}/{{*rest}}"), get(shell));
        }
    }
    r.with_state(ui)
}

fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(LOCATION, v);
    }
    res
}

fn with_cookie(mut res: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(SET_COOKIE, v);
    }
    res
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A path on this site to return to after signing in, else `/`.
///
/// Accepted: printable ASCII only (what [`url_encode`] produces; browsers silently drop tabs and
/// newlines inside URLs, so `/\t/evil.com` would read as `//evil.com`), starting with exactly one `/`
/// (`//host` and `/\host` name another origin: browsers treat `\` as `/`), and no backslash anywhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn is_local_path(n: &str) -> bool {
    let bytes = n.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
}

/// The app shell for a signed-in browser; the sign-in page otherwise.
async fn shell(State(ui): State<UiState>, request: Request) -> Response {
    let Some(session) = ui.live_session(request.headers()).await else {
        let here = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let next: String = url_encode(&here);
        return redirect(&format!("/signin?next={next}"));
    };
    let page = assets::INDEX_HTML
        .replace("{{csrf_token}}", &esc(&session.csrf_token))
        .replace("{{username}}", &esc(&session.username))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"));
    html(StatusCode::OK, page)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn signin_html(error: Option<&str>, username: &str, next: &str, token: &str) -> String {
    let error = error
        .map(|e| {
            format!(
                r#"<div class="banner banner-error" role="alert">{}</div>"#,
                esc(e)
            )
        })
        .unwrap_or_default();
    assets::SIGNIN_HTML
        .replace("{{error}}", &error)
        .replace("{{username}}", &esc(username))
        .replace("{{next}}", &esc(next))
        .replace("{{signin_token}}", &esc(token))
}

/// `GET /signin`.
async fn signin_page(State(ui): State<UiState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if ui.live_session(&headers).await.is_some() {
        return redirect(&next);
    }
    let token = session::random_token(24);
    let res = html(StatusCode::OK, signin_html(None, ADMIN_USERNAME, &next, &token));
    with_cookie(res, &session::set_cookie(SIGNIN_COOKIE, &token, Some(3600)))
}

/// The sign-in form. `Debug` shows neither the password nor the user name (what was typed may be a
/// password typed into the wrong field).
#[derive(Deserialize)]
struct SignInForm {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    signin_token: String,
}

impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInForm")
            .field("username", &"***")
            .field("password", &"***")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// `POST /signin`. Wrong passwords are throttled per client and overall ([`throttle`]); a refused or
/// failed sign-in is logged with the client's address only, never with what was typed.
async fn signin(
    State(ui): State<UiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let fresh = session::random_token(24);
    let again = |status: StatusCode, message: &str| {
        let res = html(status, signin_html(Some(message), &form.username, &next, &fresh));
        with_cookie(res, &session::set_cookie(SIGNIN_COOKIE, &fresh, Some(3600)))
    };
    let cookie_token = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if form.signin_token.is_empty() || !session::same_secret(&cookie_token, &form.signin_token) {
        return again(StatusCode::FORBIDDEN, "The sign-in form expired: sign in again.");
    }
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let ip = ui.app.security.trusted_proxies.client(peer, &headers);
    let client = ClientKey::of(ip);
    let client_label = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let throttled = |refused: throttle::Refused| {
        warn!(client = %client_label, retry_after_secs = refused.retry_after_secs(), reason = ?refused,
            "dashboard sign-in throttled");
        let message = format!(
            "Too many sign-in attempts. Wait {} seconds, then try again.",
            refused.retry_after_secs()
        );
        let mut res = again(StatusCode::TOO_MANY_REQUESTS, &message);
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(refused.retry_after_secs()));
        res
    };
    let metastore = ui.app.metastore.as_ref();
    match ui.throttle.begin(metastore, client, ui.app.clock.now()).await {
        Ok(Ok(())) => {}
        Ok(Err(refused)) => return throttled(refused),
        Err(e) => {
            warn!(client = %client_label, error = %e, "dashboard sign-in: the throttle's metastore failed");
            return again(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Cannot check the password now: {e}"),
            );
        }
    }
    // Giving tokens back is best effort: when the metastore fails, the attempt stays counted.
    let give_back = |outcome: Result<(), seam_metastore::MetastoreError>| {
        if let Err(e) = outcome {
            warn!(client = %client_label, error = %e, "dashboard sign-in: cannot give throttle tokens back");
        }
    };
    let slot = match ui.throttle.check_slot().await {
        Ok(slot) => slot,
        Err(refused) => {
            give_back(ui.throttle.abandoned(metastore, client).await);
            return throttled(refused);
        }
    };
    let checked = session::verify_sign_in(metastore, form.username.trim(), &form.password).await;
    drop(slot);
    match checked {
        Ok(Some(password_hash)) => {
            give_back(ui.throttle.succeeded(metastore, client).await);
            let id = match ui.sessions.create(form.username.trim(), &password_hash).await {
                Ok(id) => id,
                Err(e) => {
                    return again(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("Cannot start a session now: {e}"),
                    )
                }
            };
            info!(client = %client_label, "dashboard sign-in");
            let res = with_cookie(redirect(&next), &session::set_cookie(SESSION_COOKIE, &id, None));
            with_cookie(res, &session::set_cookie(SIGNIN_COOKIE, "", Some(0)))
        }
        Ok(None) => {
            warn!(client = %client_label, "dashboard sign-in refused: wrong user name or password");
            again(
                StatusCode::UNAUTHORIZED,
                "Wrong user name or password. The user is admin; the password was printed when seam first started \
                 (or set with SEAM_ADMIN_PASSWORD; `seam admin reset-password` sets a new one).",
            )
        }
        Err(e) => {
            give_back(ui.throttle.abandoned(metastore, client).await);
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Cannot check the password: {e}"),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /signout`.
async fn signout(State(ui): State<UiState>, headers: HeaderMap, Form(form): Form<SignOutForm>) -> Response {
    let unavailable = |e: seam_metastore::MetastoreError| {
        warn!(error = %e, "dashboard sign-out: the metastore failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot end the session now ({e}): try again"),
        )
            .into_response()
    };
    match ui.sessions.from_headers(&headers).await {
        Ok(Some((id, s))) => {
            if !session::same_secret(&s.csrf_token, &form.csrf_token) {
                return (
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token: reload the page and try again",
                )
                    .into_response();
            }
            if let Err(e) = ui.sessions.remove(&id).await {
                return unavailable(e);
            }
        }
        Ok(None) => {}
        Err(e) => return unavailable(e),
    }
    with_cookie(
        redirect("/signin"),
        &session::set_cookie(SESSION_COOKIE, "", Some(0)),
    )
}

/// `GET /assets/{file}`.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let Some((content_type, bytes)) = assets::get(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut res = Body::from(bytes).into_response();
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Assets change with the binary; revalidating is cheap on loopback and never serves stale code.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The JSON error the browser gets when the session is missing or the CSRF token is wrong.
fn ui_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "data": {"message": message}}))).into_response()
}

/// Why the dashboard refused a request.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// No live session.
    SignedOut,
    /// A state-changing request without the session's CSRF token.
    BadCsrfToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignedOut => ui_error(
                StatusCode::UNAUTHORIZED,
                "SignedOut",
                "your session ended: sign in again",
            ),
            Refusal::BadCsrfToken => ui_error(
                StatusCode::FORBIDDEN,
                "InvalidCsrfToken",
                "missing or wrong CSRF token: reload the page and try again",
            ),
        }
    }
}

impl UiState {
    /// The request's session, unless it ended: idle too long, signed out, or the admin password
    /// changed since it signed in (`seam admin reset-password` ends every session at once). A failing
    /// metastore counts as no session (the session itself is kept).
    async fn live_session(&self, headers: &HeaderMap) -> Option<session::Session> {
        let (id, session) = match self.sessions.from_headers(headers).await {
            Ok(found) => found?,
            Err(e) => {
                warn!(error = %e, "cannot read the dashboard session: treating it as ended");
                return None;
            }
        };
        let stored = match self
            .app
            .metastore
            .get_setting(session::ADMIN_PASSWORD_SETTING)
            .await
        {
            Ok(stored) => stored,
            Err(e) => {
                warn!(error = %e, "cannot read the admin password hash: treating the session as ended");
                return None;
            }
        };
        if !session.password_unchanged(stored.as_deref()) {
            if let Err(e) = self.sessions.remove(&id).await {
                warn!(error = %e, "cannot delete a dashboard session whose password changed");
            }
            info!("a dashboard session ended: the admin password changed");
            return None;
        }
        Some(session)
    }
}

/// Checks the session, and the CSRF header on state-changing methods.
async fn authorise(ui: &UiState, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(session) = ui.live_session(headers).await else {
        return Err(Refusal::SignedOut);
    };
    if method != Method::GET && method != Method::HEAD {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session::same_secret(sent, &session.csrf_token) {
            return Err(Refusal::BadCsrfToken);
        }
    }
    Ok(())
}

/// `ANY /ui/api/{rest}` → the API's `/v4/{rest}`, in process.
async fn forward(State(ui): State<UiState>, request: Request) -> Response {
    if let Err(refused) = authorise(&ui, request.method(), request.headers()).await {
        return refused.into_response();
    }
    let (mut parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/ui/api").unwrap_or_default();
    let target = match parts.uri.query() {
        Some(q) => format!("/v4{rest}?{q}"),
        None => format!("/v4{rest}"),
    };
    let Ok(uri) = target.parse() else {
        return ui_error(StatusCode::NOT_FOUND, "NotFound", "no such route");
    };
    parts.uri = uri;
    parts.headers.remove(COOKIE);
    parts.headers.remove(AUTHORIZATION);
    // Fresh extensions: this router's path parameters must not reach the API's extractors, and the
    // caller mark is the only thing the API needs.
    parts.extensions = axum::http::Extensions::new();
    parts.extensions.insert(DashboardCaller::new());
    match ui.api.clone().oneshot(Request::from_parts(parts, body)).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

#[derive(Debug, Deserialize)]
struct SchemaNameQuery {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    name: Option<String>,
}

/// `GET /ui/schema-name`: the server's word on the schema name (the page also computes it as you type).
async fn schema_name(
    State(ui): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<SchemaNameQuery>,
) -> Response {
    if let Err(refused) = authorise(&ui, &Method::GET, &headers).await {
        return refused.into_response();
    }
    let explicit = q.name.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let derived = match explicit {
        Some(n) => seam_core::naming::validate_schema_name(n),
        None => seam_core::naming::schema_name(&q.display_name),
    };
    let name = match derived {
        Ok(n) => n,
        Err(e) => {
            return Json(json!({"name": null, "error": e.to_string(), "taken_by": null})).into_response()
        }
    };
    let taken_by = match ui.app.metastore.list_integrations(false).await {
        Ok(list) => list.into_iter().find(|i| i.name == name).map(|i| i.display_name),
        Err(e) => return ui_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    };
    let error = taken_by.as_ref().map(|by| {
        format!("the schema name {name} is already used by the integration {by:?}: choose another name")
    });
    Json(json!({"name": name, "error": error, "taken_by": taken_by})).into_response()
}

#[derive(Debug, Deserialize)]
struct CronQuery {
    #[serde(default)]
    expression: String,
}

/// `GET /ui/cron-preview`: the next five runs of a Quartz cron expression (UTC), or the error.
async fn cron_preview(State(ui): State<UiState>, headers: HeaderMap, Query(q): Query<CronQuery>) -> Response {
    if let Err(refused) = authorise(&ui, &Method::GET, &headers).await {
        return refused.into_response();
    }
    match seam_runtime::scheduler::parse_quartz_cron(q.expression.trim()) {
        Ok(cron) => {
            let now = ui.app.clock.now();
            let next: Vec<String> = cron.iter_after(now).take(5).map(crate::api::time).collect();
            Json(json!({"valid": true, "description": cron.describe(), "next": next, "error": null}))
                .into_response()
        }
        Err(e) => Json(json!({"valid": false, "description": null, "next": [], "error": e.to_string()}))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::{prop_assert, prop_assert_eq, prop_oneof, proptest, ProptestConfig};

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/integrations/1")), "/integrations/1");
        assert_eq!(safe_next(Some("/usage%3Fa%3Db%20c")), "/usage%3Fa%3Db%20c");
        assert_eq!(
            safe_next(Some("/integrations?tab=loads#x")),
            "/integrations?tab=loads#x"
        );
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "",
            "x",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "/ /evil.com",
            "/\u{0}/evil.com",
            "/x\\..\\\\evil.com",
            "/\u{ff0f}evil.com",
            "\t//evil.com",
            " /x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    /// Where a browser goes when this site (https://seam.example/signin) redirects to `location`:
    /// the WHATWG URL parser, as browsers implement it.
    fn browser_target(location: &str) -> Option<url::Url> {
        url::Url::parse("https://seam.example/signin")
            .ok()?
            .join(location)
            .ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever `next` holds, the redirect stays on this site: same scheme, host and port.
        #[test]
        fn next_never_leaves_the_site(next in prop_oneof![
            "[/\\\\\t\n\r \x00-\x1f\x7f.:@a-z%?#]{0,10}",
            "/[/\\\\\t\n\r\x0b\x0c ]{0,3}[a-z.:@]{0,10}",
            proptest::arbitrary::any::<String>(),
        ]) {
            let to = safe_next(Some(&next));
            prop_assert!(to == "/" || to == next);
            let target = browser_target(&to).expect("a local path always parses");
            prop_assert_eq!(target.origin(), url::Url::parse("https://seam.example/").expect("url").origin(),
                "{:?} -> {:?} left the site", next, to);
            prop_assert!(HeaderValue::from_str(&to).is_ok());
        }

        /// Every path the app shell encodes into `?next=` comes back unchanged.
        #[test]
        fn encoded_paths_are_accepted(path in "/([a-z0-9][a-z0-9/?=&#%. _-]{0,30})?") {
            let encoded = url_encode(&path);
            prop_assert_eq!(safe_next(Some(&encoded)), encoded);
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc(r#"<a href="x">'"#), "&lt;a href=&quot;x&quot;&gt;&#39;");
        assert_eq!(url_encode("/usage?a=b c"), "/usage%3Fa%3Db%20c");
    }
}
