//! Singer taps as sources, against real child processes: small `sh` taps written by each test that
//! behave well, exit 1 half way, print a line that is not a message, hang (with a child of their
//! own), or never finish discovery.
#![allow(clippy::unwrap_used)]

use seam_core::{Catalog, ErrorKind, Message, Source, State};
use seam_singer::{TapLimits, TapProgram, TapSource};
use seam_test_support::write_program;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CATALOG: &str = r#"{"streams":[{"tap_stream_id":"items","stream":"items","schema":{"type":"object","properties":{"id":{"type":"integer"}}},"metadata":[{"breadcrumb":[],"metadata":{"selected":true,"table-key-properties":["id"]}}]}]}"#;

/// Writes an executable `sh` tap whose `--discover` prints [`CATALOG`] and whose sync runs `body`.
fn tap(dir: &Path, body: &str) -> TapProgram {
    let path = dir.join("tap");
    let script =
        format!("#!/bin/sh\ncase \" $* \" in *\" --discover \"*) echo '{CATALOG}'; exit 0;; esac\n{body}\n");
    write_program(&path, &script);
    TapProgram::parse(&format!("test={},password", path.display())).unwrap()
}

fn config(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn limits() -> TapLimits {
    TapLimits {
        discover_timeout: Duration::from_secs(20),
        exit_grace: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        max_line_bytes: 1 << 20,
    }
}

/// Runs a read to the end; returns its result and every message the tap sent.
async fn read(
    source: &TapSource,
    state: State,
    cancel: CancellationToken,
) -> (
    Result<seam_core::ReadSummary, seam_core::SourceError>,
    Vec<Message>,
) {
    let catalog: Catalog = serde_json::from_str(CATALOG).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(m) = rx.recv().await {
            out.push(m);
        }
        out
    });
    let result = source.read(&catalog, state, tx, cancel).await;
    (result, collect.await.unwrap())
}

fn record_of(m: &Message) -> Option<Value> {
    match m {
        Message::Record(r) => Some(Value::Object(r.value().unwrap())),
        _ => None,
    }
}

#[tokio::test]
async fn a_tap_gets_its_files_privately_and_its_messages_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // The tap reports its working directory, its config (secret included) and the files' modes,
    // then sends two pages, each followed by a STATE, resuming after the bookmark it was given.
    let program = tap(
        dir.path(),
        r#"echo '{"type":"SCHEMA","stream":"items","schema":{"type":"object"},"key_properties":["id"]}'
echo "{\"type\":\"RECORD\",\"stream\":\"items\",\"record\":{\"id\":0,\"cwd\":\"$(pwd)\",\"config\":$(cat config.json),\"modes\":\"$(stat -c %a . config.json catalog.json state.json | tr '\n' ' ')\",\"state\":$(cat state.json)}}"
echo '{"type":"RECORD","stream":"items","record":{"id":1}}'
echo '{"type":"STATE","value":{"bookmarks":{"items":{"id":1}}}}'
echo 'progress: page 1 of 2' >&2
echo '{"type":"RECORD","stream":"items","record":{"id":2}}'
echo '{"type":"STATE","value":{"bookmarks":{"items":{"id":2}}}}'"#,
    );
    let source = TapSource::new(
        program,
        config(json!({"host": "db.internal", "password": "s3cret", "start_date": "2024-01-01T00:00:00Z"})),
        limits(),
    );
    source.check().await.unwrap();
    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.streams[0].tap_stream_id, "items");

    let mut state = State::default();
    state.set_bookmark("items", "id", json!(0));
    let (result, messages) = read(&source, state, CancellationToken::new()).await;
    let summary = result.unwrap();
    assert_eq!(summary.records["items"], 3);
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| match m {
            Message::Schema(_) => "SCHEMA",
            Message::Record(_) => "RECORD",
            Message::State { .. } => "STATE",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["SCHEMA", "RECORD", "RECORD", "STATE", "RECORD", "STATE"]);
    let first = record_of(&messages[1]).unwrap();
    assert_eq!(
        first["config"]["password"], "s3cret",
        "the tap gets its secrets in clear"
    );
    assert_eq!(first["config"]["host"], "db.internal");
    assert_eq!(
        first["state"]["bookmarks"]["items"]["id"], 0,
        "and the state to resume from"
    );
    assert_eq!(first["modes"], "700 600 600 600 ");
    let cwd = PathBuf::from(first["cwd"].as_str().unwrap());
    assert!(!cwd.exists(), "the run's private directory is deleted after it");
}

#[tokio::test]
async fn a_tap_that_exits_1_half_way_fails_with_its_last_stderr_lines() {
    let dir = tempfile::tempdir().unwrap();
    let program = tap(
        dir.path(),
        r#"echo '{"type":"SCHEMA","stream":"items","schema":{"type":"object"},"key_properties":["id"]}'
echo '{"type":"RECORD","stream":"items","record":{"id":1}}'
echo '{"type":"STATE","value":{"bookmarks":{"items":{"id":1}}}}'
echo 'psycopg2.OperationalError: password authentication failed for user "seam"' >&2
exit 1"#,
    );
    let source = TapSource::new(program, Map::new(), limits());
    let (result, messages) = read(&source, State::default(), CancellationToken::new()).await;
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("tap test: the sync failed (exit status 1)"),
        "{text}"
    );
    assert!(
        text.contains("password authentication failed for user \"seam\""),
        "{text}"
    );
    assert_eq!(messages.len(), 3, "what it sent before failing was delivered");
}

