//! The port under the protocols, and how a run ends.
//!
//! One transport per kind of board, chosen by `build.rs`; each implements `embedded_io::{Read, Write}`,
//! so `qfd-device` serves the protocols over any of them:
//! - QEMU boards, host files ([`semihosting`]): requests are read from the host file `qfd-link.in` and
//!   responses written to `qfd-link.out` (both in QEMU's working directory).
//! - QEMU boards, UART ([`uart`], `QFD_LINK=uart`): the machine's first UART, which QEMU's `-serial`
//!   connects to the host; the host opens the link, so the firmware waits to be asked for `Hello`.
//! - Under QEMU, logs go to semihosting stdout and the run ends with a semihosting exit, whose status
//!   QEMU returns.
//! - Real boards ([`rtt`]): requests arrive on RTT down channel 0 and responses leave on up channel 1,
//!   both named `qfd-link`; defmt logs use up channel 0. There is nobody to exit to, so the core sleeps.

#[cfg(qfd_emulated)]
mod semihosting;
#[cfg(qfd_emulated)]
pub use semihosting::exit;
#[cfg(qfd_link = "semihosting")]
pub use semihosting::{emergency_write, open};

#[cfg(qfd_link = "uart")]
mod uart;
#[cfg(qfd_link = "uart")]
pub use uart::{emergency_write, open};

#[cfg(qfd_link = "rtt")]
mod rtt;
#[cfg(all(qfd_link = "rtt", not(feature = "mlperf")))]
pub use rtt::GREETING;
#[cfg(qfd_link = "rtt")]
pub use rtt::{emergency_write, exit, open};
/// Whether the device says `Hello` unasked.
#[cfg(all(qfd_link = "semihosting", not(feature = "mlperf")))]
pub use semihosting::GREETING;
#[cfg(all(qfd_link = "uart", not(feature = "mlperf")))]
pub use uart::GREETING;
