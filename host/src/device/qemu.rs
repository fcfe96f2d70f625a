//! Emulated boards: `qemu-system-arm` with instruction counting, the link through two files in a work
//! directory (semihosting), defmt logs on its stdout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::target::{Finished, Progress, Target, TargetError};
use super::DeviceError;
use crate::fsutil::FsError;

/// The files the firmware opens through semihosting, relative to QEMU's working directory.
pub const REQUESTS_FILE: &str = "qfd-link.in";
/// See [`REQUESTS_FILE`].
pub const RESPONSES_FILE: &str = "qfd-link.out";

/// How often the response file is checked for new bytes.
const POLL: Duration = Duration::from_millis(20);
/// How long QEMU may take to exit after the session is over.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// One QEMU machine.
pub struct Qemu {
    machine: String,
    cpu: String,
    dir: PathBuf,
}

impl Qemu {
    /// A target that runs in `dir` (created if missing).
    pub fn new(machine: &str, cpu: &str, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Qemu { machine: machine.into(), cpu: cpu.into(), dir: dir.into() })
    }

    fn spawn(&self, elf: &Path) -> Result<Child, DeviceError> {
        command(&self.machine, &self.cpu, &self.dir, &["-serial", "none"], elf)
            .spawn()
            .map_err(|source| DeviceError::Spawn { program: "qemu-system-arm".into(), source })
    }
}

/// The QEMU command line for every emulated run: the machine, semihosting for the firmware's logs, files
/// and exit status, `-icount shift=0` so that SysTick counts guest instructions, and `serial` for the UART;
/// run in `dir`, with stdout and stderr piped.
pub(super) fn command(machine: &str, cpu: &str, dir: &Path, serial: &[&str], elf: &Path) -> Command {
    let mut qemu = Command::new("qemu-system-arm");
    qemu.current_dir(dir)
        .args(["-machine", machine, "-cpu", cpu, "-nographic", "-monitor", "none"])
        .args(serial)
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(std::path::absolute(elf).unwrap_or_else(|_| elf.to_path_buf()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    qemu
}

impl Target for Qemu {
    fn describe(&self) -> String {
        format!("qemu {}", self.machine)
    }

    fn run(
        &mut self,
        elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError> {
        let write = |name: &str, bytes: &[u8]| {
            let path = self.dir.join(name);
            std::fs::write(&path, bytes)
                .map_err(|source| TargetError::Other(DeviceError::File(FsError::Write { path, source })))
        };
        write(REQUESTS_FILE, requests)?;
        write(RESPONSES_FILE, &[])?;
        let mut child = self.spawn(elf).map_err(TargetError::Other)?;
        // stdout (defmt frames) and stderr are drained on threads so QEMU never blocks on a full pipe.
        let log = drain(child.stdout.take());
        let errors = drain(child.stderr.take());

        let responses = self.dir.join(RESPONSES_FILE);
        let (mut seen, mut last_news, mut over) = (0usize, Instant::now(), None::<Instant>);
        let status = loop {
            let exited = child.try_wait().map_err(|source| {
                TargetError::Other(DeviceError::Spawn { program: "qemu-system-arm".into(), source })
            })?;
            // Read what arrived (after an exit too: the last frames may have come just before it).
            let bytes = std::fs::read(&responses).unwrap_or_default();
            if bytes.len() > seen {
                if on_bytes(&bytes[seen..]) == Progress::Done {
                    over.get_or_insert_with(Instant::now);
                }
                seen = bytes.len();
                last_news = Instant::now();
            }
            if let Some(status) = exited {
                break status;
            }
            let quiet_for = last_news.elapsed();
            let stuck_after_done = over.is_some_and(|t| t.elapsed() > EXIT_GRACE);
            if quiet_for > timeout || stuck_after_done {
                let _ = child.kill();
                let _ = child.wait();
                if stuck_after_done {
                    // The session is complete; QEMU merely failed to exit.
                    return Ok(Finished { exit: None, log: log.join().unwrap_or_default() });
                }
                return Err(TargetError::Silent { seconds: timeout.as_secs() });
            }
            thread::sleep(POLL);
        };
        let log = log.join().unwrap_or_default();
        let errors = String::from_utf8_lossy(&errors.join().unwrap_or_default()).trim().to_string();
        if !status.success() && status.code().is_none_or(|c| c > 1) {
            // Not the firmware's own failure (status 1): QEMU itself could not run it.
            return Err(TargetError::Other(DeviceError::Device {
                board: self.machine.clone(),
                message: format!("QEMU exited with {status}: {errors}"),
            }));
        }
        Ok(Finished { exit: Some(status.success()), log })
    }
}

/// Reads a pipe to its end on a thread.
pub(super) fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        bytes
    })
}
