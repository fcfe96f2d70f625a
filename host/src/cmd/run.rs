use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use qfd_host::data::DatasetKind;
use qfd_host::device::serial::PortName;
use qfd_host::device::{run, Engine, RunOptions, RunReport};

/// Run a model on a board and prove it computes what the host runtime computes.
///
/// Builds the firmware for the board with the model compiled in, starts it (emulated boards under QEMU,
/// counting instructions; real boards through probe-rs, with the `probe` feature), sends it N test images
/// over the link (or over a UART with --port: QEMU's, or a real board's serial port, no probe needed) and
/// compares every answer with the host runtime's, bit for bit. Reports mismatches
/// (there must be none; --trace names the first layer that differs), accuracy on the device next to the
/// host's, time per inference, per MAC and per layer, and the flash, RAM and stack the firmware uses.
/// Exits with failure on any mismatch or refused input.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Directory of the data set files [default: the data set's standard place].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Data set of the inputs [default: the one the model records; random pixels for synthetic models].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Test images to run.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    samples: u64,
    /// Ask the device for every layer's output checksum, to name the first layer of a mismatch.
    #[arg(long)]
    trace: bool,
    /// Build the firmware and report its flash and RAM, without running it (any board, no probe needed).
    #[arg(long)]
    build_only: bool,
    #[command(flatten)]
    serial: SerialArgs,
}

/// The serial link, shared by `run` and `mlperf`.
#[derive(Debug, clap::Args)]
pub struct SerialArgs {
    /// Speak over a UART: `qemu` for an emulated board's UART (QEMU puts it on a socket), or a real
    /// board's serial device such as /dev/ttyACM0, running the firmware built for it (flash the image
    /// that --save-elf writes; the model's CRC is checked, so a stale firmware is refused).
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Baud rate of a serial device.
    #[arg(long, default_value_t = 115_200, value_parser = clap::value_parser!(u32).range(300..))]
    pub baud: u32,
    /// Also write the built firmware image here, to flash it yourself.
    #[arg(long, value_name = "FILE")]
    pub save_elf: Option<PathBuf>,
}

impl SerialArgs {
    /// The port, parsed.
    pub fn port(&self) -> Option<PortName> {
        self.port.as_ref().map(|p| match p.as_str() {
            "qemu" => PortName::Qemu,
            path => PortName::Device { path: path.into(), baud: self.baud },
        })
    }
}

/// Options shared by `run` and `bench`.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Board name (a file in boards/; `qfd-host boards` lists them).
    #[arg(long)]
    pub board: String,
    /// The .qfdm model.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// How the firmware runs the model.
    #[arg(long, value_enum, default_value_t = Engine::Generated)]
    pub engine: Engine,
    /// Seconds the device may stay silent before it is stopped.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let opts = RunOptions {
            board: self.target.board.clone(),
            model: self.target.model.clone(),
            data: self.data,
            dataset: self.dataset,
            random_inputs: false,
            samples: self.samples as usize,
            timeout: Duration::from_secs(self.target.timeout),
            engine: self.target.engine,
            trace: self.trace,
            time_all_layers: false,
            build_only: self.build_only,
            port: self.serial.port(),
            save_elf: self.serial.save_elf.clone(),
        };
        let report = run_with_progress(&opts)?;
        print_report(&report, self.target.json)?;
        if !self.build_only && !report.parity() {
            bail!(
                "{} of {} outputs differ from the host runtime, {} inputs refused",
                report.mismatches.len(),
                report.samples,
                report.refused.len()
            );
        }
        Ok(())
    }
}

/// Runs with a spinner while building and a bar while the device answers.
pub fn run_with_progress(opts: &RunOptions) -> anyhow::Result<RunReport> {
    let report = with_progress(&opts.board, "running on", |progress| run(opts, progress));
    report.with_context(|| format!("cannot run {} on {}", opts.model.display(), opts.board))
}

/// Calls `work` with a progress callback `(done, total)`: a spinner while the firmware for `board` builds,
/// then a bar named `doing` and the board once the first answer comes.
pub fn with_progress<R>(board: &str, doing: &str, work: impl FnOnce(&mut dyn FnMut(usize, usize)) -> R) -> R {
    let bar = ProgressBar::new_spinner().with_message(format!("building the firmware for {board}"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let style = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}, ETA {eta}]")
        .expect("a valid template");
    let result = work(&mut |done, total| {
        if bar.length().is_none() {
            bar.set_style(style.clone());
            bar.set_length(total as u64);
            bar.set_message(format!("{doing} {board}"));
        }
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    result
}

/// Prints the report as text or JSON.
pub fn print_report(report: &RunReport, json: bool) -> anyhow::Result<()> {
    let text = if json { serde_json::to_string_pretty(report)? + "\n" } else { report.to_text() };
    super::print(&text)
}
