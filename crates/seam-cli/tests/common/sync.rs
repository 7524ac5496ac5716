//! `seam sync` as a process: started, watched through its progress lines, stopped or killed, and
//! waited for (always within a bound).

use super::seam;
use super::warehouse::Warehouse;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a `seam sync` run that the test lets finish may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(240);

/// A `seam sync` in progress; its stderr is read line by line on a thread (so the pipe never
/// fills) and kept for the test to look at while it runs.
#[derive(Debug)]
pub struct RunningSync {
    pub child: Child,
    stderr: JoinHandle<String>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RunningSync {
    /// `seam sync --plain` from `config` into `wh`, committing every `batch` records, with
    /// `catalog` when given.
    pub fn start(config: &Path, wh: &Warehouse, batch: usize, catalog: Option<&Path>) -> RunningSync {
        let mut cmd = seam();
        cmd.args([
            "sync",
            "--plain",
            "--schema",
            wh.schema(),
            "--max-batch-records",
            &batch.to_string(),
        ])
        .arg("--config")
        .arg(config)
        .arg("--destination")
        .arg(wh.destination())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(c) = catalog {
            cmd.arg("--catalog").arg(c);
        }
        let mut child = cmd.spawn().unwrap();
        let pipe = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
            sink.lock().unwrap().join("\n")
        });
        RunningSync { child, stderr, lines }
    }

    /// Rows committed so far, as the latest progress line says (`…, N rows committed`).
    pub fn rows_committed(&self) -> u64 {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .rev()
            .find_map(|l| {
                let head = l.strip_suffix(" rows committed")?;
                head.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the exit (at most `limit`: a run that hangs is killed and fails the test);
    /// returns how it ended and its stderr.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let exited =
            seam_test_support::try_wait_for(limit, "seam sync to exit", || self.child.try_wait().unwrap());
        match exited {
            Ok(status) => (status, self.stderr.join().unwrap()),
            Err(timed_out) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{timed_out}: {}", self.stderr.join().unwrap());
            }
        }
    }
}

/// Runs `seam sync` to its end (off the async runtime, within [`RUN_LIMIT`]).
pub async fn sync_to_end(config: &Path, wh: &Arc<Warehouse>, batch: usize) -> (ExitStatus, String) {
    let (c, w) = (config.to_owned(), wh.clone());
    tokio::task::spawn_blocking(move || RunningSync::start(&c, &w, batch, None).finish(RUN_LIMIT))
        .await
        .unwrap()
}
