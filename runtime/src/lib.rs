//! `qfd-runtime`: integer-only inference for low-bit QFD models, `no_std` and allocation-free.
//!
//! The same code is the reference simulation on the host and the inference engine on every board. A model
//! is a `.qfdm` file ([`format`]); [`Model::load`] checks it once, after which [`Model::run`] cannot go out of
//! bounds or overflow, whatever the file held. All working memory is one caller-provided arena whose size the
//! model states ([`Model::arena_size`]).
//!
//! # Running a model from your own firmware
//!
//! ```no_run
//! use qfd_runtime::Model;
//!
//! static MODEL: &[u8] = &[/* include_bytes!("model.qfdm") */];
//! static mut ARENA: [u8; 48 * 1024] = [0; 48 * 1024];
//!
//! fn classify(pixels: &[u8], arena: &mut [u8]) -> Result<usize, &'static str> {
//!     let model = Model::load(MODEL).map_err(|_| "bad model")?;
//!     let mut logits = [0i32; 10];
//!     model.run(pixels, arena, &mut logits[..model.num_classes()]).map_err(|_| "cannot run")
//! }
//! ```
//!
//! The arithmetic contract (what each op computes, bit for bit) is in `docs/arithmetic.md`; the file format in
//! `docs/format.md`.
#![no_std]
#![warn(missing_docs)]

// Generating Rust for a model (`ops::emit`) is host work, for `qfd-codegen`.
#[cfg(feature = "emit")]
extern crate std;

pub mod arena;
pub mod codes;
mod error;
pub mod format;
pub mod kernels;
mod model;
pub mod ops;
pub mod requant;
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
mod validate;
pub mod weights;

pub use arena::StaticArena;
pub use codes::{Codes, CodesMut};
pub use error::{LoadError, RunError};
pub use format::{ModelDesc, OpDesc};
pub use model::{LayerOutput, Model, DEFAULT_MAX_WORK, PAYLOAD_CRC};