#[tokio::test]
async fn a_line_that_is_not_a_singer_message_fails_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let program = tap(
        dir.path(),
        r#"echo '{"type":"SCHEMA","stream":"items","schema":{"type":"object"},"key_properties":["id"]}'
echo 'INFO starting sync'
sleep 30"#,
    );
    let source = TapSource::new(program, Map::new(), limits());
    let started = Instant::now();
    let (result, messages) = read(&source, State::default(), CancellationToken::new()).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Schema);
    assert!(
        err.to_string()
            .starts_with("tap test: line 2 of its output is not a Singer message"),
        "{err}"
    );
    assert_eq!(messages.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the tap was stopped, not waited for"
    );
}

/// A line that is not UTF-8 fails the read naming the line, as `seam target` refuses it: its bytes
/// are never loaded replaced by U+FFFD.
#[tokio::test]
async fn a_line_that_is_not_utf8_fails_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let program = tap(
        dir.path(),
        r#"echo '{"type":"SCHEMA","stream":"items","schema":{"type":"object"},"key_properties":["id"]}'
echo '{"type":"RECORD","stream":"items","record":{"id":1,"name":"ok"}}'
printf '{"type":"RECORD","stream":"items","record":{"id":2,"name":"caf\351"}}\n'"#,
    );
    let source = TapSource::new(program, Map::new(), limits());
    let (result, messages) = read(&source, State::default(), CancellationToken::new()).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Schema);
    assert!(
        err.to_string()
            .starts_with("tap test: line 3 of its output is not UTF-8 text"),
        "{err}"
    );
    assert_eq!(messages.len(), 2, "the lines before it were delivered");
}

/// A tap that hangs, with a child of its own: a stop ends the read at once with what it did, and
/// kills the whole process group.
#[tokio::test]
async fn a_stop_kills_a_hanging_tap_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let program = tap(
        dir.path(),
        &format!(
            r#"sleep 600 &
echo $! > {}
echo '{{"type":"SCHEMA","stream":"items","schema":{{"type":"object"}},"key_properties":["id"]}}'
echo '{{"type":"RECORD","stream":"items","record":{{"id":1}}}}'
sleep 600"#,
            pidfile.display()
        ),
    );
    let source = TapSource::new(program, Map::new(), limits());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (source, cancel) = (source.clone(), cancel.clone());
        async move { read(&source, State::default(), cancel).await }
    });
    seam_test_support::wait_until_async(
        Duration::from_secs(20),
        "the tap to start its child",
        async || pidfile.exists(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    cancel.cancel();
    let (result, messages) = run.await.unwrap();
    let summary = result.unwrap();
    assert_eq!(summary.records["items"], 1);
    assert_eq!(messages.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(20));
    let child: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    seam_test_support::wait_until(Duration::from_secs(10), "the tap's child to be killed", || {
        // A killed child may linger as a zombie until its parent is reaped; either way it no longer runs.
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
}

#[tokio::test]
async fn discovery_is_bounded_and_a_missing_tap_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow-tap");
    write_program(&path, "#!/bin/sh\nsleep 600\n");
    let slow = TapProgram::parse(&format!("slow={}", path.display())).unwrap();
    let source = TapSource::new(
        slow,
        Map::new(),
        TapLimits {
            discover_timeout: Duration::from_millis(500),
            ..limits()
        },
    );
    let err = source.check().await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("tap slow: --discover did not finish within 0.5 s; it was stopped"),
        "{err}"
    );

    let missing = TapProgram::parse("gone=/nonexistent/tap-gone").unwrap();
    let err = TapSource::new(missing, Map::new(), limits())
        .check()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.to_string()
            .starts_with("tap gone: cannot run /nonexistent/tap-gone"),
        "{err}"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let broken = tap(dir2.path(), "exit 0");
    std::fs::write(
        &broken.executable,
        "#!/bin/sh\necho 'Traceback: config is missing key host' >&2\nexit 2\n",
    )
    .unwrap();
    let err = TapSource::new(broken, Map::new(), limits())
        .check()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.to_string().contains("--discover failed (exit status 2)"),
        "{err}"
    );
    assert!(err.to_string().contains("config is missing key host"), "{err}");
}

/// A tap that goes silent: the sync fails once it printed nothing for the idle limit, quoting it.
#[tokio::test]
async fn a_silent_tap_is_stopped_after_the_idle_limit() {
    let dir = tempfile::tempdir().unwrap();
    let program = tap(
        dir.path(),
        r#"echo '{"type":"SCHEMA","stream":"items","schema":{"type":"object"},"key_properties":["id"]}'
echo 'waiting for a lock on table items' >&2
sleep 600"#,
    );
    let source = TapSource::new(
        program,
        Map::new(),
        TapLimits {
            idle_timeout: Duration::from_millis(700),
            ..limits()
        },
    );
    let started = Instant::now();
    let (result, messages) = read(&source, State::default(), CancellationToken::new()).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    let text = err.to_string();
    assert!(
        text.starts_with("tap test: printed nothing for 0.7 s; it was stopped"),
        "{text}"
    );
    assert!(text.contains("waiting for a lock on table items"), "{text}");
    assert_eq!(messages.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(20));
}
