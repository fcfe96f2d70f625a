//! Board firmware: runs one model and serves it through `qfd-device` until the host is done.
//!
//! This firmware is a thin user of `qfd-device`, the library any firmware can call; what is here is
//! what differs per board:
//! - The model is compiled in: code generated for it by `qfd-codegen` (default), or its `.qfdm` file run
//!   by the `qfd-runtime` interpreter (`--features interpreter`). `build.rs` does both from `$QFD_MODEL`.
//! - The port ([`link`]): host files through semihosting under QEMU, QEMU's UART (`QFD_LINK=uart`), or
//!   RTT channels on real boards. Logs are defmt, on semihosting stdout or RTT channel 0.
//! - The protocol: the SDK's link (`qfd-host run`, default) or MLPerf Tiny's runner protocol
//!   (`--features mlperf`, `qfd-host mlperf`).
//! - The clock ([`timer`]): instructions under QEMU, cycles on boards.
//! - A panic or fault sends its location to the host and ends the run with a failing status ([`fault`]).
//!
//! `docs/device.md` describes the session and how to add a board; `docs/own-firmware.md` how to use
//! `qfd-device` from your own firmware.
#![no_std]
#![no_main]
// The kernel-test image serves no model: the model, protocol and link code it links is left unused.
#![cfg_attr(feature = "kernel-test", allow(dead_code, unused_imports))]

mod config {
    // Each protocol reads part of it.
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
mod model {
    // The firmware reads only part of the module's constants (and none with the interpreter).
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
mod engine;
mod fault;
#[cfg(feature = "kernel-test")]
mod kernel_test;
mod link;
mod timer;

use cortex_m_rt::entry;
use qfd_device::Board;

#[cfg(qfd_boot2)]
#[link_section = ".boot2"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// What the protocols say about this board.
const BOARD: Board = Board {
    name: config::BOARD,
    clock_hz: config::CLOCK_HZ,
    stack_usage: Some(qfd_device::cortex_m::stack_usage),
};

#[entry]
fn main() -> ! {
    // First, before the stack grows: everything below this frame is painted.
    qfd_device::cortex_m::paint_stack();
    let mut core =
        cortex_m::Peripherals::take().unwrap_or_else(|| fault::halt("core peripherals taken twice"));
    let clock = timer::start(&mut core);
    #[cfg(feature = "kernel-test")]
    {
        // The kernel test counts cases, not time.
        let _ = clock;
        kernel_test::run()
    }
    #[cfg(not(feature = "kernel-test"))]
    serve(clock)
}

/// Serves the protocol until the host is done, then exits with the session's status.
#[cfg(not(feature = "kernel-test"))]
fn serve(mut clock: timer::Timer) -> ! {
    let mut port = link::open();
    let mut model = engine::load();
    defmt::info!(
        "qfd-firmware on {=str}: {=str} engine, {=str}, model crc {=u32:#x}, {=usize} layers, arena {=usize} B",
        config::BOARD,
        engine::ENGINE_NAME,
        if cfg!(feature = "mlperf") { "MLPerf Tiny protocol" } else { "qfd-link protocol" },
        model::MODEL_CRC,
        model::NUM_LAYERS,
        model::ARENA_SIZE
    );
    #[cfg(feature = "mlperf")]
    let served = {
        use qfd_device::mlperf::{self, MlperfBuffers, NoPin, TimestampMode};
        // Statics, not stack: the linker then says when the buffers do not fit the board.
        let buffers = cortex_m::singleton!(: MlperfBuffers<{ model::INPUT_LEN }> = MlperfBuffers::new())
            .unwrap_or_else(|| fault::halt("the buffers were taken twice"));
        let mode = TimestampMode::Performance;
        mlperf::serve(&mut port, &mut model, &mut clock, &mut NoPin, mode, &BOARD, buffers).map(|()| 0)
    };
    #[cfg(not(feature = "mlperf"))]
    let served = {
        use qfd_device::link::LinkBuffers;
        let buffers = cortex_m::singleton!(: LinkBuffers<{ config::REQUEST_FRAME }> = LinkBuffers::new())
            .unwrap_or_else(|| fault::halt("the buffers were taken twice"));
        qfd_device::link::serve(&mut port, &mut model, &mut clock, &BOARD, link::GREETING, buffers)
    };
    match served {
        Ok(inferences) => {
            defmt::info!("done: {=u32} inferences", inferences);
            link::exit(true)
        }
        Err(why) => {
            defmt::error!("link failed: {}", why);
            link::exit(false)
        }
    }
}
