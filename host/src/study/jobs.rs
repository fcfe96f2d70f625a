//! Several runs of a study at once: each in a process of its own (`qfd-host study FILE --worker I`), with
//! its share of the CPU threads, its output in `study.log` in its run directory, and its result file
//! written as when runs go one by one, so a stopped study continues the same way.
//!
//! Runs that need the same shared stage (the full-precision model, a teacher) do not train it twice:
//! [`crate::train::run::train_stage`] holds a lock (`train.lock` in the stage's directory) while it trains, and a second
//! process waits for it, then reuses the finished stage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::run::{done, Measure, RunResult};
use super::RunSpec;

/// The name of a worker's log in its run directory.
pub const LOG_FILE: &str = "study.log";

/// Why a parallel study stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A worker process could not be started.
    #[error("cannot start a worker process for {label}: {source}")]
    Spawn {
        /// The run.
        label: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A worker failed; its log says why.
    #[error("{label} failed (its log, {}, ends with:\n{tail})", log.display())]
    Failed {
        /// The run.
        label: String,
        /// Its log.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
}

/// A run being trained by a worker.
struct Worker {
    child: Child,
    index: usize,
    log: PathBuf,
    started: Instant,
}

/// CPU threads for each of `jobs` workers on this machine: an equal share, at least one.
pub fn threads_per_job(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / jobs.max(1)).max(1)
}

/// Trains the runs `todo` (indices into `runs`, the plan of `study_file`) with up to `jobs` workers at a
/// time, each given `worker_args` as well; `report` is called with each finished run and its result. After a failure no new run starts; the
/// ones running finish, then the first failure is returned.
pub fn run_parallel(
    study_file: &Path,
    runs: &[RunSpec],
    todo: &[usize],
    jobs: usize,
    worker_args: &[&str],
    measure: Measure<'_>,
    mut report: impl FnMut(&RunSpec, &RunResult),
) -> Result<(), JobsError> {
    let exe =
        std::env::current_exe().map_err(|source| JobsError::Spawn { label: "the study".into(), source })?;
    let threads = threads_per_job(jobs);
    let mut queue = todo.iter().copied();
    let mut running: Vec<Worker> = Vec::new();
    let mut failure = None;
    loop {
        while failure.is_none() && running.len() < jobs {
            let Some(index) = queue.next() else { break };
            let run = &runs[index];
            let worker = spawn(&exe, study_file, index, threads, worker_args, run)?;
            eprintln!("started  {}  (log {})", run.label(), worker.log.display());
            running.push(worker);
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut i = 0;
        while i < running.len() {
            let status = running[i]
                .child
                .try_wait()
                .map_err(|source| JobsError::Spawn { label: runs[running[i].index].label(), source })?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let worker = running.swap_remove(i);
            let run = &runs[worker.index];
            match done(run, measure).filter(|_| status.success()) {
                Some(result) => report(run, &result),
                None => {
                    eprintln!(
                        "failed   {} after {:.0} s (log {})",
                        run.label(),
                        worker.started.elapsed().as_secs_f64(),
                        worker.log.display()
                    );
                    failure.get_or_insert(JobsError::Failed {
                        label: run.label(),
                        tail: log_tail(&worker.log, 15),
                        log: worker.log,
                    });
                }
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Starts the worker of run `index`, its output going to the log in its run directory.
fn spawn(
    exe: &Path,
    study_file: &Path,
    index: usize,
    threads: usize,
    worker_args: &[&str],
    run: &RunSpec,
) -> Result<Worker, JobsError> {
    let spawn_err = |source| JobsError::Spawn { label: run.label(), source };
    let dir = run.dir();
    std::fs::create_dir_all(&dir).map_err(spawn_err)?;
    let log = dir.join(LOG_FILE);
    let file = std::fs::File::create(&log).map_err(spawn_err)?;
    let child = Command::new(exe)
        .arg("study")
        .arg(study_file)
        .args(["--worker", &index.to_string(), "--threads", &threads.to_string()])
        .args(worker_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(spawn_err)?;
    Ok(Worker { child, index, log, started: Instant::now() })
}

/// The last `lines` lines of a log (progress bars' carriage returns folded), or a note that it is unreadable.
fn log_tail(log: &Path, lines: usize) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let text = text.replace('\r', "\n");
            let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            kept[kept.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}
