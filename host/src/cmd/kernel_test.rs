use std::time::Duration;

use anyhow::bail;

use qfd_host::device::kernel_test::kernel_test;

/// Test the kernels on a board: random cases through the kernel variants the runtime selects for that
/// core (the DSP `asm!` kernels on Cortex-M4/M7/M33), each compared with the reference kernels on the
/// board itself, and all their outputs with the host's reference kernels through a CRC-32 digest.
///
/// Builds the kernel-test firmware, runs it (QEMU for emulated boards, probe-rs for real ones) and prints
/// its log. Exits with an error when any case differs. The same check runs on the host in
/// `cargo test -p qfd-runtime`.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Board name (a file in boards/; `qfd-host boards` lists them).
    #[arg(long)]
    board: String,
    /// Random cases to run.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    cases: u32,
    /// Seed of the cases: the same seed gives the same cases on every board.
    #[arg(long, default_value_t = 1)]
    seed: u32,
    /// Seconds the board may stay silent before it is stopped.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let report = kernel_test(&self.board, self.seed, self.cases, Duration::from_secs(self.timeout))?;
        let mut text = String::new();
        for line in &report.log {
            text += line;
            text += "\n";
        }
        let device = report.device_digest.map_or("none".to_string(), |d| format!("{d:#010x}"));
        text += &format!("digest: board {device}, host reference kernels {:#010x}\n", report.host_digest);
        super::print(&text)?;
        if !report.passed {
            bail!(
                "kernel test on {} FAILED: see the log above (seed {}, {} cases)",
                report.board,
                report.seed,
                report.cases
            );
        }
        super::print(&format!("kernel test on {}: passed\n", report.board))
    }
}
