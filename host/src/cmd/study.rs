use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use qfd_host::study::report::{write_report, ProfileRuns};
use qfd_host::study::run::{done, run_one};
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
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let studies: Vec<(PathBuf, StudyConfig)> = self
            .studies
            .iter()
            .map(|p| StudyConfig::from_file(p).map(|s| (p.clone(), s)))
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        for (path, study) in &studies {
            let runs = plan(study);
            let todo: Vec<_> = runs.iter().filter(|r| done(r, study.measure()).is_none()).collect();
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
            if study.requires_gpu && !self.allow_cpu && !tch::Cuda::is_available() {
                eprintln!(
                    "study {}: skipped: it requires a CUDA GPU and none is usable here (--allow-cpu trains it \
                     on the CPU anyway); its section of the report says it has not been run",
                    study.profile
                );
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
                let result = run_one(run, study.measure()).context("the study stopped")?;
                let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{:.2}%", 100.0 * x));
                let device = result.device.as_ref().map_or(String::new(), |d| {
                    format!(
                        "  {} {}/{} (host {}/{}, {} mismatches)",
                        d.board, d.device_correct, d.samples, d.host_correct, d.samples, d.mismatches
                    )
                });
                eprintln!(
                    "[{}/{}] {}: fake-quant {}  integer {}{device}  {:.0} s",
                    i + 1,
                    todo.len(),
                    run.label(),
                    pct(Some(result.fake_quant_acc)),
                    pct(result.integer_acc),
                    result.wall_seconds
                );
            }
        }
        if self.dry_run {
            return Ok(());
        }
        let profiles: Vec<ProfileRuns> = studies
            .into_iter()
            .map(|(path, study)| {
                let planned = plan(&study);
                let results = planned.iter().filter_map(|r| done(r, study.measure())).collect();
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
