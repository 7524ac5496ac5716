//! The pipeline, the one source → destination driver of `seam sync` and the service's jobs: resume
//! and reset, hooks and progress, and what cannot wedge a run (a source that ignores the stop, one
//! that keeps sending after it, a commit-retry wait, panics).

use async_trait::async_trait;
use seam_core::catalog::CatalogEntry;
use seam_core::{
    Catalog, Classify, Destination, DestinationError, ErrorKind, JsonType, ReplicationMethod, RetryPolicy,
    Schema, State,
};
use seam_runtime::loader::{Commit, LoadError, LoaderConfig};
use seam_runtime::pipeline::{
    self, NoHooks, Phase, PipelineConfig, PipelineError, PipelineHooks, PipelineRun, Progress, Stop,
    PART_LOADER, PART_SOURCE,
};
use seam_test_support::doubles::{lock, Faults, MemDestination, MemWarehouse};
use seam_test_support::fakes::{FakeSource, PAGE, PANIC_TEXT};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "s";
/// How long a test lets a stopped run take before calling it wedged: the runs below have a grace of
/// half a second; a wedged run never returns.
const WEDGED: Duration = Duration::from_secs(30);

/// The one stream the runs read, keyed by `id`.
fn catalog() -> Catalog {
    let schema = Schema::object([("id".to_string(), Schema::nullable(JsonType::Integer))]);
    let mut entry = CatalogEntry::new(STREAM, schema, &["id"], ReplicationMethod::FullTable, None);
    entry.set_selected(true);
    Catalog { streams: vec![entry] }
}

/// A source of `n` pages of [`PAGE`] records, resuming after the `id` bookmark.
fn pages(n: u64) -> FakeSource {
    FakeSource::new("works").with_records(n * PAGE)
}

/// A shared in-memory warehouse, and the faults the destinations the runs open over it inject.
#[derive(Debug, Default)]
struct World {
    warehouse: Arc<Mutex<MemWarehouse>>,
    faults: Faults,
}

impl World {
    fn failing(faults: Faults) -> World {
        World {
            faults,
            ..World::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemWarehouse> {
        lock(&self.warehouse)
    }

    /// Rows of the stream's table.
    fn rows(&self) -> usize {
        self.lock().rows(SCHEMA, STREAM)
    }

    /// The committed state.
    fn state(&self) -> Option<State> {
        self.lock().states.get(SCHEMA).cloned()
    }
}

/// The warehouse schema the runs load into.
const SCHEMA: &str = "pipeline";

fn opener(world: &World) -> impl FnOnce() -> Result<Box<dyn Destination>, DestinationError> + Send + 'static {
    let destination = MemDestination::new(SCHEMA, &world.warehouse).with_faults(world.faults.clone());
    move || Ok(Box::new(destination) as Box<dyn Destination>)
}

fn config(batch: usize) -> PipelineConfig {
    PipelineConfig {
        loader: LoaderConfig {
            max_batch_records: batch,
            retry: RetryPolicy::fast_for_tests(),
            ..LoaderConfig::default()
        },
        stop_grace: Duration::from_millis(500),
        ..PipelineConfig::default()
    }
}

/// What the hooks saw.
#[derive(Debug, Default)]
struct Recorder {
    started: Vec<(Option<u64>, bool)>,
    /// (rows, state's position) per commit.
    commits: Vec<(u64, Option<u64>)>,
    progress: Option<Progress>,
    /// Rows committed as the progress counted them when each commit reached the hooks.
    progress_rows: Vec<u64>,
}

fn pos_of(state: &Value) -> Option<u64> {
    state.pointer("/bookmarks/s/id").and_then(Value::as_u64)
}

#[async_trait]
impl PipelineHooks for Recorder {
    async fn started(&mut self, state: &State, reset: bool) {
        let pos = state.bookmark(STREAM, "id").and_then(Value::as_u64);
        self.started.push((pos, reset));
    }

