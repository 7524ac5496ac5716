//! The loader: ordering, batching, state after commit, retries, bad input.

use seam_core::singer::MessageReader;
use seam_core::{Destination, ErrorKind, RetryPolicy};
use seam_runtime::loader::{self, Commit, LoadError, LoaderConfig, Numbered};
use seam_test_support::doubles::{Faults, MemCommit, MemDestination, MemWarehouse};
use serde_json::{json, Value};

/// An in-memory destination of its own warehouse.
fn fake() -> MemDestination {
    MemDestination::new("loader", &MemWarehouse::shared())
}

/// The same, failing its next commits with `kinds`.
fn failing(kinds: Vec<ErrorKind>) -> MemDestination {
    fake().with_faults(Faults {
        fail_next: kinds,
        ..Faults::default()
    })
}

fn lines(text: &str) -> impl Iterator<Item = Result<Numbered, seam_core::singer::ReadError>> + '_ {
    let mut r = MessageReader::new(text.as_bytes());
    std::iter::from_fn(move || r.next_message())
}

fn config(records: usize) -> LoaderConfig {
    LoaderConfig {
        max_batch_records: records,
        retry: RetryPolicy::fast_for_tests(),
        ..LoaderConfig::default()
    }
}

const SCHEMA: &str = r#"{"type":"SCHEMA","stream":"s","key_properties":["id"],"schema":{"type":"object"}}"#;

fn record(i: u64) -> String {
    format!(r#"{{"type":"RECORD","stream":"s","record":{{"id":{i}}}}}"#)
}

fn state(i: u64) -> String {
    format!(r#"{{"type":"STATE","value":{{"bookmarks":{{"s":{{"pos":{i}}}}}}}}}"#)
}

#[test]
fn states_are_emitted_only_after_the_rows_before_them_commit() {
    let mut text = format!("{SCHEMA}\n");
    for i in 1..=10 {
        text += &format!("{}\n", record(i));
        if i % 2 == 0 {
            text += &format!("{}\n", state(i));
        }
    }
    let mut dest = fake();
    let mut emitted: Vec<(Value, u64)> = Vec::new();
    let committed_rows = std::cell::Cell::new(0u64);
    let mut on_commit = |c: Commit<'_>| {
        committed_rows.set(committed_rows.get() + c.report.total_rows());
        if let Some(s) = c.state {
            emitted.push((s.clone(), committed_rows.get()));
        }
        Ok(())
    };
    let summary = loader::run(&mut dest, lines(&text), &mut on_commit, &config(3)).unwrap();
    assert_eq!(summary.report.total_rows(), 10);
    // Batches of 3 records: commits after records 3, 6, 9 and at the end.
    assert_eq!(
        dest.warehouse()
            .commits
            .iter()
            .map(MemCommit::total)
            .collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    // Each emitted state covers only committed rows: pos <= rows committed when it was emitted.
    for (s, rows) in &emitted {
        let pos = s["bookmarks"]["s"]["pos"].as_u64().unwrap();
        assert!(
            pos <= *rows,
            "state {pos} emitted with only {rows} rows committed"
        );
    }
    assert_eq!(
        emitted.last().unwrap().0,
        json!({"bookmarks": {"s": {"pos": 10}}})
    );
    assert_eq!(summary.last_state, Some(json!({"bookmarks": {"s": {"pos": 10}}})));
    assert_eq!(summary.per_table()["s"].rows, 10);
}

#[test]
fn a_record_before_its_schema_is_an_error_naming_the_line() {
    let text = format!(
        "{SCHEMA}\n{}\n{}\n{}\n",
        record(1),
        state(1),
        r#"{"type":"RECORD","stream":"other","record":{}}"#
    );
    let mut dest = fake();
    let err = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(100)).unwrap_err();
    assert!(matches!(err, LoadError::BeforeSchema { line: 4, .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("line 4: RECORD for stream \"other\" before its SCHEMA"),
        "{err}"
    );
    assert!(
        dest.warehouse().commits.is_empty(),
        "nothing of the broken batch is committed"
    );
    assert_eq!(dest.state(), None, "the bookmark stays put");
}

#[test]
fn a_malformed_line_stops_the_load_and_keeps_the_last_committed_bookmark() {
    let text = format!(
        "{SCHEMA}\n{}\n{}\n{}\n{}\n{{\"type\":\"RECORD\",\n{}\n",
        record(1),
        record(2),
        state(2),
        record(3),
        state(3)
    );
    let mut dest = fake();
    let err = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(2)).unwrap_err();
    assert!(err.to_string().starts_with("line 6:"), "{err}");
    // Records 1-2 were a full batch, committed with no state (state 2 arrived after the commit);
    // record 3 and state 2 were in the broken batch: not committed.
    assert_eq!(dest.warehouse().committed_records("s"), 2);
    assert_eq!(dest.state(), None);
    assert!(dest.staged() == 0, "the broken batch was discarded");
}

#[test]
fn transient_commit_failures_are_retried_fatal_ones_are_not() {
    let text = format!("{SCHEMA}\n{}\n{}\n", record(1), state(1));
    let mut dest = failing(vec![ErrorKind::Transient, ErrorKind::Transient]);
    let mut emitted = 0;
    loader::run(
        &mut dest,
        lines(&text),
        &mut |c| {
            emitted += usize::from(c.state.is_some());
            Ok(())
        },
        &config(100),
    )
    .unwrap();
    assert_eq!(emitted, 1);
    assert!(dest.state().is_some());

    let mut dest = failing(vec![ErrorKind::Transient; 10]);
    let err = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(100)).unwrap_err();
    assert!(matches!(err, LoadError::Destination { attempts: 6, .. }), "{err}");
    assert!(err.to_string().contains("bookmark did not move"), "{err}");
    assert_eq!(dest.state(), None);

    let mut dest = failing(vec![ErrorKind::Schema]);
    let err = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(100)).unwrap_err();
    assert!(matches!(err, LoadError::Destination { attempts: 1, .. }), "{err}");
}

