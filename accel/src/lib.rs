//! Runs `.qfdm` integer models on [burn](https://burn.dev) backends, bit for bit as `qfd-runtime` does.
//!
//! The runtime runs one image at a time on a microcontroller (and on the host's cores, for `qfd-host eval`).
//! This crate runs the same model on whole batches, on the host's CPU cores or on a GPU, with the
//! arithmetic of `docs/arithmetic.md` and nothing else: every value stays an integer, every accumulator is
//! the exact `i32` sum, every requantization the one exact 64-bit rounding. So its logits are the runtime's,
//! element for element; the tests check that on every synthetic architecture at every bit-width, on
//! trained models and on the fixture of every op kind.
//!
//! ```no_run
//! use qfd_accel::{Backend, Engine};
//! use qfd_runtime::Model;
//!
//! let bytes = std::fs::read("resnet8.qfdm")?;
//! let model = Model::load(&bytes)?;
//! let engine = Engine::new(&model, Backend::Flex)?;
//! let images = vec![0u8; 64 * engine.input_len()];
//! let classes = engine.predict(&images)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How each op maps onto tensor operations, and what a backend must offer, is in `docs/accel.md`.
//!
//! - [`backend`]: which burn backend runs the model.
//! - [`engine`]: the model as a list of tensor layers, run on batches.
//! - `layers`, `requant`, `window`: one op kind, the requantization and the sliding window each.

#![warn(missing_docs)]

pub mod backend;
pub mod engine;
mod error;
mod layers;
mod requant;
mod tensor;
mod window;

pub use backend::Backend;
pub use engine::{Engine, RequantForm};
pub use error::AccelError;
