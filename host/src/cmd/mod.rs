//! One module per command; each is a `Cmd` whose doc comment is its help text.

mod bench;
mod boards;
mod codegen;
mod eval;
mod export;
mod inspect;
mod kernel_test;
mod mlperf;
mod quantize;
mod run;
mod study;
mod synth;
mod trace;
mod train;

use std::io::Write;

use anyhow::Context;

/// The commands of `qfd-host`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Synth(synth::Cmd),
    Inspect(inspect::Cmd),
    Train(Box<train::Cmd>),
    Export(export::Cmd),
    Quantize(quantize::Cmd),
    Codegen(codegen::Cmd),
    Run(run::Cmd),
    Bench(bench::Cmd),
    KernelTest(kernel_test::Cmd),
    Mlperf(mlperf::Cmd),
    Boards(boards::Cmd),
    Eval(eval::Cmd),
    Trace(trace::Cmd),
    Study(study::Cmd),
}

impl Command {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Synth(cmd) => cmd.run(),
            Command::Inspect(cmd) => cmd.run(),
            Command::Train(cmd) => cmd.run(),
            Command::Export(cmd) => cmd.run(),
            Command::Quantize(cmd) => cmd.run(),
            Command::Codegen(cmd) => cmd.run(),
            Command::Run(cmd) => cmd.run(),
            Command::Bench(cmd) => cmd.run(),
            Command::KernelTest(cmd) => cmd.run(),
            Command::Mlperf(cmd) => cmd.run(),
            Command::Boards(cmd) => cmd.run(),
            Command::Eval(cmd) => cmd.run(),
            Command::Trace(cmd) => cmd.run(),
            Command::Study(cmd) => cmd.run(),
        }
    }
}

/// Writes `text` to stdout; unlike `print!`, a closed pipe (`qfd-host inspect m.qfdm | head`) is an error the
/// caller sees, not a panic.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to stdout")
}