    async fn committed(&mut self, commit: Commit<'_>) {
        self.commits
            .push((commit.report.total_rows(), commit.state.and_then(pos_of)));
        if let Some(p) = &self.progress {
            self.progress_rows.push(p.snapshot().rows_committed);
        }
    }
}

async fn run(
    source: FakeSource,
    world: &World,
    hooks: &mut (dyn PipelineHooks + '_),
    progress: &Progress,
    stop: &Stop,
    config: &PipelineConfig,
) -> PipelineRun {
    pipeline::run(
        Arc::new(source),
        catalog(),
        opener(world),
        hooks,
        progress,
        stop,
        config,
    )
    .await
}

/// Runs `source` with a stop asked for once `ready` holds for its progress; returns the run and how
/// long after the stop it returned. Fails, rather than hangs, when the run is wedged.
async fn stopped_run(
    source: FakeSource,
    world: &Arc<World>,
    config: PipelineConfig,
    ready: impl Fn(&pipeline::ProgressSnapshot) -> bool,
) -> (PipelineRun, Duration) {
    let progress = Progress::default();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn({
        let (world, progress, cancel) = (Arc::clone(world), progress.clone(), cancel.clone());
        async move {
            let stop = Stop::new(cancel, config.stop_grace);
            run(source, &world, &mut NoHooks, &progress, &stop, &config).await
        }
    });
    seam_test_support::wait_until_async(
        Duration::from_secs(30),
        "the run to get where it is stopped",
        async || ready(&progress.snapshot()),
    )
    .await;
    let stopped = Instant::now();
    cancel.cancel();
    let run = tokio::time::timeout(WEDGED, handle)
        .await
        .unwrap_or_else(|_| panic!("the run did not end within {WEDGED:?} of the stop"))
        .unwrap();
    (run, stopped.elapsed())
}

/// The error of a run whose source (or feed) was abandoned after the stop's grace; fails otherwise.
fn source_abandoned(run: PipelineRun) -> PipelineError {
    let err = run.load.unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::StopTimedOut {
                part: PART_SOURCE,
                ..
            }
        ) && err.is_stop(),
        "{err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_resumes_and_resets_with_hooks_and_progress() {
    let world = World::default();
    let progress = Progress::default();
    let mut hooks = Recorder {
        progress: Some(progress.clone()),
        ..Recorder::default()
    };
    let stop = Stop::new(CancellationToken::new(), Duration::from_secs(1));
    // Commits every 15 records: each STATE is made durable with, or after, the rows it covers.
    let report = run(pages(3), &world, &mut hooks, &progress, &stop, &config(15))
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.read.records[STREAM], 30);
    assert_eq!(report.load.report.total_rows(), 30);
    assert_eq!(hooks.started, vec![(None, false)]);
    assert_eq!(
        hooks.commits,
        vec![(15, Some(10)), (15, Some(20)), (0, Some(30))],
        "the last STATE is committed at the end, after the rows it covers"
    );
    assert_eq!(
        hooks.progress_rows,
        vec![15, 30, 30],
        "progress counts a commit before the hooks see it"
    );
    let p = progress.snapshot();
    assert_eq!((p.records_total, p.records[STREAM]), (30, 30));
    assert_eq!((p.rows_committed, p.commits, p.phase), (30, 3, Phase::Finishing));
    assert_eq!(p.current_stream.as_deref(), Some(STREAM));

    // The next run resumes from the committed state: nothing is read again.
    let mut hooks = Recorder::default();
    let report = run(
        pages(4),
        &world,
        &mut hooks,
        &Progress::default(),
        &stop,
        &config(15),
    )
    .await
    .into_result()
    .unwrap();
    assert_eq!(hooks.started, vec![(Some(30), false)]);
    assert_eq!(report.started_from.bookmark(STREAM, "id"), Some(&json!(30)));
    assert_eq!(report.read.records[STREAM], 10, "only the new page");

    // A reset commits the empty state before anything is read, and reads everything again.
    let mut hooks = Recorder::default();
    let reset = PipelineConfig {
        reset_state: true,
        ..config(100)
    };
    let commits_before = world.lock().commits.len();
    let report = run(pages(2), &world, &mut hooks, &Progress::default(), &stop, &reset)
        .await
        .into_result()
        .unwrap();
    assert_eq!(hooks.started, vec![(None, true)]);
    assert_eq!(report.read.records[STREAM], 20);
    assert_eq!(world.lock().commits[commits_before].state, Some(State::default()));
    assert_eq!(world.state().unwrap().bookmark(STREAM, "id"), Some(&json!(20)));
}

/// A source that ignores the stop and never returns (`seam sync` on Ctrl-C waited for it forever):
/// the run ends within the grace, nothing it sent after the last commit is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_ignores_the_stop_is_abandoned_after_the_grace() {
    let world = Arc::new(World::default());
    let (run, took) = stopped_run(FakeSource::new("stuck"), &world, config(1_000), |p| {
        p.records_total == PAGE
    })
    .await;
    let err = source_abandoned(run);
    assert!(
        err.to_string()
            .contains("the source did not stop within 0.5 s of the stop"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the run ended {took:?} after the stop"
    );
    assert_eq!(world.rows(), 0, "records after the last commit are not kept");
    assert_eq!(world.state(), None);
}

