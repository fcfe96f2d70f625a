//! `qfd-host`: the command line of the QFD Edge SDK.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

use qfd_host::model_file::ModelFileError;

/// Train low-bit networks with Quantized Feature Distillation and run them bit-exactly on microcontrollers.
#[derive(Debug, Parser)]
#[command(name = "qfd-host", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    // Bad usage exits with clap's status 2 here, after printing the problem and the usage.
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => {
            // The reader went away (`| head`): nothing left to tell it.
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = err.chain().find_map(|e| e.downcast_ref::<ModelFileError>()?.hint()) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
