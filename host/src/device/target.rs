//! Where firmware runs: one trait, with QEMU, probe-rs (feature `probe`) and a fake for tests behind it.

use std::path::Path;
use std::time::Duration;

use qfd_boards::{Board, Runner};

use super::DeviceError;

/// What the session wants after a chunk of the device's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More answers are due.
    More,
    /// The session is over (the closing frame, or a failure): stop when the device is done.
    Done,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The firmware's exit status, where the target has one (QEMU): `Some(true)` for success.
    pub exit: Option<bool>,
    /// The device's log bytes (defmt frames).
    pub log: Vec<u8>,
}

/// Why a target could not finish a run.
#[derive(Debug)]
pub enum TargetError {
    /// The device sent nothing for this many seconds; it was stopped.
    Silent {
        /// The time limit.
        seconds: u64,
    },
    /// Anything else (the target could not start, a probe failed), already explained.
    Other(DeviceError),
}

/// A place to run firmware: it loads `elf`, sends it `requests` (a stream of link frames), and hands
/// every chunk of bytes the device sends on the link to `on_bytes` as it arrives, until `on_bytes` says
/// [`Progress::Done`] and the device stops, or the device is silent for `timeout`.
pub trait Target {
    /// How it runs, e.g. `qemu mps2-an386`.
    fn describe(&self) -> String;

    /// Runs one session.
    fn run(
        &mut self,
        elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError>;
}

/// The target for a board: QEMU for emulated boards, probe-rs for real ones (with the `probe` feature).
pub fn for_board(board: &Board, work_dir: &Path) -> Result<Box<dyn Target>, DeviceError> {
    match &board.run {
        Runner::Qemu { machine, cpu, .. } => {
            Ok(Box::new(super::qemu::Qemu::new(machine, cpu, work_dir).map_err(|source| {
                DeviceError::File(crate::fsutil::FsError::Write { path: work_dir.into(), source })
            })?))
        }
        #[cfg(feature = "probe")]
        Runner::Probe { chip } => Ok(Box::new(super::probe::Probe::new(chip))),
        #[cfg(not(feature = "probe"))]
        Runner::Probe { .. } => {
            Err(DeviceError::NeedsProbe { board: board.name.clone(), runner: board.run.to_string() })
        }
    }
}
