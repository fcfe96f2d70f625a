use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use qfd_host::data::DatasetKind;
use qfd_host::device::{run, RunOptions, RunReport};

/// Run a model on a board and prove it computes what the host runtime computes.
///
/// Builds the firmware for the board with the model and N test images baked in, runs it (emulated boards
/// under QEMU, counting instructions), and compares every output with the host runtime's, bit for bit.
/// Reports mismatches (there must be none), accuracy on the device next to the host's, instructions per
/// inference and per MAC, and the flash and RAM the image uses. Exits with failure on any mismatch.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Board name (a file in boards/, e.g. qemu-m4).
    #[arg(long)]
    board: String,
    /// The .qfdm model.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Directory of the data set files [default: the data set's standard place].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Data set of the inputs [default: the one the model records; random pixels for synthetic models].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Test images to run.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Seconds the device may take before it is stopped.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        if self.samples == 0 {
            bail!("--samples must be at least 1");
        }
        let opts = RunOptions {
            board: self.board.clone(),
            model: self.model.clone(),
            data: self.data,
            dataset: self.dataset,
            samples: self.samples,
            timeout: Duration::from_secs(self.timeout),
        };
        eprintln!("building the firmware for {} and running {} inputs...", self.board, self.samples);
        let report =
            run(&opts).with_context(|| format!("cannot run {} on {}", self.model.display(), self.board))?;
        let text = if self.json { serde_json::to_string_pretty(&report)? + "\n" } else { text(&report) };
        super::print(&text)?;
        if !report.mismatches.is_empty() {
            bail!("{} of {} outputs differ from the host runtime", report.mismatches.len(), report.samples);
        }
        Ok(())
    }
}

fn text(r: &RunReport) -> String {
    let pct = |n: usize| 100.0 * n as f64 / r.samples.max(1) as f64;
    let mut out = format!(
        "board     {} ({})\nmodel     {}\ninputs    {} ({})\n",
        r.board, r.runner, r.model, r.samples, r.dataset
    );
    if r.mismatches.is_empty() {
        out += &format!("parity    OK: all {} outputs match the host runtime bit for bit\n", r.samples);
    } else {
        out += &format!("parity    FAILED: {} of {} outputs differ\n", r.mismatches.len(), r.samples);
        for m in r.mismatches.iter().take(10) {
            out += &format!(
                "  input {}: host class {} {:?}, device class {} {:?}\n",
                m.input, m.host.0, m.host.1, m.device.0, m.device.1
            );
        }
    }
    if r.dataset != "random pixels" {
        out += &format!("accuracy  device {:.2}%, host {:.2}%\n", pct(r.device_correct), pct(r.host_correct));
    }
    let mean = r.mean_instructions();
    out += &format!(
        "speed     {:.2} M instructions per inference, {:.2} per MAC (QEMU -icount)\n",
        mean / 1e6,
        mean / r.macs.max(1) as f64
    );
    let m = &r.memory;
    out += &format!(
        "flash     {} of {} bytes ({:.1}%)\nRAM       {} of {} bytes in statics (arena {}); stack not measured yet\n",
        m.flash_bytes,
        m.flash_total,
        100.0 * m.flash_bytes as f64 / m.flash_total as f64,
        m.ram_static_bytes,
        m.ram_total,
        m.arena_bytes
    );
    out
}
