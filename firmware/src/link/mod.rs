//! The byte stream under the `qfd-link` frames, and how a run ends.
//!
//! One transport per kind of board, chosen by `build.rs` from the board file; both implement
//! `embedded_io::{Read, Write}`, so the session is written once:
//! - QEMU boards ([`semihosting`]): requests are read from the host file `qfd-link.in` and responses
//!   written to `qfd-link.out` (both in QEMU's working directory); the run ends with a semihosting exit,
//!   whose status QEMU returns.
//! - Real boards ([`rtt`]): requests arrive on RTT down channel 0 and responses leave on up channel 1,
//!   both named `qfd-link`; defmt logs use up channel 0. There is nobody to exit to, so the core sleeps.

#[cfg(qfd_link = "semihosting")]
mod semihosting;
#[cfg(qfd_link = "semihosting")]
pub use semihosting::{emergency_write, exit, open};

#[cfg(qfd_link = "rtt")]
mod rtt;
#[cfg(qfd_link = "rtt")]
pub use rtt::{emergency_write, exit, open};
