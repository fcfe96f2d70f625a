use qfd_boards::{Board, Runner};

use qfd_host::table::{Align, Table};

/// List the boards: core, target, memories, clock, and how each runs.
///
/// Emulated boards run under QEMU; real boards are flashed and read through probe-rs, which needs a
/// qfd-host built with `--features probe` (every board can still be built with `run --build-only`).
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let boards = Board::all(&qfd_boards::boards_dir())?;
        let runnable = |b: &Board| b.is_emulated() || cfg!(feature = "probe");
        if self.json {
            let list: Vec<serde_json::Value> = boards
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "name": b.name, "cpu": b.cpu, "target": b.target, "clock_hz": b.clock_hz,
                        "flash_bytes": b.flash.length, "ram_bytes": b.ram.length,
                        "runs_with": b.run.to_string(), "runnable_here": runnable(b),
                    })
                })
                .collect();
            return super::print(&(serde_json::to_string_pretty(&list)? + "\n"));
        }
        let mut t = Table::new(&[
            ("board", Align::Left),
            ("core", Align::Left),
            ("target", Align::Left),
            ("flash", Align::Right),
            ("RAM", Align::Right),
            ("clock", Align::Right),
            ("runs with", Align::Left),
            ("here", Align::Left),
        ]);
        for b in &boards {
            let how = match &b.run {
                Runner::Qemu { machine, .. } => format!("qemu {machine}"),
                Runner::Probe { chip } => format!("probe-rs {chip}"),
            };
            t.row(vec![
                b.name.clone(),
                b.cpu.clone(),
                b.target.clone(),
                format!("{} KiB", b.flash.length / 1024),
                format!("{} KiB", b.ram.length / 1024),
                format!("{} MHz", b.clock_hz / 1_000_000),
                how,
                if runnable(b) { "yes".into() } else { "build only (needs --features probe)".into() },
            ]);
        }
        super::print(&t.render(""))
    }
}
