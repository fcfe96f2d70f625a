//! `qfd-link`: what the host and a board say to each other, and how it travels.
//!
//! One protocol for every board: [`Request`]s go to the device, [`Response`]s come back, each message
//! encoded with postcard, followed by a CRC-32 of those bytes, and COBS-framed with a `0` terminator
//! ([`frame`]). The transport underneath is a byte stream: host files over semihosting under QEMU, RTT
//! channels on real boards (probe-rs). The crate is `no_std` and allocation-free, so the firmware and the
//! host use the very same code.
//!
//! A session:
//!
//! ```text
//! device -> host   Hello { board, engine, model CRC, time unit, ... }   (unasked, or to a Hello request)
//! host -> device   Infer { id: 0, input }      device -> host   Result { id: 0, logits, time, ... }
//! host -> device   Infer { id: 1, input }      device -> host   Result { id: 1, ... }
//! host -> device   (a corrupted frame)         device -> host   Error { id: None, kind: BadFrame(Crc) }
//! host -> device   Finish                      device -> host   Done { inferences, stack }
//! ```
//!
//! A panic on the device sends [`Response::Panic`] with its location and ends the run with a failing
//! status.
//!
//! ```
//! use qfd_link::{frame, Request, Detail};
//!
//! let input = [7u8; 4];
//! let mut buf = [0u8; 64];
//! let bytes = frame::encode(&Request::Infer { id: 3, detail: Detail::default(), input: &input }, &mut buf).unwrap();
//! assert_eq!(bytes.last(), Some(&0)); // one frame, terminated by its only zero byte
//!
//! let mut copy = bytes.to_vec();
//! let n = copy.len() - 1;
//! let back: Request = frame::decode(&mut copy[..n]).unwrap();
//! assert_eq!(back, Request::Infer { id: 3, detail: Detail::default(), input: &input });
//! ```
#![no_std]
#![warn(missing_docs)]

pub mod frame;

use heapless::Vec;
use serde::{Deserialize, Serialize};

pub use frame::{FrameError, FrameReader};

/// Version of this protocol; a [`Hello`] with another version is refused by the host.
pub const PROTOCOL_VERSION: u16 = 2;
/// Most classes a [`InferResult`] carries (CIFAR-100 has 100).
pub const MAX_CLASSES: usize = 128;
/// Most layers a per-layer breakdown covers (the runtime's op table holds 128).
pub const MAX_LAYERS: usize = 128;

/// CRC-32 (ISO-HDLC, zlib's) used for frame checks and layer checksums.
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The checksum of one layer's output bytes, as [`InferResult::layer_crc`] carries it. The host computes
/// the same from its own run to name the first layer whose output differs.
pub fn layer_crc(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// Host to device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Run one inference on `input` (the model's input codes; raw pixels for a trained model).
    Infer {
        /// Echoed in the [`InferResult`].
        id: u32,
        /// What to measure besides the logits.
        detail: Detail,
        /// `input_len` bytes.
        input: &'a [u8],
    },
    /// No more requests: the device answers [`Response::Done`] and stops.
    Finish,
    /// Say [`Response::Hello`] (again): over a serial port the host opens the link long after the board
    /// booted, so it asks.
    Hello,
}

/// Optional measurements of one inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// Time each layer.
    pub layer_time: bool,
    /// Checksum each layer's output ([`layer_crc`]).
    pub layer_crc: bool,
}

/// Device to host.
// A `Result` is ~2 KB and the other variants are small; without an allocator there is no box to put it in,
// and the device builds one response at a time anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// Sent once, first: what runs on the device.
    #[serde(borrow)]
    Hello(Hello<'a>),
    /// The answer to one [`Request::Infer`].
    Result(InferResult),
    /// A request that could not be served; the device goes on with the next one.
    Error {
        /// The request's id, when it could be read.
        id: Option<u32>,
        /// What was wrong.
        kind: ErrorKind,
    },
    /// The answer to [`Request::Finish`]: the last frame of a successful run.
    Done(Done),
    /// The firmware panicked; the run ends with a failing status after this frame.
    #[serde(borrow)]
    Panic(PanicReport<'a>),
}

/// What runs on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// [`PROTOCOL_VERSION`] of the firmware.
    pub protocol: u16,
    /// Board name, as in `boards/<name>.toml`.
    pub board: &'a str,
    /// How the model is run.
    pub engine: Engine,
    /// The payload CRC-32 of the `.qfdm` file the firmware was built from.
    pub model_crc: u32,
    /// What [`InferResult::time`] counts.
    pub time_unit: TimeUnit,
    /// Core clock in Hz.
    pub clock_hz: u32,
    /// Bytes of one input.
    pub input_len: u32,
    /// Logits per result.
    pub num_classes: u16,
    /// Layers of the model (the length of per-layer breakdowns).
    pub num_layers: u16,
    /// Bytes of the activation arena.
    pub arena_bytes: u32,
}