/// A source that ignores the stop and keeps sending: it is abandoned after the grace all the same,
/// and blamed (not the warehouse call busy loading what it sent when the grace ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_keeps_sending_after_the_stop_is_abandoned_after_the_grace() {
    let world = Arc::new(World::default());
    let (run, took) = stopped_run(FakeSource::new("flood"), &world, config(20_000), |p| {
        p.records_total > 5_000
    })
    .await;
    source_abandoned(run);
    assert!(
        took < Duration::from_secs(10),
        "the run ended {took:?} after the stop"
    );
}

/// Whether a [`Stuck`] destination's commit is waiting, was interrupted, and has returned.
#[derive(Debug, Default)]
struct StuckCommit {
    waiting: bool,
    interrupted: bool,
    returned: bool,
}

#[derive(Debug, Default)]
struct StuckShared {
    commit: Mutex<StuckCommit>,
    wake: std::sync::Condvar,
}

impl seam_core::Interrupt for StuckShared {
    fn interrupt(&self) {
        self.commit.lock().unwrap().interrupted = true;
        self.wake.notify_all();
    }
}

/// A warehouse whose commit waits until it is interrupted (a PostgreSQL commit behind another
/// session's lock), then fails.
struct Stuck {
    inner: MemDestination,
    shared: Arc<StuckShared>,
}

impl Stuck {
    /// A stuck warehouse over `world`'s, and what its commit is doing.
    fn new(world: &World) -> (Stuck, Arc<StuckShared>) {
        let shared = Arc::new(StuckShared::default());
        let stuck = Stuck {
            inner: MemDestination::new(SCHEMA, &world.warehouse),
            shared: Arc::clone(&shared),
        };
        (stuck, shared)
    }
}

impl Destination for Stuck {
    fn check(&mut self) -> Result<(), DestinationError> {
        self.inner.check()
    }
    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        self.inner.committed_state()
    }
    fn ensure_table(&mut self, schema: &seam_core::SchemaMessage) -> Result<(), DestinationError> {
        self.inner.ensure_table(schema)
    }
    fn write_batch(
        &mut self,
        stream: &str,
        records: &[seam_core::RecordMessage],
    ) -> Result<(), DestinationError> {
        self.inner.write_batch(stream, records)
    }
    fn activate_version(&mut self, stream: &str, version: i64) -> Result<(), DestinationError> {
        self.inner.activate_version(stream, version)
    }
    fn commit(&mut self, _state: Option<&State>) -> Result<seam_core::CommitReport, DestinationError> {
        let mut c = self.shared.commit.lock().unwrap();
        c.waiting = true;
        while !c.interrupted {
            c = self.shared.wake.wait(c).unwrap();
        }
        c.returned = true;
        Err(DestinationError::new(
            ErrorKind::Internal,
            "canceling statement due to user request",
        ))
    }
    fn interrupter(&self) -> Option<Arc<dyn seam_core::Interrupt>> {
        Some(Arc::clone(&self.shared) as Arc<dyn seam_core::Interrupt>)
    }
}

/// Waits for the [`Stuck`] commit to be interrupted and return, then checks that nothing of its
/// batch, nor its state, was committed.
async fn interrupted_and_nothing_committed(shared: &Arc<StuckShared>, world: &World) {
    let returned = Arc::clone(shared);
    seam_test_support::wait_until_async(
        Duration::from_secs(10),
        "the abandoned commit to be interrupted and return",
        async || returned.commit.lock().unwrap().returned,
    )
    .await;
    assert_eq!(world.rows(), 0, "nothing of the interrupted batch was committed");
    assert_eq!(world.state(), None);
}

