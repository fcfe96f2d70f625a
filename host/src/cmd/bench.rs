use std::time::Duration;

use qfd_host::device::RunOptions;

use super::run::{print_report, run_with_progress, TargetArgs};

/// Time a model on a board: `run` on pseudo-random inputs, every layer timed.
///
/// Reports the time per inference (mean, min, max) and per MAC, and a per-layer table. Under QEMU the
/// time is instructions (`-icount`), on real boards cycles. Outputs are still compared with the host
/// runtime: a benchmark of wrong results is worthless.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    #[command(flatten)]
    target: TargetArgs,
    /// Inputs to run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    samples: u64,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let opts = RunOptions {
            board: self.target.board.clone(),
            model: self.target.model.clone(),
            data: None,
            dataset: None,
            random_inputs: true,
            samples: self.samples as usize,
            timeout: Duration::from_secs(self.target.timeout),
            engine: self.target.engine,
            trace: false,
            time_all_layers: true,
            build_only: false,
        };
        let report = run_with_progress(&opts)?;
        print_report(&report, self.target.json)?;
        if !report.parity() {
            anyhow::bail!("the device's outputs differ from the host runtime's: the timing is not valid");
        }
        if !self.target.json {
            let (min, max) = (report.times.iter().min(), report.times.iter().max());
            if let (Some(min), Some(max)) = (min, max) {
                super::print(&format!("range     {min} to {max} {} per inference\n", report.time_unit))?;
            }
        }
        Ok(())
    }
}
