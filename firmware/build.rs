//! Turns the board file and the model into what the firmware links:
//! - `memory.x` from `../boards/$QFD_BOARD.toml` (default `qemu-m4`), with the board's real limits;
//! - `model.rs`: the model as Rust (`qfd-codegen`), the default engine; `model.qfdm` for `--features
//!   interpreter`;
//! - `config.rs`: constants sized from both (input, classes, layers, frame buffer), so nothing is sized at
//!   run time;
//! - cfgs: `qfd_link="semihosting"` (QEMU) or `"rtt"` (probe-rs), `qfd_timer="systick"` or `"dwt"`.

use std::{env, fs, path::PathBuf};

/// Reads `key` and has cargo rerun this script when it changes.
fn var(key: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={key}");
    env::var(key).ok()
}

/// The number in `$key`, or `default` when it is not set.
fn number(key: &str, default: u32) -> u32 {
    var(key).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{key}={v:?} is not a number")))
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qfd_link, values(\"semihosting\", \"rtt\"))");
    println!("cargo::rustc-check-cfg=cfg(qfd_timer, values(\"systick\", \"dwt\"))");
    println!("cargo::rustc-check-cfg=cfg(qfd_boot2)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let name = var("QFD_BOARD").unwrap_or_else(|| "qemu-m4".into());
    let dir = qfd_boards::boards_dir();
    println!("cargo:rerun-if-changed={}", dir.join(format!("{name}.toml")).display());
    let board = qfd_boards::Board::load(&dir, &name).unwrap_or_else(|e| panic!("{e}"));
    let target = env::var("TARGET").unwrap();
    assert!(board.target == target, "board {name} needs --target {} (not {target})", board.target);
    fs::write(out.join("memory.x"), board.memory_x()).unwrap();
    let link = if board.is_emulated() { "semihosting" } else { "rtt" };
    println!("cargo:rustc-cfg=qfd_link=\"{link}\"");
    // QEMU counts instructions on SysTick (DWT's counter reads 0 there); M0+ boards have no DWT counter.
    let timer = if board.is_emulated() || !board.has_cycle_counter() { "systick" } else { "dwt" };
    println!("cargo:rustc-cfg=qfd_timer=\"{timer}\"");
    if board.boot2 {
        println!("cargo:rustc-cfg=qfd_boot2");
    }

    let model_path = var("QFD_MODEL").expect("set QFD_MODEL to a .qfdm file (qfd-host run does)");
    println!("cargo:rerun-if-changed={model_path}");
    let bytes = fs::read(&model_path).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    let model = qfd_runtime::Model::load(&bytes).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    // The arena is sized for the kernels this board's core runs (their working memory differs).
    let core = qfd_runtime::kernels::select::Core { dsp: board.dsp, mve: board.mve };
    let code = qfd_codegen::emit_rust_on(&bytes, &[core]).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    fs::write(out.join("model.rs"), code).unwrap();
    fs::write(out.join("model.qfdm"), &bytes).unwrap();
    let crc = qfd_codegen::emit::model_crc(&bytes).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    let input_bits = match model.desc().values[0].elem {
        qfd_runtime::format::ElemType::Codes { bits } => bits,
        qfd_runtime::format::ElemType::I32 => panic!("{model_path}: the model input is not codes"),
    };
    let config = format!(
        "pub const BOARD: &str = {name:?};\npub const CLOCK_HZ: u32 = {};\npub const MODEL_CRC: u32 = {crc:#010x};\n\
         pub const INPUT_LEN: usize = {};\npub const INPUT_BITS: u32 = {input_bits};\npub const NUM_CLASSES: usize = {};\npub const NUM_LAYERS: usize = {};\n\
         pub const ARENA_SIZE: usize = {};\npub const REQUEST_FRAME: usize = {};\n",
        board.clock_hz,
        model.input_len(),
        model.num_classes(),
        model.desc().ops.len(),
        model.arena_size_on(core),
        qfd_link::max_request_frame(model.input_len()),
    );
    let config = if env::var_os("CARGO_FEATURE_KERNEL_TEST").is_some() {
        format!(
            "{config}pub const KERNEL_TEST_SEED: u32 = {};\npub const KERNEL_TEST_CASES: u32 = {};\n",
            number("QFD_KERNEL_TEST_SEED", 1),
            number("QFD_KERNEL_TEST_CASES", 2000)
        )
    } else {
        config
    };
    fs::write(out.join("config.rs"), config).unwrap();

    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
