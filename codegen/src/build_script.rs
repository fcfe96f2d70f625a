//! What a firmware's build script does to compile one model for one board, for our firmware and yours:
//!
//! ```ignore
//! // build.rs
//! fn main() {
//!     qfd_codegen::build_script::run().unwrap_or_else(|e| panic!("{e}"));
//! }
//! ```
//!
//! It reads `$QFD_BOARD` (a file in the SDK's `boards/`, default `qemu-m4`) and `$QFD_MODEL` (a `.qfdm`
//! file), and writes into `OUT_DIR`:
//! - `memory.x`: the board's flash and RAM for cortex-m-rt's linker script;
//! - `model.rs`: the model as Rust ([`crate::emit_rust_on`]), with its arena sized for the board's core;
//!   include it with `mod model { include!(concat!(env!("OUT_DIR"), "/model.rs")); }`;
//! - `model.qfdm`: the file itself, for firmware that runs the interpreter;
//! - `config.rs`: `BOARD`, `CLOCK_HZ`, `REQUEST_FRAME` (the link's receive buffer) and
//!   `UART_BASE` (the board's emulated UART, 0 if none).

use std::path::PathBuf;
use std::{env, fs};

use qfd_boards::{Board, Runner};
use qfd_runtime::kernels::select::Core;

/// Reads `key` and has cargo rerun the build script when it changes.
pub fn var(key: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={key}");
    env::var(key).ok()
}

/// What was built: the board, the model's sizes.
#[derive(Debug, Clone)]
pub struct Built {
    /// The board description.
    pub board: Board,
    /// `OUT_DIR`, where the files are.
    pub out_dir: PathBuf,
    /// The model file's bytes.
    pub model: Vec<u8>,
}

/// Writes the files above and tells cargo where `memory.x` is. Errors name the variable or file at fault.
pub fn run() -> Result<Built, String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|_| "OUT_DIR is not set: call this from build.rs")?);
    let name = var("QFD_BOARD").unwrap_or_else(|| "qemu-m4".into());
    let dir = qfd_boards::boards_dir();
    println!("cargo:rerun-if-changed={}", dir.join(format!("{name}.toml")).display());
    let board = Board::load(&dir, &name).map_err(|e| e.to_string())?;
    let target = env::var("TARGET").unwrap_or_default();
    if board.target != target {
        return Err(format!("board {name} needs --target {} (not {target})", board.target));
    }
    let write = |file: &str, bytes: &[u8]| {
        fs::write(out.join(file), bytes).map_err(|e| format!("{}: {e}", out.join(file).display()))
    };
    write("memory.x", board.memory_x().as_bytes())?;

    let model_path = var("QFD_MODEL").ok_or("set QFD_MODEL to a .qfdm file (qfd-host run does)")?;
    println!("cargo:rerun-if-changed={model_path}");
    let bytes = fs::read(&model_path).map_err(|e| format!("{model_path}: {e}"))?;
    let model = qfd_runtime::Model::load(&bytes).map_err(|e| format!("{model_path}: {e}"))?;
    // The arena is sized for the kernels this board's core runs (their working memory differs).
    let core = Core { dsp: board.dsp, mve: board.mve };
    let code = crate::emit_rust_on(&bytes, &[core]).map_err(|e| format!("{model_path}: {e}"))?;
    write("model.rs", code.as_bytes())?;
    write("model.qfdm", &bytes)?;
    let uart = match board.run {
        Runner::Qemu { uart, .. } => uart.unwrap_or(0),
        Runner::Probe { .. } => 0,
    };
    let config = format!(
        "pub const BOARD: &str = {name:?};\npub const CLOCK_HZ: u32 = {};\npub const REQUEST_FRAME: usize = {};\n\
         pub const UART_BASE: usize = {uart:#010x};\n",
        board.clock_hz,
        qfd_link::max_request_frame(model.input_len()),
    );
    drop(model);
    write("config.rs", config.as_bytes())?;
    println!("cargo:rustc-link-search={}", out.display());
    Ok(Built { board, out_dir: out, model: bytes })
}