/// What one run of `text` into `dest` committed and emitted: each commit's records per stream and
/// state, and each emitted state with the rows committed when it was emitted.
fn run_recorded(mut dest: MemDestination, text: &str, records: usize) -> (Vec<MemCommit>, Vec<(Value, u64)>) {
    let mut emitted = Vec::new();
    let mut rows = 0;
    loader::run(
        &mut dest,
        lines(text),
        &mut |c: Commit<'_>| {
            rows += c.report.total_rows();
            if let Some(s) = c.state {
                emitted.push((s.clone(), rows));
            }
            Ok(())
        },
        &config(records),
    )
    .unwrap();
    let commits = dest.warehouse().commits.clone();
    (commits, emitted)
}

/// A destination that commits in the background gets the same commits, with the same states, as
/// one that commits in place, and a state is emitted only after its commit finished: records that
/// arrive while a commit runs go to the next one.
#[test]
fn background_commits_commit_and_report_what_commits_in_place_do() {
    let mut text = format!("{SCHEMA}\n");
    for i in 1..=11 {
        text += &format!("{}\n{}\n", record(i), state(i));
    }
    let (in_place, in_place_states) = run_recorded(fake(), &text, 3);
    let (background, background_states) = run_recorded(fake().in_background(), &text, 3);
    assert_eq!(
        in_place.iter().map(MemCommit::total).collect::<Vec<_>>(),
        vec![3, 3, 3, 2]
    );
    assert_eq!(background, in_place);
    assert_eq!(background_states, in_place_states);
    for (s, rows) in &background_states {
        let pos = s["bookmarks"]["s"]["pos"].as_u64().unwrap();
        assert!(
            pos <= *rows,
            "state {pos} emitted with only {rows} rows committed"
        );
    }
}

