//! A run fed by Singer lines (`seam target`): the same driver as a source's run, with the lines'
//! numbers in its errors, its input read on a thread of its own and held to a byte budget, and a
//! stop that commits what was read without waiting on an input that stays silent.

use super::{config, opener, Recorder, World, STREAM, WEDGED};
use seam_runtime::feed::LinesFeed;
use seam_runtime::pipeline::{self, PipelineConfig, PipelineError, PipelineRun, Progress, Stop};
use serde_json::json;
use std::io::{Cursor, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SCHEMA_LINE: &str = r#"{"type":"SCHEMA","stream":"s","key_properties":["id"],"schema":{"type":"object","properties":{"id":{"type":"integer"}}}}"#;

fn record(id: u64) -> String {
    format!(r#"{{"type":"RECORD","stream":"s","record":{{"id":{id},"text":"record {id}"}}}}"#)
}

fn state(id: u64) -> String {
    format!(r#"{{"type":"STATE","value":{{"bookmarks":{{"s":{{"id":{id}}}}}}}}}"#)
}

/// The schema, records 1..=n and a STATE after every tenth, one message a line.
fn stream(n: u64) -> String {
    let mut lines = vec![SCHEMA_LINE.to_owned()];
    for id in 1..=n {
        lines.push(record(id));
        if id.is_multiple_of(10) {
            lines.push(state(id));
        }
    }
    lines.join("\n") + "\n"
}

/// Runs `feed` into `world`; returns the run and the records it received (the run's progress:
/// lines are counted where they are parsed, not by the feed).
async fn run_lines<R: Read + Send + 'static>(
    feed: LinesFeed<R>,
    world: &World,
    hooks: &mut Recorder,
    stop: &Stop,
    config: &PipelineConfig,
) -> (PipelineRun, u64) {
    let progress = Progress::default();
    let run = pipeline::run_feed(feed, opener(world), hooks, &progress, stop, config).await;
    (run, progress.snapshot().records_total)
}

fn lines(text: String) -> LinesFeed<Cursor<Vec<u8>>> {
    LinesFeed::new(Cursor::new(text.into_bytes()))
}

fn no_stop() -> Stop {
    Stop::new(CancellationToken::new(), Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_load_with_their_states_committed_after_their_rows() {
    let world = World::default();
    let mut hooks = Recorder::default();
    let (run, read) = run_lines(lines(stream(45)), &world, &mut hooks, &no_stop(), &config(15)).await;
    let report = run.into_result().unwrap();
    assert_eq!(read, 45);
    assert_eq!(report.load.report.total_rows(), 45);
    assert_eq!(world.rows(), 45);
    // Batches of 15 records: each carries the last STATE read before its last record (the STATE
    // after record 30 comes after the batch that ends there).
    assert_eq!(
        hooks.commits,
        vec![(15, Some(10)), (15, Some(20)), (15, Some(40))]
    );
    assert_eq!(world.state().unwrap().bookmark(STREAM, "id"), Some(&json!(40)));
}

/// Errors name the input's line, blank lines counted (a line that is not a message, a record
/// before its schema, a line too long); nothing of the batch under way is committed,
/// and the state stays that of the last commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_is_named_and_nothing_of_its_batch_is_committed() {
    let cases: [(&str, &str); 3] = [
        ("{\"type\":\"RECORD\",", "line 9: not a valid Singer message"),
        (
            r#"{"type":"RECORD","stream":"other","record":{"id":1}}"#,
            "line 9: RECORD for stream \"other\" before its SCHEMA",
        ),
        (
            &format!(
                r#"{{"type":"RECORD","stream":"s","record":{{"id":9,"text":"{}"}}}}"#,
                "x".repeat(300)
            ),
            "reading line 9: the line is longer than 200 bytes",
        ),
    ];
    for (bad, says) in cases {
        let world = World::default();
        let mut text = vec![SCHEMA_LINE.to_owned(), String::new()];
        text.extend((1..=2).map(record));
        text.push(state(2));
        text.push(String::new());
        text.extend((3..=4).map(record));
        text.push(bad.to_owned());
        text.push(record(5));
        let mut hooks = Recorder::default();
        let (run, _) = run_lines(
            lines(text.join("\n")).max_line_bytes(200),
            &world,
            &mut hooks,
            &no_stop(),
            &config(3),
        )
        .await;
        let err = run.into_result().unwrap_err();
        assert!(err.to_string().starts_with(says), "{bad}: {err}");
        assert!(matches!(err, PipelineError::Load(_)), "{err}");
        // Records 1 to 3 were committed as a full batch, with the STATE after record 2; record 4
        // was staged when the bad line came.
        assert_eq!(world.rows(), 3, "{bad}");
        assert_eq!(hooks.commits, vec![(3, Some(2))], "{bad}");
        assert_eq!(world.state().unwrap().bookmark(STREAM, "id"), Some(&json!(2)));
    }
}

/// Records larger than the feed's byte budget still load, one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_larger_than_the_byte_budget_load_one_at_a_time() {
    let world = World::default();
    let feed = lines(stream(300)).in_flight_bytes(8);
    let (run, _) = run_lines(feed, &world, &mut Recorder::default(), &no_stop(), &config(50)).await;
    let report = run.into_result().unwrap();
    assert_eq!(report.load.report.total_rows(), 300);
    assert_eq!(world.rows(), 300);
}

/// An input that never ends: records and STATEs, as fast as the loader takes them.
struct Endless {
    next: u64,
    pending: Vec<u8>,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            self.next += 1;
            let mut line = if self.next == 1 {
                SCHEMA_LINE.to_owned()
            } else {
                record(self.next)
            };
            if self.next.is_multiple_of(10) {
                line.push('\n');
                line.push_str(&state(self.next));
            }
            line.push('\n');
            self.pending = line.into_bytes();
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// `seam target` on Ctrl-C: reading stops, what was read is committed with the last STATE read, and
/// the run ends well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_commits_what_was_read() {
    let world = std::sync::Arc::new(World::default());
    let cancel = CancellationToken::new();
    let handle = tokio::spawn({
        let (world, cancel) = (world.clone(), cancel.clone());
        async move {
            let feed = LinesFeed::new(Endless {
                next: 0,
                pending: Vec::new(),
            });
            let mut hooks = Recorder::default();
            let stop = Stop::new(cancel, Duration::from_secs(5));
            let (run, read) = run_lines(feed, &world, &mut hooks, &stop, &config(1_000)).await;
            (run, read, hooks)
        }
    });
    seam_test_support::wait_until_async(Duration::from_secs(30), "a few commits", async || {
        world.lock().commits.len() >= 3
    })
    .await;
    cancel.cancel();
    let (run, read, hooks) = tokio::time::timeout(WEDGED, handle).await.unwrap().unwrap();
    let report = run.into_result().unwrap();
    // The last commit carries no STATE when none came after the commit before it.
    let last = hooks.commits.iter().rev().find_map(|c| c.1).unwrap();
    assert_eq!(
        report.load.report.total_rows(),
        read,
        "every record read is committed"
    );
    assert_eq!(world.rows() as u64, read);
    // Records 2 to read + 1 were read; the last STATE read is the one after the last multiple of
    // ten among them (or the one before, when the stop came between that record and its STATE):
    // never ahead of the rows, and not behind what was read by more than its ten.
    let last_id = read + 1;
    assert!(
        last % 10 == 0 && last <= last_id && last_id - last <= 10,
        "{last} after {last_id}"
    );
    assert_eq!(world.state().unwrap().bookmark(STREAM, "id"), Some(&json!(last)));
}

/// A stop while the input is silent (a tap waiting on its API, or one that hangs) commits what was
/// read, with the last STATE read, without waiting for more input or for the stop's grace: a line
/// the tap had only half written is not loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_input_is_silent_commits_what_was_read() {
    let world = std::sync::Arc::new(World::default());
    let (ours, theirs) = UnixStream::pair().unwrap();
    let cancel = CancellationToken::new();
    let progress = Progress::default();
    let handle = tokio::spawn({
        let (world, cancel, progress) = (world.clone(), cancel.clone(), progress.clone());
        async move {
            let feed = LinesFeed::new(ours);
            // A grace longer than the test waits for the run: the run must not need it.
            let stop = Stop::new(cancel, 4 * WEDGED);
            let config = config(1_000);
            let mut hooks = Recorder::default();
            let run = pipeline::run_feed(feed, opener(&world), &mut hooks, &progress, &stop, &config).await;
            (run, hooks)
        }
    });
    let mut tap = &theirs;
    let half = record(12);
    let text = stream(10) + &record(11) + "\n" + &half[..half.len() / 2];
    std::io::Write::write_all(&mut tap, text.as_bytes()).unwrap();
    // The eleven records reach the loader; the input then stays open and silent.
    seam_test_support::wait_until_async(Duration::from_secs(30), "the records to be staged", async || {
        progress.snapshot().records_total == 11
    })
    .await;
    assert!(!handle.is_finished() && world.lock().commits.is_empty());
    cancel.cancel();
    let (run, hooks) = tokio::time::timeout(WEDGED, handle)
        .await
        .expect("the stopped run waits neither for the silent input nor for its grace")
        .unwrap();
    let report = run.into_result().unwrap();
    assert_eq!(report.load.report.total_rows(), 11);
    assert_eq!(
        world.rows(),
        11,
        "every record read is committed, the half line is not"
    );
    assert_eq!(hooks.commits, vec![(11, Some(10))]);
    assert_eq!(world.state().unwrap().bookmark(STREAM, "id"), Some(&json!(10)));
    drop(theirs);
}

/// A bad line from a tap that then stays silent (its stdout open) fails the run at once: the run
/// waits neither for more input nor for a stop's grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_from_a_silent_tap_fails_the_run_at_once() {
    let world = World::default();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut tap = &theirs;
    let text = stream(3) + "{\"type\":\"RECORD\",\n";
    std::io::Write::write_all(&mut tap, text.as_bytes()).unwrap();
    // A grace longer than the test waits for the run: the run must not need it.
    let stop = Stop::new(CancellationToken::new(), 4 * WEDGED);
    let (run, _) = tokio::time::timeout(
        WEDGED,
        run_lines(
            LinesFeed::new(ours),
            &world,
            &mut Recorder::default(),
            &stop,
            &config(1_000),
        ),
    )
    .await
    .expect("the failed run does not wait on its silent input");
    let err = run.into_result().unwrap_err();
    assert!(
        err.to_string().starts_with("line 5: not a valid Singer message"),
        "{err}"
    );
    assert_eq!(world.rows(), 0);
    drop(theirs);
}
