//! `seam target`: kill -9 at many points, rerun from the committed state, and compare with the input.

use seam_core::Destination;
use seam_warehouse::DuckDbDestination;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const N: u64 = 6_000;
const STATE_EVERY: u64 = 50;

/// The Singer stream from record `start` on: an upserted stream with a subtable, an append-only
/// stream, and a STATE every `STATE_EVERY` records.
fn stream_from(start: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"type":"SCHEMA","stream":"items","key_properties":["id"],"schema":{"type":"object","properties":{"id":{"type":"integer"}}}}"#);
    out.push(b'\n');
    out.extend_from_slice(
        br#"{"type":"SCHEMA","stream":"logs","key_properties":[],"schema":{"type":"object"}}"#,
    );
    out.push(b'\n');
    for i in start..N {
        writeln!(out, r#"{{"type":"RECORD","stream":"items","record":{{"id":{i},"name":"item {i}","tags":["a{i}","b{i}"]}}}}"#).unwrap();
        writeln!(
            out,
            r#"{{"type":"RECORD","stream":"logs","record":{{"seq":{i},"msg":"log {i}"}}}}"#
        )
        .unwrap();
        if (i + 1).is_multiple_of(STATE_EVERY) || i + 1 == N {
            writeln!(
                out,
                r#"{{"type":"STATE","value":{{"bookmarks":{{"items":{{"next":{}}}}}}}}}"#,
                i + 1
            )
            .unwrap();
        }
    }
    out
}

fn committed_next(db: &Path) -> u64 {
    let mut d = DuckDbDestination::open(db, "kill").unwrap();
    d.committed_state()
        .unwrap()
        .and_then(|s| s.bookmark("items", "next").and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

fn count(db: &Path, sql: &str) -> u64 {
    let d = DuckDbDestination::open(db, "kill").unwrap();
    d.connection().query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// `seam target duckdb` into `db`'s schema `kill`, committing every 100 records.
fn target(db: &Path) -> std::process::Command {
    let mut command = crate::common::seam();
    command.args([
        "target",
        "duckdb",
        "--database",
        db.to_str().unwrap(),
        "--schema",
        "kill",
        "--max-batch-records",
        "100",
    ]);
    command
}

/// Runs the target on the stream from the committed position; kills it after `kill_after` if given.
/// Returns true when it ran to completion.
fn run_target(db: &Path, kill_after: Option<Duration>) -> bool {
    let start = committed_next(db);
    let mut child = target(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = stream_from(start);
    let writer = std::thread::spawn(move || {
        // Broken pipe after a kill is expected.
        let _ = stdin.write_all(&input);
    });
    let completed = match kill_after {
        Some(after) => {
            std::thread::sleep(after);
            match child.try_wait().unwrap() {
                Some(status) => status.success(),
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    false
                }
            }
        }
        None => child.wait().unwrap().success(),
    };
    writer.join().unwrap();
    completed
}

#[test]
fn kill_9_at_many_points_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.duckdb");
    // How long a whole run takes on this machine (into a database of its own): the kills land at
    // fractions of it, so they fall inside runs however fast the machine and the loader are.
    let started = Instant::now();
    assert!(run_target(&dir.path().join("timing.duckdb"), None));
    let whole = started.elapsed();
    let mut kills = 0;
    let mut positions = Vec::new();
    for round in 0..40u64 {
        let fraction = [0.1, 0.2, 0.15, 0.25, 0.12][round as usize % 5];
        let delay = whole.mul_f64(fraction).max(Duration::from_millis(5));
        if run_target(&db, Some(delay)) {
            break;
        }
        kills += 1;
        let next = committed_next(&db);
        positions.push(next);
        if next == 0 {
            continue; // killed before the first commit
        }
        // Everything the committed state covers is there (no loss at the kill point).
        let items = count(&db, &format!("SELECT COUNT(*) FROM kill.items WHERE id < {next}"));
        assert_eq!(items, next, "after kill {kills}: rows before the bookmark {next}");
        let logs = count(&db, &format!("SELECT COUNT(*) FROM kill.logs WHERE seq < {next}"));
        assert_eq!(
            logs, next,
            "after kill {kills}: append-only rows before the bookmark {next}"
        );
        if next >= N {
            break;
        }
    }
    assert!(run_target(&db, None), "the final run completes");
    assert_eq!(committed_next(&db), N);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM kill.items"), N);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT id) FROM kill.items"), N);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM kill.items__tags"), 2 * N);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM kill.logs"),
        N,
        "append-only: no duplicates after replays"
    );
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT seq) FROM kill.logs"), N);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM kill.items WHERE name <> 'item ' || id"),
        0
    );
    eprintln!("a whole run took {whole:?}; killed {kills} times at committed positions {positions:?}");
    assert!(
        kills >= 3,
        "the test should kill the target several times (killed {kills})"
    );
    assert!(
        positions.iter().filter(|&&p| p > 0 && p < N).count() >= 2,
        "at least two kills should land between commits: {positions:?}"
    );
}

/// `command` started with its stdin, stdout and stderr piped to the test.
fn spawn_piped(command: &mut std::process::Command) -> std::process::Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ctrl-C while the tap is silent (waiting on its API, its stdout still open): every whole line it
/// wrote is committed and its STATE printed, and the target ends without waiting for more input.
#[test]
fn ctrl_c_while_the_tap_is_silent_commits_what_it_wrote() {
    stop_while_the_tap_is_silent("-INT");
}

/// SIGTERM (a supervisor stopping the pipeline) stops the target as Ctrl-C does.
#[test]
fn sigterm_while_the_tap_is_silent_commits_what_it_wrote() {
    stop_while_the_tap_is_silent("-TERM");
}