/// A commit that waits on the warehouse past the stop's grace is abandoned, and interrupted as the
/// run ends: it does not go on holding the warehouse (a PostgreSQL commit kept its locks, and its
/// place in the lock queue, until the lock it waited for went away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_call_abandoned_after_the_stop_is_interrupted() {
    let world = World::default();
    let (destination, shared) = Stuck::new(&world);
    let config = config(15);
    let progress = Progress::default();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn({
        let (progress, cancel, config) = (progress.clone(), cancel.clone(), config.clone());
        async move {
            let stop = Stop::new(cancel, config.stop_grace);
            pipeline::run(
                Arc::new(pages(3)),
                catalog(),
                move || Ok(Box::new(destination) as Box<dyn Destination>),
                &mut NoHooks,
                &progress,
                &stop,
                &config,
            )
            .await
        }
    });
    let waiting = Arc::clone(&shared);
    seam_test_support::wait_until_async(Duration::from_secs(30), "the first commit to wait", async || {
        waiting.commit.lock().unwrap().waiting
    })
    .await;
    assert!(
        progress.snapshot().warehouse_call_since.is_some(),
        "the progress says the run waits on the warehouse"
    );
    cancel.cancel();
    let run = tokio::time::timeout(WEDGED, handle)
        .await
        .expect("the run ends after the grace")
        .unwrap();
    let err = run.load.unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::StopTimedOut {
                part: pipeline::PART_WAREHOUSE,
                ..
            }
        ),
        "{err}"
    );
    interrupted_and_nothing_committed(&shared, &world).await;
    assert_eq!(
        progress.snapshot().warehouse_call_since,
        None,
        "and no longer once it ended"
    );
}

/// A warehouse call that goes unanswered past the limit ends the run without a stop: a server
/// that stopped answering does not hold the run (and, in the service, its integration) for good.
/// The call is interrupted, nothing of its batch is committed, and the error says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_call_unanswered_past_the_limit_ends_the_run() {
    let world = World::default();
    let (destination, shared) = Stuck::new(&world);
    let config = PipelineConfig {
        warehouse_call_limit: Duration::from_secs(2),
        ..config(15)
    };
    let progress = Progress::default();
    let started = Instant::now();
    let run = tokio::time::timeout(
        WEDGED,
        pipeline::run(
            Arc::new(pages(3)),
            catalog(),
            move || Ok(Box::new(destination) as Box<dyn Destination>),
            &mut NoHooks,
            &progress,
            &Stop::new(CancellationToken::new(), config.stop_grace),
            &config,
        ),
    )
    .await
    .expect("the run ends once the call is past its limit");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the call had its limit"
    );
    let err = run.load.unwrap_err();
    assert!(
        matches!(err, PipelineError::WarehouseUnanswered { limit } if limit == Duration::from_secs(2)),
        "{err}"
    );
    assert!(err.to_string().contains("did not answer for 2 s"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Transient, "the next run tries again");
    interrupted_and_nothing_committed(&shared, &world).await;
}

/// A warehouse that answers "rate limited, retry in a minute": the stop ends the retry wait at once,
/// nothing of the batch is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_a_commit_retry_wait() {
    let world = Arc::new(World::failing(Faults {
        fail_with: Some(ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        }),
        ..Faults::default()
    }));
    let mut config = config(15);
    config.loader.retry = RetryPolicy::default();
    // The stop comes once the first commit failed and its retry wait began.
    let failed = Arc::clone(&world);
    let (run, took) = stopped_run(pages(3), &world, config, move |_| {
        failed.lock().failed_commits > 0
    })
    .await;
    let err = run.load.unwrap_err();
    assert!(
        matches!(err, PipelineError::Load(LoadError::Stopped { .. })) && err.is_stop(),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the run ended {took:?} after the stop"
    );
    assert_eq!(world.rows(), 0);
}

/// A panic in the source's read or in the destination ends the run with an error naming the part
/// (`seam sync` unwound with the source's panic); what was committed before stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_source_or_the_destination_ends_the_run_naming_it() {
    let world = World::default();
    let stop = Stop::new(CancellationToken::new(), Duration::from_millis(500));
    let run = run(
        FakeSource::new("panicread"),
        &world,
        &mut NoHooks,
        &Progress::default(),
        &stop,
        &config(5),
    )
    .await;
    assert!(run.load.is_ok(), "{:?}", run.load);
    let err = run.into_result().unwrap_err();
    let PipelineError::Panicked { part, message } = &err else {
        panic!("not a panic: {err}")
    };
    assert_eq!((*part, message.as_str()), (PART_SOURCE, PANIC_TEXT));
    assert!(err.to_string().starts_with("the source panicked: "), "{err}");
    assert_eq!(world.rows(), 10, "the page sent before the panic is committed");

    let world = World::failing(Faults {
        panic_with: Some(PANIC_TEXT.to_owned()),
        ..Faults::default()
    });
    let run = self::run(
        pages(2),
        &world,
        &mut NoHooks,
        &Progress::default(),
        &stop,
        &config(5),
    )
    .await;
    let err = run.into_result().unwrap_err();
    assert!(
        matches!(&err, PipelineError::Panicked { part: PART_LOADER, message } if message == PANIC_TEXT),
        "{err}"
    );
}

mod lines;
