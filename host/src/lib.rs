//! `qfd-host`: the host side of the QFD Edge SDK, as a library behind the `qfd-host` command line.
//!
//! The commands in `src/cmd/` stay short; what they do lives here so tests and later commands reuse it:
//! - [`args`]: parsing of the shared command-line values (`--bits 4/4`, `--input 32x32x3`, `--arch`);
//! - [`data`]: training sets (Fashion-MNIST, CIFAR-10/100) decoded once into flat memory;
//! - [`fsutil`]: reading files with errors that name the path, and atomic writes;
//! - [`model_file`]: reading and validating a `.qfdm` file, with a hint for the user when it is refused;
//! - [`report`]: the description of a model that `qfd-host inspect` prints as text or JSON;
//! - [`table`]: aligned plain-text tables;
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
pub mod fsutil;
pub mod model_file;
pub mod report;
pub mod table;
pub mod train;

/// Written into every model file this tool produces.
pub const PRODUCER: &str = concat!("qfd-host ", env!("CARGO_PKG_VERSION"));
