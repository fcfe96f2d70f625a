use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use qfd_host::data::DatasetKind;
use qfd_host::device::mlperf::{run, MlperfOptions, Mode};
use qfd_host::device::RunOptions;

use super::run::{with_progress, SerialArgs, TargetArgs};

/// Drive a board through the MLPerf Tiny runner protocol, as EEMBC's runners do.
///
/// Builds the firmware with the protocol compiled in (the model as generated code or the interpreter),
/// opens the board's UART (QEMU's for emulated boards; a real board's serial device with --port, running
/// the image --save-elf wrote) and sends the runner's commands: name, profile, then for each input
/// `db load N`, `db <hex>`... and `infer N W`. Every `m-results` line must equal the host runtime's logits
/// for that input (the protocol carries them as integers). Performance mode reports each input's
/// throughput and the median, in the runner's words; accuracy mode runs each input once and reports
/// top-1 accuracy on the device next to the host's. Under QEMU a microsecond is 1,000 instructions.
/// Exits with failure if any result differs.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    #[command(flatten)]
    target: TargetArgs,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Performance)]
    mode: Mode,
    /// Inputs to run [default: 5 in performance mode, 200 in accuracy mode].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    samples: Option<u64>,
    /// Timed inferences per input (performance mode).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Warm-up inferences before the timed ones (performance mode).
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Directory of the data set files [default: the data set's standard place].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Data set of the inputs [default: the one the model records; random pixels for synthetic models].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Build the firmware and report its flash and RAM, without running it.
    #[arg(long)]
    build_only: bool,
    #[command(flatten)]
    serial: SerialArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let default_samples = if self.mode == Mode::Performance { 5 } else { 200 };
        let opts = MlperfOptions {
            run: RunOptions {
                board: self.target.board.clone(),
                model: self.target.model.clone(),
                data: self.data,
                dataset: self.dataset,
                random_inputs: false,
                samples: self.samples.unwrap_or(default_samples) as usize,
                timeout: Duration::from_secs(self.target.timeout),
                engine: self.target.engine,
                trace: false,
                time_all_layers: false,
                build_only: self.build_only,
                port: self.serial.port(),
                save_elf: self.serial.save_elf.clone(),
            },
            mode: self.mode,
            iterations: self.iterations,
            warmup: self.warmup,
        };
        let report = with_progress(&opts.run.board, "runner commands on", |progress| run(&opts, progress));
        let report = report
            .with_context(|| format!("cannot run {} on {}", opts.run.model.display(), opts.run.board))?;
        let text =
            if self.target.json { serde_json::to_string_pretty(&report)? + "\n" } else { report.to_text() };
        super::print(&text)?;
        if !self.build_only && !report.parity() {
            bail!(
                "{} of {} inputs' results differ from the host runtime's",
                report.mismatches,
                report.inputs.len()
            );
        }
        Ok(())
    }
}
