//! `qfd-host`: the host side of the QFD Edge SDK, as a library behind the `qfd-host` command line.
//!
//! The commands in `src/cmd/` stay short; what they do lives here so tests and later commands reuse it:
//! - [`args`]: parsing of the shared command-line values (`--bits 4/4`, `--input 32x32x3`, `--arch`);
//! - [`data`]: training sets (Fashion-MNIST, CIFAR-10/100) decoded once into flat memory;
//! - [`eval`]: accuracy, per-class accuracy and confusion matrix of a model under the integer runtime;
//! - [`device`]: building firmware for a board, running it (QEMU) and checking it against the host;
//! - [`export`]: a trained quantized checkpoint as an integer `.qfdm` model;
//! - [`fsutil`]: reading files with errors that name the path, and atomic writes;
//! - [`model_file`]: reading and validating a `.qfdm` file, with a hint for the user when it is refused;
//! - [`npy`]: NumPy `.npy` files of `uint8` and `int32` arrays;
//! - [`report`]: the description of a model that `qfd-host inspect` prints as text or JSON;
//! - [`study`]: `qfd-host study`: a grid of methods, bit-widths and seeds trained, exported, checked on a
//!   board and written up as a report;
//! - [`table`]: aligned plain-text tables;
//! - [`trace`]: every op's output for one input, written as `.npy` files with a JSON index;
//! - [`train`]: the training graph: quantized layers, architectures and losses (QFD and baselines).
//!
//! ```no_run
//! use qfd_host::{model_file::ModelFile, report::ModelReport};
//!
//! let file = ModelFile::read("resnet8.qfdm".as_ref())?;
//! let report = ModelReport::from_file(&file)?;
//! println!("{}: {} MACs, {} bytes of arena", report.arch, report.total_macs, report.arena_bytes);
//! # Ok::<(), qfd_host::model_file::ModelFileError>(())
//! ```
#![warn(missing_docs)]

pub mod args;
pub mod data;
pub mod device;
pub mod eval;
pub mod export;
pub mod fsutil;
pub mod model_file;
pub mod npy;
pub mod report;
pub mod study;
pub mod table;
pub mod trace;
pub mod train;

/// Written into every model file this tool produces.
pub const PRODUCER: &str = concat!("qfd-host ", env!("CARGO_PKG_VERSION"));
