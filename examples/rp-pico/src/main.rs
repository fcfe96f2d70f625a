//! A Raspberry Pi Pico serving a model over UART0 with `qfd-device`: what a user of the SDK writes for a
//! board of their own. The HAL (rp2040-hal) sets up the clocks, the UART, a pin and a timer; `qfd-device`
//! does the rest: the SDK's link for `qfd-host run --port` (default), or the MLPerf Tiny runner protocol
//! for `qfd-host mlperf` and EEMBC's runners (`--features mlperf`).
//!
//! Wiring: UART0 TX on GP0, RX on GP1 (115200 8N1) to a USB-serial adapter; the timestamp pin is GP22.
#![no_std]
#![no_main]

use panic_halt as _;
use rp2040_hal::clocks::{init_clocks_and_plls, Clock as _};
use rp2040_hal::fugit::RateExtU32;
use rp2040_hal::gpio::{FunctionUart, Pins};
use rp2040_hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};
use rp2040_hal::{pac, Sio, Timer, Watchdog};

use qfd_device::{Board, TimeUnit};

mod model {
    // The generated model (`qfd_codegen::build_script`): weights in flash, one kernel call per layer.
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
mod config {
    // The board's name and clock, and the link's frame size for this model.
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// The RP2040 boots from this second-stage loader, which sets up the external flash.
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XTAL_HZ: u32 = 12_000_000;

/// What the protocols say about the board (`init_clocks_and_plls` runs the core at the board file's
/// 125 MHz). The stack's high-water mark goes to the host at the end of a session.
const BOARD: Board = Board {
    name: config::BOARD,
    clock_hz: config::CLOCK_HZ,
    stack_usage: Some(qfd_device::cortex_m::stack_usage),
};

/// The RP2040's 1 MHz timer as the device's clock: the Cortex-M0+ has no cycle counter, and this 64-bit
/// counter never wraps.
struct MicrosecondClock(Timer);

impl qfd_device::Clock for MicrosecondClock {
    fn unit(&self) -> TimeUnit {
        TimeUnit::Microseconds
    }
    fn now(&mut self) -> u64 {
        self.0.get_counter().ticks()
    }
    fn ticks_per_second(&self) -> u64 {
        1_000_000
    }
}

#[rp2040_hal::entry]
fn main() -> ! {
    // First, before the stack grows, so that the stack's deepest use can be measured.
    qfd_device::cortex_m::paint_stack();
    let mut pac = pac::Peripherals::take().unwrap();
    let mut watchdog = Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = init_clocks_and_plls(
        XTAL_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        panic!("the clocks did not start");
    };
    let pins = Pins::new(pac.IO_BANK0, pac.PADS_BANK0, Sio::new(pac.SIO).gpio_bank0, &mut pac.RESETS);
    let uart_pins = (pins.gpio0.into_function::<FunctionUart>(), pins.gpio1.into_function::<FunctionUart>());
    let config = UartConfig::new(115_200.Hz(), DataBits::Eight, None, StopBits::One);
    // rp2040-hal's UART implements embedded-io 0.6's Read (blocking until a byte arrives) and Write:
    // it is the port as it is, with no adapter.
    let Ok(mut uart) = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS)
        .enable(config, clocks.peripheral_clock.freq())
    else {
        panic!("the UART did not start");
    };
    let mut clock = MicrosecondClock(Timer::new(pac.TIMER, &mut pac.RESETS, &clocks));
    let mut model = qfd_device::generated_model!(model);

    // The buffers are statics rather than locals: the linker then says when they do not fit the RAM.
    // A session ends when the host is done or the UART reports an error (a break or framing error when a
    // cable is plugged in, say); either way the board then waits for the next one.
    #[cfg(feature = "mlperf")]
    {
        use qfd_device::mlperf::{self, MlperfBuffers, TimestampMode};
        // Pulsed low around the timed inferences, for an energy monitor; idles high.
        let mut pin = pins.gpio22.into_push_pull_output();
        let buffers =
            cortex_m::singleton!(: MlperfBuffers<{ model::INPUT_LEN }> = MlperfBuffers::new()).unwrap();
        let mode = TimestampMode::Performance;
        loop {
            let _ = mlperf::serve(&mut uart, &mut model, &mut clock, &mut pin, mode, &BOARD, buffers);
        }
    }
    #[cfg(not(feature = "mlperf"))]
    {
        use qfd_device::link::{self, Greeting, LinkBuffers};
        let buffers =
            cortex_m::singleton!(: LinkBuffers<{ config::REQUEST_FRAME }> = LinkBuffers::new()).unwrap();
        // The board may have booted long before the host opens the port: it speaks only when asked.
        loop {
            let _ = link::serve(&mut uart, &mut model, &mut clock, &BOARD, Greeting::OnRequest, buffers);
        }
    }
}
