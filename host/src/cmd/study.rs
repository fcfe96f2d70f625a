use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use qfd_host::args::EngineArgs;
use qfd_host::eval::EvalEngine;
use qfd_host::study::jobs::{run_parallel, threads_per_job};
use qfd_host::study::report::{write_report, ProfileRuns};
use qfd_host::study::run::{awaiting_board, done, run_one, Measure, RunResult};
use qfd_host::study::{plan, StudyConfig};

const DEFAULT_REPORT: &str = "docs/results/fashion-mnist.md";

/// Run a study: the paper's comparison of methods x bit-widths x seeds, written up as a report.
///
/// Each study file (TOML; see studies/quick.toml) names architectures, methods (fp, qat, logit-kd,
/// feature-kd, qfd-f1, qfd-f4, qfd-f8, bwrf, bwrf-qfd-f1, bwrf-qfd-f4, bwrf-qfd-f8), bit-widths, seeds, a
/// lambda ablation, a block-replacement ablation (studies/bwrf.toml), the board that checks every integer
/// model on a fixed test subset, and the training options. Every run is trained, exported, run on
/// the board, and recorded in study-result.json in its run directory; runs already done are skipped, and a
/// stopped study continues where it stopped. Then the report (Markdown, with PNG plots beside it) is written
/// from every study file given, one section per profile.
///
/// With --jobs N, N runs train at once, each in its own process with 1/N of the CPU threads (on a GPU they
/// share it); each run's output goes to study.log in its run directory. A shared full-precision model or
/// teacher is trained once: a run that needs one another process is training waits for it.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Study files, e.g. studies/quick.toml studies/full.toml.
    #[arg(required = true, value_name = "STUDY.toml")]
    studies: Vec<PathBuf>,
    /// The report to write; its plots go into a directory of the same name without `.md`.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_REPORT)]
    report: PathBuf,
    /// Only write the report from the runs already done; train nothing.
    #[arg(long)]
    report_only: bool,
    /// Train a study marked requires-gpu even without a CUDA GPU (it will be slow).
    #[arg(long)]
    allow_cpu: bool,
    /// List the runs, done or to do, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Train and export without the board checks (on a machine without cargo or QEMU, such as a rented
    /// GPU); a later run without this flag only adds the board checks.
    #[arg(long)]
    skip_device: bool,
    /// What measures each integer model's test accuracy (the result is the same with either engine).
    #[command(flatten)]
    engine: EngineArgs,
    /// Runs trained at once, each in a process of its own.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Internal: train only run I of the plan (what each process of --jobs does).
    #[arg(long, hide = true, value_name = "I")]
    worker: Option<usize>,
    /// Internal: CPU threads of a --worker process.
    #[arg(long, hide = true, value_name = "T")]
    threads: Option<usize>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let studies: Vec<(PathBuf, StudyConfig)> = self
            .studies
            .iter()
            .map(|p| StudyConfig::from_file(p).map(|s| (p.clone(), s)))
            .collect::<Result<_, _>>()?;
        let skip = self.skip_device;
        let threads = self.threads.unwrap_or_else(|| EvalEngine::default().threads());
        let engine = self.engine.engine(threads)?;
        if let Some(index) = self.worker {
            return worker(&studies, index, self.threads, measure(&studies[0].1, skip, engine));
        }
        let started = Instant::now();
        for (path, study) in &studies {
            let runs = plan(study);
            let todo: Vec<_> =
                runs.iter().filter(|r| done(r, measure(study, skip, engine)).is_none()).collect();
            eprintln!(
                "study {} ({}): {} runs, {} done, {} to do",
                study.profile,
                path.display(),
                runs.len(),
                runs.len() - todo.len(),
                todo.len()
            );
            if self.dry_run {
                for run in &runs {
                    let state = if todo.contains(&run) { "to do" } else { "done " };
                    eprintln!("  {state}  {}  ({})", run.label(), run.dir().display());
                }
                continue;
            }
            if self.report_only || todo.is_empty() {
                continue;
            }
            let must_train = todo.iter().any(|r| awaiting_board(r, measure(study, skip, engine)).is_none());
            if must_train && study.requires_gpu && !self.allow_cpu && !tch::Cuda::is_available() {
                eprintln!(
                    "study {}: skipped: it requires a CUDA GPU and none is usable here (--allow-cpu trains it \
                     on the CPU anyway); its section of the report says it has not been run",
                    study.profile
                );
                continue;
            }
            if self.jobs > 1 {
                let jobs = usize::from(self.jobs);
                eprintln!("{jobs} runs at a time, {} CPU threads each", threads_per_job(jobs));
                let indices: Vec<usize> =
                    runs.iter().enumerate().filter(|(_, r)| todo.contains(r)).map(|(i, _)| i).collect();
                let mut finished = 0;
                let mut worker_args = EngineArgs::to_args(engine);
                if self.skip_device {
                    worker_args.push("--skip-device".into());
                }
                let worker_args: Vec<&str> = worker_args.iter().map(String::as_str).collect();
                run_parallel(
                    path,
                    &runs,
                    &indices,
                    jobs,
                    &worker_args,
                    measure(study, skip, engine),
                    |run, result| {
                        finished += 1;
                        eprintln!("[{finished}/{}] {}: {}", indices.len(), run.label(), summary(result));
                    },
                )
                .context("the study stopped")?;
                continue;
            }
            for (i, run) in todo.iter().enumerate() {
                eprintln!(
                    "\n[{}/{}] {}  ({:.0} min so far)",
                    i + 1,
                    todo.len(),
                    run.label(),
                    started.elapsed().as_secs_f64() / 60.0
                );
                let result = run_one(run, measure(study, skip, engine)).context("the study stopped")?;
                eprintln!("[{}/{}] {}: {}", i + 1, todo.len(), run.label(), summary(&result));
            }
        }
        if self.dry_run {
            return Ok(());
        }
        let profiles: Vec<ProfileRuns> = studies
            .into_iter()
            .map(|(path, study)| {
                let planned = plan(&study);
                let results = planned.iter().filter_map(|r| done(r, measure(&study, skip, engine))).collect();
                ProfileRuns { path, study, planned, results }
            })
            .collect();
        let mut command = String::from("qfd-host study");
        for p in &self.studies {
            command += &format!(" {}", p.display());
        }
        if self.report != Path::new(DEFAULT_REPORT) {
            command += &format!(" --report {}", self.report.display());
        }
        write_report(&profiles, &command, &self.report).context("cannot write the report")?;
        super::print(&format!("report: {}\n", self.report.display()))
    }
}