/// A background commit that fails is retried alone, with its own state: the records staged while
/// it ran (two streams in turn, so they reach the destination at once) stay for the next commit. A
/// failure that is not retried leaves the last state in place.
#[test]
fn a_failed_background_commit_is_retried_alone() {
    let mut text = format!(
        "{SCHEMA}\n{}\n",
        SCHEMA.replace(r#""stream":"s""#, r#""stream":"t""#)
    );
    for i in 1..=7 {
        let record = record(i);
        let record = if i % 2 == 0 {
            record.replace(r#""stream":"s""#, r#""stream":"t""#)
        } else {
            record
        };
        text += &format!("{record}\n{}\n", state(i));
    }
    let faults = |kinds: Vec<ErrorKind>| Faults {
        fail_next: kinds,
        ..Faults::default()
    };
    let (in_place, in_place_states) = run_recorded(
        fake().with_faults(faults(vec![ErrorKind::Transient; 2])),
        &text,
        3,
    );
    let (background, background_states) = run_recorded(
        fake()
            .with_faults(faults(vec![ErrorKind::Transient; 2]))
            .in_background(),
        &text,
        3,
    );
    assert_eq!(
        in_place.iter().map(MemCommit::total).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    assert_eq!(background, in_place);
    assert_eq!(background_states, in_place_states);

    let mut dest = fake()
        .with_faults(faults(vec![ErrorKind::Schema]))
        .in_background();
    let err = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(3)).unwrap_err();
    assert!(matches!(err, LoadError::Destination { attempts: 1, .. }), "{err}");
    assert_eq!(dest.state(), None);
    assert!(dest.warehouse().commits.is_empty());
}

/// Bad input after a full batch: the commit of that batch, left running in the background, still
/// ends and its state is emitted, as when it committed in place.
#[test]
fn bad_input_after_a_background_commit_still_reports_that_commit() {
    let text = format!(
        "{SCHEMA}\n{}\n{}\n{}\n{}\n{}\n{}\nnot json\n",
        record(1),
        state(1),
        record(2),
        state(2),
        record(3),
        record(4)
    );
    let emitted = |dest: &mut MemDestination| {
        let mut states = Vec::new();
        let err = loader::run(
            dest,
            lines(&text),
            &mut |c: Commit<'_>| {
                states.extend(c.state.cloned());
                Ok(())
            },
            &config(3),
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::Input(_)), "{err}");
        states
    };
    let in_place = emitted(&mut fake());
    assert_eq!(in_place, vec![json!({"bookmarks": {"s": {"pos": 2}}})]);
    let mut dest = fake().in_background();
    assert_eq!(emitted(&mut dest), in_place);
    assert_eq!(dest.warehouse().commits.len(), 1);
}

/// A background commit that has ended is reported at the next message, not when the next batch
/// is full; one still running is reported when the loader has to wait for it.
#[test]
fn an_ended_background_commit_is_reported_at_the_next_message() {
    let mut text = format!("{SCHEMA}\n");
    for i in 1..=7 {
        text += &format!("{}\n{}\n", record(i), state(i));
    }
    // The message count at each report, and the rows it reported.
    let reports = |mut dest: MemDestination| {
        let pushed = std::cell::Cell::new(0);
        let mut reported: Vec<(usize, u64)> = Vec::new();
        let mut on_commit = |c: Commit<'_>| {
            reported.push((pushed.get(), c.report.total_rows()));
            Ok(())
        };
        let mut loader = loader::Loader::new(config(3));
        for item in lines(&text) {
            let (line, message) = item.unwrap();
            pushed.set(pushed.get() + 1);
            loader.push(&mut dest, line, message, &mut on_commit).unwrap();
        }
        loader.finish(&mut dest, &mut on_commit).unwrap();
        reported
    };
    // Message 6 is record 3, which fills the first batch; message 7 is the STATE after it.
    assert_eq!(reports(fake()), vec![(6, 3), (12, 3), (15, 1)]);
    assert_eq!(
        reports(fake().in_background_ending_at_once()),
        vec![(7, 3), (13, 3), (15, 1)]
    );
    assert_eq!(reports(fake().in_background()), vec![(12, 3), (15, 3), (15, 1)]);
}