/// How the firmware runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    /// Code generated for this model by `qfd-codegen` (the default).
    Generated,
    /// The `.qfdm` file in flash, run by the `qfd-runtime` interpreter.
    Interpreter,
}

/// The unit of a time measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeUnit {
    /// Guest instructions (QEMU with `-icount shift=0`; it models no pipeline, so these are not cycles).
    Instructions,
    /// Core clock cycles (a real board).
    Cycles,
    /// Microseconds (a board timed by a microsecond timer, such as the RP2040's).
    Microseconds,
}

/// One inference's outputs and measurements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferResult {
    /// The request's id.
    pub id: u32,
    /// The predicted class (the first largest logit).
    pub class: u16,
    /// One logit per class.
    pub logits: Vec<i32, MAX_CLASSES>,
    /// Time of the whole inference, in [`Hello::time_unit`].
    pub time: u64,
    /// Time of each layer, when [`Detail::layer_time`] was asked; empty otherwise.
    pub layer_time: Vec<u64, MAX_LAYERS>,
    /// [`layer_crc`] of each layer's output, when [`Detail::layer_crc`] was asked; empty otherwise.
    pub layer_crc: Vec<u32, MAX_LAYERS>,
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The frame could not be read.
    BadFrame(FrameError),
    /// The input is not `expected` bytes long.
    InputLength {
        /// Bytes the model reads.
        expected: u32,
        /// Bytes received.
        found: u32,
    },
    /// An input code does not fit the model's input bit-width.
    InputCodeOutOfRange {
        /// Its position.
        index: u32,
    },
    /// The model refused a checked input (a bug in the firmware or the model).
    Refused,
}

/// The end of a successful run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Inferences run.
    pub inferences: u32,
    /// Deepest stack use seen (stack painting), and the stack's size.
    pub stack: StackUse,
}

/// Stack high-water mark, from painting the stack at start-up and finding the deepest overwritten word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackUse {
    /// Bytes used at the deepest point.
    pub peak_bytes: u32,
    /// Bytes available to the stack.
    pub size_bytes: u32,
}

/// Where the firmware panicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicReport<'a> {
    /// Source file.
    pub file: &'a str,
    /// Line in it.
    pub line: u32,
    /// The panic message (possibly cut short).
    pub message: &'a str,
}

/// The largest frame a [`Request::Infer`] for an input of `input_len` bytes needs, terminator included:
/// the size of the device's receive buffer.
pub const fn max_request_frame(input_len: usize) -> usize {
    // Tag (1) + id (5) + detail (2) + input length (5) + input, then the CRC (4).
    let message = 1 + 5 + 2 + 5 + input_len + 4;
    frame::max_encoded_len(message)
}

/// The largest frame a [`Response`] needs, terminator included: the size of the device's send buffer.
/// The biggest are a [`Response::Result`] with both per-layer breakdowns and a [`Response::Panic`]
/// with a [`MAX_PANIC_MESSAGE`] message.
pub const MAX_RESPONSE_FRAME: usize = {
    // Tag, id, class, time, three length prefixes; then varints of at most 5 (i32, u32) or 10 (u64) bytes.
    let result = 1 + 5 + 3 + 10 + 3 * 2 + MAX_CLASSES * 5 + MAX_LAYERS * (10 + 5);
    let panic = 1 + 2 + MAX_PANIC_FILE + 5 + 2 + MAX_PANIC_MESSAGE;
    let message = if result > panic { result } else { panic };
    frame::max_encoded_len(message + 4)
};

/// Bytes of a panic message the firmware sends; longer messages are cut.
pub const MAX_PANIC_MESSAGE: usize = 256;
/// Bytes of a panic's file name the firmware sends; longer names are cut.
pub const MAX_PANIC_FILE: usize = 128;

#[cfg(test)]
mod tests;