/// One line on a finished run: its accuracies, the board check and its time.
fn summary(result: &RunResult) -> String {
    let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{:.2}%", 100.0 * x));
    let device = result.device.as_ref().map_or(String::new(), |d| {
        format!(
            "  {} {}/{} (host {}/{}, {} mismatches)",
            d.board, d.device_correct, d.samples, d.host_correct, d.samples, d.mismatches
        )
    });
    format!(
        "fake-quant {}  integer {}{device}  {:.0} s",
        pct(Some(result.fake_quant_acc)),
        pct(result.integer_acc),
        result.wall_seconds
    )
}

/// A process of `--jobs`: trains run `index` of the one study given, with `threads` CPU threads.
fn worker(
    studies: &[(PathBuf, StudyConfig)],
    index: usize,
    threads: Option<usize>,
    measure: Measure<'_>,
) -> anyhow::Result<()> {
    let [(path, study)] = studies else {
        anyhow::bail!("--worker takes exactly one study file");
    };
    let runs = plan(study);
    let run = runs
        .get(index)
        .with_context(|| format!("{} has {} runs; there is no run {index}", path.display(), runs.len()))?;
    if let Some(threads) = threads {
        tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
    }
    eprintln!("{}", run.label());
    let result = run_one(run, measure)?;
    eprintln!("{}: {}", run.label(), summary(&result));
    Ok(())
}

/// How `study` measures its runs, without the board check when `skip_device`, the integer accuracy by
/// `engine`.
fn measure(study: &StudyConfig, skip_device: bool, engine: EvalEngine) -> Measure<'_> {
    let all = study.measure();
    Measure { device: all.device.filter(|_| !skip_device), engine, ..all }
}