/// A warehouse that rate-limits every commit for a minute: a stop ends the retry wait at once (the
/// wait used to be a plain sleep of the whole minute, thirty times over), and nothing is committed.
#[test]
fn a_stop_ends_the_commit_retry_wait() {
    let text = format!("{SCHEMA}\n{}\n{}\n", record(1), state(1));
    let mut dest = failing(vec![
        ErrorKind::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(60)),
        };
        30
    ]);
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            stop.cancel();
        })
    };
    let started = std::time::Instant::now();
    let loader = loader::Loader::new(LoaderConfig {
        retry: RetryPolicy::default(),
        ..config(100)
    })
    .stop_on(stop);
    let err = loader::run_with(loader, &mut dest, lines(&text), &mut |_| Ok(())).unwrap_err();
    let took = started.elapsed();
    stopper.join().unwrap();
    assert!(matches!(err, LoadError::Stopped { attempts: 1, .. }), "{err}");
    assert!(err.to_string().contains("bookmark did not move"), "{err}");
    // Generous: the bug waits 60 s before even the second attempt.
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert_eq!(dest.state(), None, "nothing committed");
    assert!(dest.warehouse().commits.is_empty());
}

#[test]
fn feeds_from_std_and_tokio_channels() {
    let msgs: Vec<Numbered> = lines(&format!("{SCHEMA}\n{}\n{}\n", record(1), state(1)))
        .map(Result::unwrap)
        .collect();

    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Numbered, std::io::Error>>(1);
    let feed = msgs.clone();
    let t = std::thread::spawn(move || feed.into_iter().for_each(|m| tx.send(Ok(m)).unwrap()));
    let mut dest = fake();
    let s = loader::run_blocking(&mut dest, rx, &mut |_| Ok(()), &config(100)).unwrap();
    t.join().unwrap();
    assert_eq!(s.report.total_rows(), 1);

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Numbered, std::io::Error>>(1);
    let loader = std::thread::spawn(move || {
        let mut dest = fake();
        loader::run(
            &mut dest,
            loader::tokio_receiver(rx),
            &mut |_| Ok(()),
            &config(100),
        )
        .unwrap()
    });
    rt.block_on(async move {
        for m in msgs {
            tx.send(Ok(m)).await.unwrap();
        }
    });
    assert_eq!(loader.join().unwrap().report.total_rows(), 1);
}

#[test]
fn loads_into_duckdb_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut dest = seam_warehouse::DuckDbDestination::open(&dir.path().join("w.duckdb"), "e2e").unwrap();
    let mut text = format!("{SCHEMA}\n");
    for i in 0..50 {
        text += &format!(r#"{{"type":"RECORD","stream":"s","record":{{"id":{i},"tags":["x","y"]}}}}"#);
        text += "\n";
    }
    text += &format!("{}\n", state(50));
    let s = loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &config(20)).unwrap();
    let per = s.per_table();
    assert_eq!(per["s"].rows, 50);
    assert_eq!(per["s"].subtable_rows, 100);
    assert_eq!(
        dest.committed_state().unwrap().unwrap().bookmark("s", "pos"),
        Some(&json!(50))
    );
}

/// The records per stream of each commit.
fn commit_sizes(dest: &MemDestination) -> Vec<u64> {
    dest.warehouse()
        .commits
        .iter()
        .map(|c| c.records.values().sum())
        .collect()
}

#[test]
fn batches_are_as_large_as_the_destination_asks_unless_the_caller_says() {
    let mut text = format!("{SCHEMA}\n");
    for i in 1..=8 {
        text += &format!("{}\n", record(i));
    }
    // Each record's JSON is `{"id":N}`, 8 bytes: a destination asking for 24 bytes commits every
    // third record.
    let by_bytes = |records: usize, bytes: Option<usize>| LoaderConfig {
        max_batch_bytes: bytes,
        ..config(records)
    };
    let mut dest = fake().with_batch_bytes(24);
    loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &by_bytes(100, None)).unwrap();
    assert_eq!(commit_sizes(&dest), vec![3, 3, 2]);

    // The caller's own limit wins over the destination's.
    let mut dest = fake().with_batch_bytes(24);
    loader::run(
        &mut dest,
        lines(&text),
        &mut |_| Ok(()),
        &by_bytes(100, Some(1_000)),
    )
    .unwrap();
    assert_eq!(commit_sizes(&dest), vec![8]);
    let mut dest = fake().with_batch_bytes(24);
    loader::run(&mut dest, lines(&text), &mut |_| Ok(()), &by_bytes(100, Some(16))).unwrap();
    assert_eq!(commit_sizes(&dest), vec![2, 2, 2, 2]);
}
