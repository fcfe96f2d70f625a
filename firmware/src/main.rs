//! Board firmware: runs one model and serves the `qfd-link` protocol until the host says `Finish`.
//!
//! - The model is compiled in: code generated for it by `qfd-codegen` (default), or its `.qfdm` file run
//!   by the `qfd-runtime` interpreter (`--features interpreter`). `build.rs` does both from `$QFD_MODEL`.
//! - The link is `qfd-link` frames over a byte stream: host files through semihosting under QEMU, RTT
//!   channels on real boards ([`link`]). Logs are defmt, on semihosting stdout or RTT channel 0.
//! - Each inference is timed ([`timer`]): instructions under QEMU, cycles on boards; per layer on request.
//! - The stack is painted at start-up and its high-water mark reported at the end ([`stack`]).
//! - A panic or fault sends its location to the host and ends the run with a failing status ([`fault`]).
//!
//! `docs/device.md` describes the session and how to add a board; `docs/architecture.md` the whole SDK.
#![no_std]
#![no_main]
// The kernel-test image serves no model: the model, session and link code it links is left unused.
#![cfg_attr(feature = "kernel-test", allow(dead_code, unused_imports))]

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
mod engine;
mod fault;
#[cfg(feature = "kernel-test")]
mod kernel_test;
mod link;
mod session;
mod stack;
mod timer;

use cortex_m_rt::entry;

#[cfg(qfd_boot2)]
#[link_section = ".boot2"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

#[entry]
fn main() -> ! {
    // First, before the stack grows: everything below this frame is painted.
    stack::paint();
    let mut core =
        cortex_m::Peripherals::take().unwrap_or_else(|| fault::halt("core peripherals taken twice"));
    timer::start(&mut core);
    #[cfg(feature = "kernel-test")]
    kernel_test::run();
    #[cfg(not(feature = "kernel-test"))]
    serve_model()
}

/// Serves the link until the host says `Finish`, then exits with the session's status.
#[cfg(not(feature = "kernel-test"))]
fn serve_model() -> ! {
    let mut link = link::open();
    defmt::info!(
        "qfd-firmware on {=str}: {} engine, model crc {=u32:#x}, {=usize} layers, arena {=usize} B",
        config::BOARD,
        engine::ENGINE_NAME,
        config::MODEL_CRC,
        config::NUM_LAYERS,
        config::ARENA_SIZE
    );
    match session::serve(&mut link) {
        Ok(inferences) => {
            defmt::info!("done: {=u32} inferences", inferences);
            link::exit(true)
        }
        Err(why) => {
            defmt::error!("link failed: {=str}", why);
            link::exit(false)
        }
    }
}
