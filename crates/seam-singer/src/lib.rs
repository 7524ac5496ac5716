//! Any Singer tap as a seam [`Source`]: the tap runs as a child process with `--config`, `--catalog`
//! and `--state` files, and its stdout is read as Singer messages by the same loader as Zendesk's.
//!
//! - Registration ([`TapProgram`]): the admin names each tap and its executable when starting the
//!   service (`seam serve --singer-tap NAME=PATH[,SECRET_KEY...]`); integrations pick a registered
//!   tap by type (`singer.NAME`) and can never name a path. Without a spec file a tap's settings are
//!   its config object as it is, and the keys listed at registration are secret (sealed, never shown).
//! - Files: config, catalog and state are written 0600 into a private directory (0700) made for the
//!   run and deleted after it; the tap runs in that directory.
//! - Bounded: discovery has a time limit, and so has a sync's silence (no output line for an hour by
//!   default); every output line has a size limit; a stop (and dropping the read) kills the tap's
//!   whole process group; a tap that closes its output but does not exit is killed after a grace.
//! - Failures say what the tap said: a non-zero exit or a line that is not a Singer message (or not
//!   UTF-8: never loaded with its bytes replaced) fails with the tap's last stderr lines. What the
//!   loader committed before stays committed.
//! - The tap's stderr is logged line by line (`tracing`, target `seam::tap`, with the tap's name),
//!   and goes to the job's extraction log ([`Source::log_to`]).

use async_trait::async_trait;
use seam_core::singer::{parse_line, ReadError};
use seam_core::{
    Catalog, ConnectorSpec, ErrorKind, Message, PropertySpec, PropertyType, ReadSummary, Source, SourceError,
    State,
};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The prefix of a Singer tap's connector type: `singer.NAME`.
pub const TYPE_PREFIX: &str = "singer.";

/// A registered Singer tap: its name, its executable, which config keys are secret, and the spec
/// file it ships, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapProgram {
    /// The name integrations use (`singer.NAME`): lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The executable (absolute).
    pub executable: PathBuf,
    /// Config keys sealed with the credentials and never shown back.
    pub secret_keys: Vec<String>,
    /// The tap's spec file: its config as a JSON Schema object (see [`TapProgram::load_spec`]).
    pub spec_file: Option<PathBuf>,
    /// The settings the spec file declares, once loaded, and whether it admits others.
    pub declared: Option<(Vec<PropertySpec>, bool)>,
}

