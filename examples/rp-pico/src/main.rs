//! A Raspberry Pi Pico serving a model over UART0 with `qfd-device`: what a user of the SDK writes for a
//! board of their own. The HAL (rp2040-hal) sets up the clocks, the UART and a pin; `qfd-device` does the
//! rest: the SDK's link for `qfd-host run --port` (default), or the MLPerf Tiny runner protocol for
//! `qfd-host mlperf` and EEMBC's runners (`--features mlperf`).
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
    // The generated model: static weights, one kernel call per layer (`qfd_codegen::build_script`).
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
mod config {
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// The RP2040 boots from this second-stage loader, which sets up the external flash.
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

const XTAL_HZ: u32 = 12_000_000;

const BOARD: Board = Board {
    name: config::BOARD,
    clock_hz: config::CLOCK_HZ,
    stack_usage: Some(qfd_device::cortex_m::stack_usage),
};

/// The RP2040's 1 MHz timer as the device's clock (the Cortex-M0+ has no cycle counter).
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
    let Ok(mut uart) = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS)
        .enable(config, clocks.peripheral_clock.freq())
    else {
        panic!("the UART did not start");
    };
    let mut clock = MicrosecondClock(Timer::new(pac.TIMER, &mut pac.RESETS, &clocks));
    let mut model = qfd_device::generated_model!(model);

    #[cfg(feature = "mlperf")]
    {
        use qfd_device::mlperf::{self, MlperfBuffers, TimestampMode};
        let mut pin = pins.gpio22.into_push_pull_output();
        let buffers =
            cortex_m::singleton!(: MlperfBuffers<{ model::INPUT_LEN }> = MlperfBuffers::new()).unwrap();
        let mode = TimestampMode::Performance;
        let _ = mlperf::serve(&mut uart, &mut model, &mut clock, &mut pin, mode, &BOARD, buffers);
    }
    #[cfg(not(feature = "mlperf"))]
    {
        use qfd_device::link::{self, Greeting, LinkBuffers};
        let buffers =
            cortex_m::singleton!(: LinkBuffers<{ config::REQUEST_FRAME }> = LinkBuffers::new()).unwrap();
        // One session per host connection; the host asks for Hello, so the board waits quietly between them.
        loop {
            let _ = link::serve(&mut uart, &mut model, &mut clock, &BOARD, Greeting::OnRequest, buffers);
        }
    }
    #[allow(unreachable_code)]
    loop {
        cortex_m::asm::wfi();
    }
}
