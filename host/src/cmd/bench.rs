use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use qfd_host::device::{speed, Engine, RunOptions};

use super::run::{print_report, run_with_progress};

/// Time a model on a board, or write the device speed report.
///
/// With --board and --model: `run` on pseudo-random inputs, every layer timed. Reports the time per
/// inference (mean, min, max) and per MAC, and a per-layer table. Under QEMU the time is instructions
/// (`-icount`), on real boards cycles. Outputs are still compared with the host runtime: a benchmark of
/// wrong results is worthless.
///
/// With --report FILE: builds the report's synthetic models (ResNet-8 32x32x3 at W8A8/W4A4/W2A2,
/// MobileNetV1-0.25 96x96x3 at W8A8/W4A4), benches each on every emulated board (or those given with
/// --boards), and writes a Markdown table: instructions per inference and per MAC, CMSIS-NN's figure and
/// the ratio, arena (tensors + kernel scratch), flash, and where the time goes. About 15 minutes.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Board name (a file in boards/; `qfd-host boards` lists them).
    #[arg(long, required_unless_present = "report", conflicts_with = "report")]
    board: Option<String>,
    /// The .qfdm model.
    #[arg(long, value_name = "FILE", required_unless_present = "report", conflicts_with = "report")]
    model: Option<PathBuf>,
    /// How the firmware runs the model.
    #[arg(long, value_enum, default_value_t = Engine::Generated)]
    engine: Engine,
    /// Seconds the device may stay silent before it is stopped.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Inputs to run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    samples: u64,
    /// Write the device speed report (Markdown) to FILE instead of timing one model.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Boards of the report, comma-separated (default: every emulated board).
    #[arg(long, value_delimiter = ',', requires = "report")]
    boards: Vec<String>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(path) = &self.report {
            return self.write_report(path);
        }
        let (Some(board), Some(model)) = (self.board.clone(), self.model.clone()) else {
            bail!("give --board and --model, or --report FILE");
        };
        let opts = RunOptions {
            board,
            model,
            data: None,
            dataset: None,
            random_inputs: true,
            samples: self.samples as usize,
            timeout: Duration::from_secs(self.timeout),
            engine: self.engine,
            trace: false,
            time_all_layers: true,
            build_only: false,
            port: None,
            save_elf: None,
        };
        let report = run_with_progress(&opts)?;
        print_report(&report, self.json)?;
        if !report.parity() {
            bail!("the device's outputs differ from the host runtime's: the timing is not valid");
        }
        if !self.json {
            let (min, max) = (report.times.iter().min(), report.times.iter().max());
            if let (Some(min), Some(max)) = (min, max) {
                super::print(&format!("range     {min} to {max} {} per inference\n", report.time_unit))?;
            }
        }
        Ok(())
    }

    fn write_report(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let boards: Vec<String> = if self.boards.is_empty() {
            speed::BOARDS.iter().map(|b| b.to_string()).collect()
        } else {
            self.boards.clone()
        };
        let work = qfd_host::device::firmware::firmware_dir().join("target").join("speed-report");
        let bar = ProgressBar::new((speed::MODELS.len() * boards.len()) as u64);
        bar.set_style(ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} [{elapsed_precise}, ETA {eta}]",
        )?);
        bar.set_message("benching");
        let cells = speed::measure(&speed::MODELS, &boards, &work, Duration::from_secs(self.timeout), |c| {
            bar.println(format!(
                "{:<24} {:<9} {:>8.2} M instructions",
                c.model.name,
                c.report.board,
                c.report.mean_time() / 1e6
            ));
            bar.inc(1);
        })?;
        bar.finish_and_clear();
        let mut command = format!("qfd-host bench --report {}", path.display());
        if !self.boards.is_empty() {
            command += &format!(" --boards {}", self.boards.join(","));
        }
        qfd_host::fsutil::write_atomic(path, speed::to_markdown(&cells, &command).as_bytes())?;
        super::print(&format!("wrote {} ({} runs)\n", path.display(), cells.len()))
    }
}