impl TapProgram {
    /// Parses a registration, `NAME=PATH[,SECRET_KEY...][,spec=SPEC_FILE]`: the paths must be
    /// absolute; whether the tap exists and runs is the connection check's to say, the spec file is
    /// read by [`TapProgram::load_spec`].
    pub fn parse(arg: &str) -> Result<TapProgram, String> {
        let usage =
            "a Singer tap is registered as NAME=/absolute/path/to/tap[,SECRET_KEY...][,spec=/absolute/spec.json]";
        let (name, rest) = arg.split_once('=').ok_or_else(|| format!("{arg:?}: {usage}"))?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!(
                "tap name {name:?} is invalid: use lowercase letters, digits, '-' and '_' ({usage})"
            ));
        }
        let mut parts = rest.split(',');
        let path = PathBuf::from(parts.next().unwrap_or_default().trim());
        if !path.is_absolute() {
            return Err(format!(
                "tap {name}: {:?} is not an absolute path ({usage})",
                path.display().to_string()
            ));
        }
        let mut secret_keys = Vec::new();
        let mut spec_file = None;
        for part in parts.map(str::trim).filter(|k| !k.is_empty()) {
            match part.strip_prefix("spec=") {
                Some(file) if Path::new(file).is_absolute() => spec_file = Some(PathBuf::from(file)),
                Some(file) => {
                    return Err(format!(
                        "tap {name}: spec file {file:?} is not an absolute path ({usage})"
                    ))
                }
                None => secret_keys.push(part.to_owned()),
            }
        }
        Ok(TapProgram {
            name: name.to_owned(),
            executable: path,
            secret_keys,
            spec_file,
            declared: None,
        })
    }

    /// Reads the spec file, if the registration names one: a JSON Schema object whose `properties`
    /// are the tap's settings (`type`, `title`, `description`; `writeOnly: true` for a secret, as
    /// are the keys listed at registration), with `required`, and `additionalProperties` (false by
    /// default: settings it does not declare are refused).
    pub fn load_spec(&mut self) -> Result<(), String> {
        let Some(file) = &self.spec_file else {
            return Ok(());
        };
        let what = format!("tap {}: spec file {}", self.name, file.display());
        let text = std::fs::read_to_string(file).map_err(|e| format!("{what}: {e}"))?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| format!("{what} is not JSON: {e}"))?;
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{what} has no \"properties\" object"))?;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut properties = Vec::new();
        for (key, p) in props {
            let kind = p.get("type").and_then(PropertyType::from_json_schema).ok_or_else(|| {
                format!(
                    "{what}: property {key} has no type seam knows (string, integer, number, boolean, array, object)"
                )
            })?;
            let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
            let title = text("title").unwrap_or_else(|| key.clone());
            let mut spec =
                PropertySpec::string(key, &title, &text("description").unwrap_or_default()).of_type(kind);
            spec.required = required.contains(&key.as_str());
            spec.secret = p.get("writeOnly") == Some(&Value::Bool(true)) || self.secret_keys.contains(key);
            properties.push(spec);
        }
        let open = schema.get("additionalProperties") == Some(&Value::Bool(true));
        self.declared = Some((properties, open));
        Ok(())
    }

    /// Its connector type: `singer.NAME`.
    pub fn type_name(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.name)
    }

    /// Its connector spec: the settings its spec file declares (loaded by
    /// [`TapProgram::load_spec`]); without one, the secret keys, and any other key is a setting
    /// passed to the tap as it is (the tap validates its own config, at the connection check).
    pub fn connector_spec(&self) -> ConnectorSpec {
        let (mut properties, open) = match &self.declared {
            Some((declared, open)) => (declared.clone(), *open),
            None => (Vec::new(), true),
        };
        for k in &self.secret_keys {
            if !properties.iter().any(|p| &p.name == k) {
                properties.push(PropertySpec::string(k, k, &format!("the tap's {k}")).secret());
            }
        }
        ConnectorSpec {
            type_name: self.type_name(),
            display_name: format!("{} (Singer tap)", self.name),
            properties,
            rules: None,
            open,
        }
    }
}

/// Time and size limits of a tap run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapLimits {
    /// How long `--discover` (the connection check too) may take.
    pub discover_timeout: Duration,
    /// How long a tap that closed its stdout may take to exit.
    pub exit_grace: Duration,
    /// How long a sync may go without printing a line before the tap is stopped and the job fails.
    pub idle_timeout: Duration,
    /// The longest output line (one message) accepted, in bytes; a catalog is one line too.
    pub max_line_bytes: usize,
}

impl Default for TapLimits {
    fn default() -> Self {
        TapLimits {
            discover_timeout: Duration::from_secs(300),
            exit_grace: Duration::from_secs(30),
            // A tap may run a long query before its first row; an hour of silence is a hung tap.
            idle_timeout: Duration::from_secs(3600),
            max_line_bytes: seam_core::singer::MAX_LINE_BYTES,
        }
    }
}

/// How many of the tap's last stderr lines a failure quotes.
const STDERR_TAIL: usize = 10;
/// Longest stderr line kept (longer ones are cut).
const STDERR_LINE: usize = 2_000;

/// A Singer tap with an integration's config, as a [`Source`].
#[derive(Debug, Clone)]
pub struct TapSource {
    program: TapProgram,
    config: Map<String, Value>,
    limits: TapLimits,
    log: Arc<Mutex<Option<mpsc::Sender<String>>>>,
}

impl TapSource {
    /// The tap `program` with `config` (secrets in clear: memory only, then the run's 0600 file).
    pub fn new(program: TapProgram, config: Map<String, Value>, limits: TapLimits) -> TapSource {
        TapSource {
            program,
            config,
            limits,
            log: Arc::default(),
        }
    }

