//! Turns the board file and the model into what the firmware links:
//! - `memory.x` from `../boards/$QFD_BOARD.toml` (default `qemu-m4`);
//! - `model.qfdm` (from `$QFD_MODEL`) and `inputs.bin` (from `$QFD_INPUTS`, empty if unset) in OUT_DIR;
//! - `config.rs`: constants sized from them (arena, input length, clock), so nothing is sized at run time.

use std::{env, fs, path::PathBuf};

/// Reads `key` and has cargo rerun this script when it changes.
fn var(key: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={key}");
    env::var(key).ok()
}

/// Reads a file and has cargo rerun this script when it changes.
fn read(path: &str) -> Vec<u8> {
    println!("cargo:rerun-if-changed={path}");
    fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let name = var("QFD_BOARD").unwrap_or_else(|| "qemu-m4".into());
    let dir = qfd_boards::boards_dir();
    println!("cargo:rerun-if-changed={}", dir.join(format!("{name}.toml")).display());
    let board = qfd_boards::Board::load(&dir, &name).unwrap_or_else(|e| panic!("{e}"));
    let target = env::var("TARGET").unwrap();
    assert!(board.target == target, "board {name} needs --target {} (not {target})", board.target);
    let memory = board.memory_x();
    fs::write(out.join("memory.x"), memory).unwrap();

    let model_path = var("QFD_MODEL").expect("set QFD_MODEL to a .qfdm file (parity-smoke.sh makes one)");
    let model_bytes = read(&model_path);
    let model = qfd_runtime::Model::load(&model_bytes).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    let inputs = var("QFD_INPUTS").map(|p| read(&p)).unwrap_or_default();
    let len = model.input_len();
    assert!(inputs.len() % len == 0, "QFD_INPUTS is not a whole number of {len}-byte inputs");
    // Without an inputs file the firmware generates QFD_NUM_INPUTS inputs itself.
    let (from_file, count) = match inputs.len() / len {
        0 => (false, var("QFD_NUM_INPUTS").map_or(4, |n| n.parse().expect("QFD_NUM_INPUTS"))),
        n => (true, n),
    };
    fs::write(out.join("model.qfdm"), &model_bytes).unwrap();
    fs::write(out.join("inputs.bin"), &inputs).unwrap();
    let config = format!(
        "pub const BOARD: &str = {name:?};\npub const CLOCK_HZ: u64 = {};\n\
         pub const ARENA_SIZE: usize = {};\npub const INPUT_LEN: usize = {len};\n\
         pub const NUM_CLASSES: usize = {};\npub const NUM_INPUTS: usize = {count};\n\
         pub const INPUTS_FROM_FILE: bool = {from_file};\n",
        board.clock_hz,
        model.arena_size(),
        model.num_classes()
    );
    fs::write(out.join("config.rs"), config).unwrap();

    // cortex-m-rt's link.x includes memory.x; passed here so RUSTFLAGS (e.g. target-cpu) can be set freely.
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
