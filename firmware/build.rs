//! Compiles the model for the board (`qfd_codegen::build_script`: `memory.x`, `model.rs`, `model.qfdm`,
//! `config.rs` from `$QFD_BOARD` and `$QFD_MODEL`), then picks this firmware's link and timer:
//! - `qfd_link`: `"semihosting"` (QEMU, host files), `"uart"` (QEMU's UART, with `QFD_LINK=uart`) or
//!   `"rtt"` (real boards, probe-rs); `qfd_emulated` under QEMU, whose semihosting carries logs and exit;
//! - `qfd_timer`: `"systick"` or `"dwt"`.

use std::env;
use std::fs;

use qfd_codegen::build_script::{self, var};

/// The number in `$key`, or `default` when it is not set.
fn number(key: &str, default: u32) -> u32 {
    var(key).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{key}={v:?} is not a number")))
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qfd_link, values(\"semihosting\", \"uart\", \"rtt\"))");
    println!("cargo::rustc-check-cfg=cfg(qfd_timer, values(\"systick\", \"dwt\"))");
    println!("cargo::rustc-check-cfg=cfg(qfd_boot2)");
    println!("cargo::rustc-check-cfg=cfg(qfd_emulated)");
    let built = build_script::run().unwrap_or_else(|e| panic!("{e}"));
    let board = &built.board;
    let link = match (board.is_emulated(), var("QFD_LINK").as_deref()) {
        (true, Some("uart")) => "uart",
        (true, None | Some("semihosting")) => "semihosting",
        (false, None | Some("rtt")) => "rtt",
        (_, Some(other)) => {
            panic!("QFD_LINK={other:?}: board {} has no such link in this firmware", board.name)
        }
    };
    println!("cargo:rustc-cfg=qfd_link=\"{link}\"");
    if board.is_emulated() {
        println!("cargo:rustc-cfg=qfd_emulated");
    }
    // QEMU counts instructions on SysTick (DWT's counter reads 0 there); M0+ boards have no DWT counter.
    let timer = if board.is_emulated() || !board.has_cycle_counter() { "systick" } else { "dwt" };
    println!("cargo:rustc-cfg=qfd_timer=\"{timer}\"");
    if board.boot2 {
        println!("cargo:rustc-cfg=qfd_boot2");
    }
    if env::var_os("CARGO_FEATURE_KERNEL_TEST").is_some() {
        let consts = format!(
            "pub const KERNEL_TEST_SEED: u32 = {};\npub const KERNEL_TEST_CASES: u32 = {};\n",
            number("QFD_KERNEL_TEST_SEED", 1),
            number("QFD_KERNEL_TEST_CASES", 2000)
        );
        fs::write(built.out_dir.join("kernel_test.rs"), consts).unwrap();
    }
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