    fn error(&self, kind: ErrorKind, message: String) -> SourceError {
        SourceError::new(kind, format!("tap {}: {message}", self.program.name))
    }

    /// A private directory holding the config (and `extra` files), for one run of the tap.
    fn files(&self, extra: &[(&str, &Value)]) -> Result<tempfile::TempDir, SourceError> {
        let io = |e: std::io::Error| self.error(ErrorKind::Internal, format!("cannot write its files: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("seam-tap-")
            .tempdir()
            .map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let config = Value::Object(self.config.clone());
        for (name, value) in std::iter::once(("config.json", &config)).chain(extra.iter().copied()) {
            write_private(&dir.path().join(name), value).map_err(io)?;
        }
        Ok(dir)
    }

    /// Starts the tap in `dir` with `args`, its stdout and stderr piped, in a process group of its own.
    fn spawn(&self, dir: &Path, args: &[&str]) -> Result<Running, SourceError> {
        let mut cmd = Command::new(&self.program.executable);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            self.error(
                ErrorKind::Config,
                format!("cannot run {}: {e}", self.program.executable.display()),
            )
        })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = self.log.lock().unwrap_or_else(PoisonError::into_inner).clone();
            tokio::spawn(log_stderr(
                self.program.name.clone(),
                BufReader::new(stderr),
                Arc::clone(&tail),
                sink,
            ));
        }
        Ok(Running {
            child,
            guard: GroupGuard(group),
            tail,
        })
    }

    /// Waits for the tap to exit after it closed its stdout (killing it after the grace); an error
    /// quoting its stderr unless it exited 0.
    async fn finish(&self, running: &mut Running, what: &str, kind: ErrorKind) -> Result<(), SourceError> {
        let status = match tokio::time::timeout(self.limits.exit_grace, running.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(self.error(ErrorKind::Internal, format!("lost track of it: {e}"))),
            Err(_) => {
                running.guard.kill();
                return Err(self.error(
                    kind,
                    format!(
                        "closed its output but did not exit within {} s; it was stopped{}",
                        self.limits.exit_grace.as_secs_f64(),
                        running.quote_stderr()
                    ),
                ));
            }
        };
        if status.success() {
            return Ok(());
        }
        // Let the stderr reader take the last lines the tap wrote.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(self.error(
            kind,
            format!("{what} failed ({}){}", describe(status), running.quote_stderr()),
        ))
    }
}

/// Writes `value` as JSON to a new file readable by its owner only.
fn write_private(path: &Path, value: &Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.to_string().as_bytes())?;
    f.sync_all()
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "no exit status".to_owned(),
    }
}