/// Sends `signal` (`kill`'s spelling) to a target whose tap wrote a few records and fell silent;
/// checks that what it wrote is committed and its state printed.
fn stop_while_the_tap_is_silent(signal: &str) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.duckdb");
    let mut child = spawn_piped(&mut target(&db));
    let mut stdin = child.stdin.take().unwrap();
    // Thirty records of each stream (fewer than a batch: nothing is committed before the stop), the
    // STATE after them, and half of a line the tap never finishes.
    stdin.write_all(&stream_from(N - 30)).unwrap();
    stdin
        .write_all(br#"{"type":"RECORD","stream":"items","rec"#)
        .unwrap();
    stdin.flush().unwrap();
    // The target has read all of it once the pipe holds nothing more.
    seam_test_support::wait_until(
        Duration::from_secs(30),
        "the target to read the tap's lines",
        || rustix::io::ioctl_fionread(&stdin).unwrap() == 0,
    );
    let interrupted = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let limit = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("seam target did not end within a minute of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut printed, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("seam target: stopping"), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(printed.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no state printed ({e}): {printed:?}; {stderr}"));
    assert_eq!(last["bookmarks"]["items"]["next"], N);
    assert_eq!(committed_next(&db), N, "the state printed is the one committed");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM kill.items"), 30);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM kill.logs"), 30);
    // The tap's stdout stayed open throughout.
    drop(stdin);
}

/// Ctrl-C while a tap still writes: the target stops reading, commits what it read, prints the state
/// it committed last, and exits 0; the warehouse holds every row that state covers, and its state is
/// the one printed.
#[test]
fn ctrl_c_commits_what_was_read_and_prints_its_state() {
    use std::io::{BufRead, BufReader, BufWriter, Read};
    const MANY: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.duckdb");
    let mut child = spawn_piped(&mut target(&db));
    let stdin = child.stdin.take().unwrap();
    // A tap that would write a million records: it writes until the target has gone.
    let writer = std::thread::spawn(move || {
        let mut out = BufWriter::new(stdin);
        let schemas = stream_from(N);
        let written = out.write_all(&schemas).and_then(|()| {
            (0..MANY).try_for_each(|i| {
                writeln!(out, r#"{{"type":"RECORD","stream":"items","record":{{"id":{i},"name":"item {i}","tags":["a{i}","b{i}"]}}}}"#)?;
                writeln!(out, r#"{{"type":"RECORD","stream":"logs","record":{{"seq":{i},"msg":"log {i}"}}}}"#)?;
                if (i + 1).is_multiple_of(STATE_EVERY) {
                    writeln!(out, r#"{{"type":"STATE","value":{{"bookmarks":{{"items":{{"next":{}}}}}}}}}"#, i + 1)?;
                }
                Ok::<_, std::io::Error>(())
            })
        });
        written.is_err()
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut states = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    states.read_line(&mut first).unwrap();
    assert!(first.contains("\"next\""), "the first commit's state: {first:?}");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let mut rest = String::new();
    states.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let stderr = errors.join().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("seam target: stopping"), "{stderr}");
    assert!(
        writer.join().unwrap(),
        "the tap was still writing when the target ended"
    );
    let printed: serde_json::Value =
        serde_json::from_str(rest.lines().last().unwrap_or(first.trim())).unwrap();
    let next = printed["bookmarks"]["items"]["next"].as_u64().unwrap();
    assert_eq!(
        committed_next(&db),
        next,
        "the state printed last is the one committed"
    );
    assert!(next < MANY, "the target stopped early ({next})");
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM kill.items WHERE id < {next}")),
        next
    );
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM kill.logs WHERE seq < {next}")),
        next
    );
}

/// Ctrl-C stops `seam target` gracefully; Ctrl-C again exits at once (status 130), as a kill would,
/// even while a commit waits on a lock: what was committed stays, the batch under way does not land.
#[test]
fn a_second_ctrl_c_exits_at_once_keeping_what_was_committed() {
    use std::io::{BufRead, BufReader};
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let schema = seam_test_support::unique_name("ctrlc");
    let postgres_target = || {
        let mut command = crate::common::seam();
        command.args(["target", "postgres", "--url", &url, "--schema", &schema]);
        command
    };
    // A first run commits the last ten records of each stream (and creates the tables).
    let mut first = spawn_piped(&mut postgres_target());
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(&stream_from(N - 10)).unwrap();
    drop(stdin);
    let output = first.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Another session holds the table: the next run's commit waits on its lock.
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".items IN ACCESS EXCLUSIVE MODE"
        ))
        .unwrap();
    let mut child = spawn_piped(&mut postgres_target());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&stream_from(N - 40)).unwrap();
    drop(stdin);
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    seam_test_support::wait_until(Duration::from_secs(30), "the commit to wait on the lock", || {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                &[&format!("%{schema}%")],
            )
            .unwrap()
            .get(0);
        waiting > 0
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let interrupt = || {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    interrupt();
    // The second Ctrl-C once the first is taken (two at once may arrive as one).
    let mut said = String::new();
    while !said.contains("stopping") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "stderr ended: {said}");
        said.push_str(&line);
    }
    interrupt();
    let limit = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < limit,
            "seam target did not exit after a second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert_eq!(status.code(), Some(130), "{said}{rest}");
    assert!(rest.contains("exiting now"), "{said}{rest}");
    holder.batch_execute("ROLLBACK").unwrap();
    let rows: i64 = watcher
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".items"), &[])
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 10,
        "the first run's rows stay; the interrupted batch did not land"
    );
    let state: String = watcher
        .query_one(&format!("SELECT state::text FROM \"{schema}\"._sdc_state"), &[])
        .unwrap()
        .get(0);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["bookmarks"]["items"]["next"], N,
        "the first run's state stays"
    );
    watcher
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
}
