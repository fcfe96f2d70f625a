//! `qfd-device`: the device side of the SDK, for any firmware on any HAL.
//!
//! Your firmware brings three things, and this crate does the rest:
//! - a serial port: anything that implements `embedded_io::{Read, Write}` (a HAL's UART, USB CDC, RTT);
//! - the model: code generated for it ([`generated_model!`]) or its `.qfdm` file run by the interpreter
//!   ([`Interpreter`]);
//! - a [`Clock`]: DWT's cycle counter ([`cortex_m::DwtClock`], feature `cortex-m`) or your own.
//!
//! Then one call serves a protocol until the host is done or the port fails (call it again to serve the
//! next session):
//! - [`link::serve`]: the SDK's own link (postcard messages in CRC-checked COBS frames), which
//!   `qfd-host run --port` speaks to prove the board computes what the host computes;
//! - [`mlperf::serve`]: the MLPerf Tiny runner protocol (`name%`, `db load N%`, `infer N W%`, ...), which
//!   `qfd-host mlperf` and the EEMBC runners speak, with an `embedded_hal::digital::OutputPin` as the
//!   timestamp pin.
//!
//! ```ignore
//! mod model { include!(concat!(env!("OUT_DIR"), "/model.rs")); }
//!
//! let mut model = qfd_device::generated_model!(model);
//! let board = qfd_device::Board { name: "rp-pico", clock_hz: 125_000_000, stack_usage: None };
//! let mode = qfd_device::mlperf::TimestampMode::Performance;
//! qfd_device::mlperf::serve(&mut uart, &mut model, &mut clock, &mut pin, mode, &board, buffers);
//! ```
//!
//! The crate is `no_std` and allocation-free; its buffers are sized by the model at compile time and
//! passed in, so they can live in statics and the linker says when they do not fit.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "cortex-m")]
pub mod cortex_m;
#[cfg(feature = "std")]
pub mod host;
pub mod link;
pub mod mlperf;
mod model;

pub use model::{Interpreter, Model, ModelInfo};
pub use qfd_link::{Engine, StackUse, TimeUnit};
pub use qfd_runtime::LayerOutput;

/// What the protocols say about the board.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// Its name (`boards/<name>.toml` in the SDK).
    pub name: &'static str,
    /// The core clock in Hz.
    pub clock_hz: u32,
    /// The deepest stack use so far, if the firmware measures it ([`cortex_m::stack_usage`]).
    pub stack_usage: Option<fn() -> StackUse>,
}

/// Time on the device.
pub trait Clock {
    /// What [`Clock::now`] counts.
    fn unit(&self) -> TimeUnit;
    /// Ticks since some start; must not wrap between two calls.
    fn now(&mut self) -> u64;
    /// Ticks per second, to turn ticks into microseconds (10^9 for QEMU's instruction count, where the
    /// virtual clock advances 1 ns per instruction).
    fn ticks_per_second(&self) -> u64;
}

/// Why serving a protocol stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeError {
    /// The port could not be read.
    Read,
    /// The port could not be written.
    Write,
    /// The port reached its end before the host said `Finish`.
    Ended,
    /// A buffer is smaller than the model needs (an input, a frame).
    BufferTooSmall,
}

impl ServeError {
    /// What happened, in words.
    pub fn message(&self) -> &'static str {
        match self {
            ServeError::Read => "cannot read the port",
            ServeError::Write => "cannot write the port",
            ServeError::Ended => "the port ended before the host said Finish",
            ServeError::BufferTooSmall => "a buffer is smaller than the model needs",
        }
    }
}

impl core::fmt::Display for ServeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ServeError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.message())
    }
}

impl core::error::Error for ServeError {}