/// Kills the tap's process group when dropped (a read abandoned by the pipeline included).
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // The group may be gone already; nothing else to do either way.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running tap.
struct Running {
    child: Child,
    guard: GroupGuard,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Running {
    /// `: the tap's last stderr lines: …`, or nothing when it wrote none.
    fn quote_stderr(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its last stderr lines: {}",
                tail.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    /// Stops the tap now and reaps it.
    async fn stop(&mut self) {
        self.guard.kill();
        let _ = self.child.wait().await;
    }
}

/// Logs the tap's stderr line by line (and sends each line to the job's log, dropping lines while
/// it is full), and keeps the last lines for error messages.
async fn log_stderr(
    tap: String,
    mut stderr: impl AsyncBufRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    sink: Option<mpsc::Sender<String>>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut stderr)
            .take(STDERR_LINE as u64 * 4)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line: String = text.trim_end().chars().take(STDERR_LINE).collect();
        if line.is_empty() {
            continue;
        }
        tracing::info!(target: "seam::tap", tap = %tap, "{line}");
        if let Some(sink) = &sink {
            let _ = sink.try_send(line.clone());
        }
        let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Reads one line of at most `max` bytes (without its newline); `None` at the end of the output.
async fn read_line(
    out: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<()>, String> {
    buf.clear();
    let n = out
        .take(max as u64 + 1)
        .read_until(b'\n', buf)
        .await
        .map_err(|e| format!("reading its output failed: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > max {
        return Err(format!("an output line is longer than {max} bytes"));
    }
    Ok(Some(()))
}

#[async_trait]
impl Source for TapSource {
    fn log_to(&self, sink: mpsc::Sender<String>) {
        *self.log.lock().unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    /// Runs discovery: a tap proves its config by discovering.
    async fn check(&self) -> Result<(), SourceError> {
        self.discover().await.map(|_| ())
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        let dir = self.files(&[])?;
        let mut running = self.spawn(dir.path(), &["--config", "config.json", "--discover"])?;
        let mut stdout = running.child.stdout.take().map(BufReader::new);
        let limit = self.limits.discover_timeout;
        let read = async {
            let mut text = Vec::new();
            if let Some(out) = stdout.as_mut() {
                out.take(self.limits.max_line_bytes as u64 + 1)
                    .read_to_end(&mut text)
                    .await
                    .map_err(|e| format!("reading its catalog failed: {e}"))?;
            }
            Ok::<_, String>(text)
        };
        let text = match tokio::time::timeout(limit, read).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                running.stop().await;
                return Err(self.error(ErrorKind::Internal, e));
            }
            Err(_) => {
                running.stop().await;
                return Err(self.error(
                    ErrorKind::Transient,
                    format!(
                        "--discover did not finish within {} s; it was stopped{}",
                        limit.as_secs_f64(),
                        running.quote_stderr()
                    ),
                ));
            }
        };
        drop(stdout);
        self.finish(&mut running, "--discover", ErrorKind::Config).await?;
        if text.len() > self.limits.max_line_bytes {
            return Err(self.error(
                ErrorKind::Schema,
                format!("its catalog is larger than {} bytes", self.limits.max_line_bytes),
            ));
        }
        serde_json::from_slice::<Catalog>(&text).map_err(|e| {
            self.error(
                ErrorKind::Schema,
                format!("--discover did not print a Singer catalog: {e}"),
            )
        })
    }

    async fn read(
        &self,
        catalog: &Catalog,
        state: State,
        out: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        let catalog_json = serde_json::to_value(catalog)
            .map_err(|e| self.error(ErrorKind::Internal, format!("cannot write its catalog: {e}")))?;
        let state_json = state.to_value();
        let dir = self.files(&[("catalog.json", &catalog_json), ("state.json", &state_json)])?;
        let mut running = self.spawn(
            dir.path(),
            &[
                "--config",
                "config.json",
                "--catalog",
                "catalog.json",
                "--state",
                "state.json",
            ],
        )?;
        let Some(stdout) = running.child.stdout.take() else {
            running.stop().await;
            return Err(self.error(ErrorKind::Internal, "its output is not readable".to_owned()));
        };
        let mut stdout = BufReader::new(stdout);
        let mut summary = ReadSummary::default();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            let line = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    running.stop().await;
                    return Ok(summary);
                }
                line = tokio::time::timeout(
                    self.limits.idle_timeout,
                    read_line(&mut stdout, &mut buf, self.limits.max_line_bytes),
                ) => line,
            };
            match line {
                Ok(Ok(Some(()))) => {}
                Ok(Ok(None)) => break,
                Err(_) => {
                    running.stop().await;
                    return Err(self.error(
                        ErrorKind::Transient,
                        format!(
                            "printed nothing for {} s; it was stopped{}",
                            self.limits.idle_timeout.as_secs_f64(),
                            running.quote_stderr()
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    running.stop().await;
                    return Err(self.error(ErrorKind::Schema, format!("{e}{}", running.quote_stderr())));
                }
            }
            line_no += 1;
            // The one parser of a Singer line (`seam target`'s too): a line that is not UTF-8 is
            // refused, not loaded with its bytes replaced.
            let message = match parse_line(&buf, line_no) {
                None => continue,
                Some(Ok((_, m))) => m,
                Some(Err(e)) => {
                    running.stop().await;
                    let why = match e {
                        ReadError::Malformed { source, .. } => format!("is not a Singer message ({source})"),
                        // What `parse_line` reads is in memory: its one I/O error is text that is not UTF-8.
                        ReadError::Io { source, .. } => format!("is not UTF-8 text ({source})"),
                    };
                    return Err(self.error(
                        ErrorKind::Schema,
                        format!("line {line_no} of its output {why}{}", running.quote_stderr()),
                    ));
                }
            };
            if let Message::Record(r) = &message {
                *summary.records.entry(r.stream.clone()).or_default() += 1;
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    running.stop().await;
                    return Ok(summary);
                }
                sent = out.send(message) => {
                    if sent.is_err() {
                        running.stop().await;
                        return Err(SourceError::consumer_gone());
                    }
                }
            }
        }
        self.finish(&mut running, "the sync", ErrorKind::Transient)
            .await?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registrations_name_an_absolute_path_and_secret_keys() {
        assert_eq!(
            TapProgram::parse("postgres=/opt/taps/tap-postgres,password, sqlalchemy_url"),
            Ok(TapProgram {
                name: "postgres".into(),
                executable: "/opt/taps/tap-postgres".into(),
                secret_keys: vec!["password".into(), "sqlalchemy_url".into()],
                spec_file: None,
                declared: None,
            })
        );
        let jsonl = TapProgram::parse("tap-jsonl=/usr/bin/tap-jsonl").expect("parses");
        assert_eq!(jsonl.type_name(), "singer.tap-jsonl");
        assert!(jsonl.secret_keys.is_empty());
        for bad in [
            "nopath",
            "x=relative/tap",
            "Bad Name=/bin/tap",
            "=/bin/tap",
            "a.b=/bin/tap",
            "x=/bin/tap,spec=spec.json",
        ] {
            assert!(TapProgram::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_spec_seals_the_secret_keys_and_takes_any_other() {
        let spec = TapProgram::parse("pg=/bin/tap,password")
            .expect("parses")
            .connector_spec();
        assert_eq!(spec.type_name, "singer.pg");
        assert!(spec.property("password").is_some_and(|p| p.secret));
        let config = serde_json::json!({"host": "localhost", "port": 5432})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(spec.validate(&config, &|_| true), Ok(()));
    }

    #[test]
    fn a_spec_file_declares_the_settings_their_types_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spec.json");
        std::fs::write(
            &file,
            serde_json::json!({"type": "object", "required": ["host"], "properties": {
                "host": {"type": "string", "title": "Host", "description": "the server"},
                "port": {"type": ["integer", "null"]},
                "filter_schemas": {"type": "array"},
                "password": {"type": "string", "writeOnly": true},
                "token": {"type": "string"}}})
            .to_string(),
        )
        .unwrap();
        let mut tap = TapProgram::parse(&format!("pg=/bin/tap,token,spec={}", file.display())).unwrap();
        tap.load_spec().unwrap();
        let spec = tap.connector_spec();
        assert!(
            !spec.open,
            "a spec file without additionalProperties admits nothing else"
        );
        let p = |n: &str| spec.property(n).unwrap();
        assert!(p("host").required && !p("host").secret);
        assert_eq!(p("port").kind, PropertyType::Integer);
        assert_eq!(p("filter_schemas").kind, PropertyType::Array);
        assert!(p("password").secret, "writeOnly");
        assert!(p("token").secret, "listed at registration");
        let config = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            spec.validate(&config(serde_json::json!({"host": "h", "colour": 1})), &|_| true),
            Err("unknown property colour: pg (Singer tap) has no such setting".into())
        );
        assert_eq!(
            spec.validate(&config(serde_json::json!({"port": 1})), &|_| true),
            Err("properties.host is required: the server".into())
        );

        std::fs::write(&file, r#"{"properties": {"x": {"type": "date"}}}"#).unwrap();
        let err = tap.load_spec().unwrap_err();
        assert!(err.contains("property x has no type seam knows"), "{err}");
    }
}
