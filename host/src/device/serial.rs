//! Serial links: a board's UART, either a real serial port (`/dev/ttyACM0`) or an emulated board's UART,
//! which QEMU's `-serial` puts on a Unix socket in the run's work directory.
//!
//! The SDK's link runs in lockstep here ([`lockstep`]): one request frame, then its one answer frame.
//! A UART has no flow control, so the host never sends while the board is busy running the model.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use super::target::{Finished, Progress, Target, TargetError};
use super::DeviceError;

/// How long one read waits before the caller checks its own deadline.
const READ_POLL: Duration = Duration::from_millis(50);
/// How long QEMU may take to create its socket, and to exit after the session.
const QEMU_GRACE: Duration = Duration::from_secs(10);

/// A byte stream to a board.
pub trait Port: Read + Write + Send {}
impl<T: Read + Write + Send> Port for T {}

/// Where a serial link goes: an emulated board's UART or a serial device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortName {
    /// The UART of the QEMU machine (`--port qemu`).
    Qemu,
    /// A serial device such as `/dev/ttyACM0`, at this baud rate.
    Device {
        /// The device path.
        path: String,
        /// Bits per second.
        baud: u32,
    },
}

impl std::fmt::Display for PortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortName::Qemu => f.write_str("QEMU's UART"),
            PortName::Device { path, baud } => write!(f, "{path} at {baud} baud"),
        }
    }
}

/// An open serial link, and the QEMU process behind it if the board is emulated.
pub struct Session {
    /// The link.
    pub port: Box<dyn Port>,
    qemu: Option<QemuProcess>,
}

impl Session {
    /// Opens the serial device `path` at `baud`.
    pub fn device(path: &str, baud: u32) -> Result<Self, DeviceError> {
        let port =
            serialport::new(path, baud).timeout(READ_POLL).open().map_err(|e| DeviceError::Device {
                board: path.into(),
                message: format!(
                    "cannot open the serial port: {e} (is the board plugged in, and is the port yours?)"
                ),
            })?;
        let mut session = Session { port: Box::new(port), qemu: None };
        session.drain();
        Ok(session)
    }

    /// Starts `elf` on QEMU's `machine` with its first UART on a socket in `dir`, and connects to it.
    /// QEMU waits for the connection before it starts the core, so nothing the firmware says is lost.
    pub fn qemu(machine: &str, cpu: &str, elf: &Path, dir: &Path) -> Result<Self, DeviceError> {
        let socket = dir.join("uart.sock");
        let _ = std::fs::remove_file(&socket);
        let chardev = format!("socket,id=uart,path={},server=on,wait=on", socket.display());
        let mut child =
            super::qemu::command(machine, cpu, dir, &["-chardev", &chardev, "-serial", "chardev:uart"], elf)
                .spawn()
                .map_err(|source| DeviceError::Spawn { program: "qemu-system-arm".into(), source })?;
        let log = super::qemu::drain(child.stdout.take());
        let errors = super::qemu::drain(child.stderr.take());
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < QEMU_GRACE && child.try_wait().ok().flatten().is_none() => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let said = String::from_utf8_lossy(&errors.join().unwrap_or_default()).trim().to_string();
                    return Err(DeviceError::Device {
                        board: machine.into(),
                        message: format!(
                            "cannot connect to QEMU's UART at {}: {e}; QEMU said: {said}",
                            socket.display()
                        ),
                    });
                }
            }
        };
        stream
            .set_read_timeout(Some(READ_POLL))
            .map_err(|source| DeviceError::Spawn { program: "socket".into(), source })?;
        let qemu = QemuProcess { child, log: Some(log), errors: Some(errors), machine: machine.into() };
        Ok(Session { port: Box::new(stream), qemu: Some(qemu) })
    }

    /// Whether the board is QEMU, started for this session (a real board booted before the port opened).
    pub fn is_emulated(&self) -> bool {
        self.qemu.is_some()
    }

    /// Throws away what the board sent before we listened (a boot banner, half a frame).
    fn drain(&mut self) {
        let mut buf = [0u8; 256];
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            match self.port.read(&mut buf) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// Reads what has arrived; `Ok(0)` when nothing came within a short poll.
    pub fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the session: waits for QEMU to exit (`wait_exit`) or stops it, and returns its status and log.
    pub fn finish(self, wait_exit: bool) -> Result<Finished, DeviceError> {
        drop(self.port);
        let Some(mut q) = self.qemu else { return Ok(Finished::default()) };
        let start = Instant::now();
        let status = loop {
            match q.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if !wait_exit || start.elapsed() > QEMU_GRACE => break None,
                _ => thread::sleep(Duration::from_millis(20)),
            }
        };
        if status.is_none() {
            let _ = q.child.kill();
            let _ = q.child.wait();
        }
        let join = |h: Option<thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let log = join(q.log.take());
        let errors = String::from_utf8_lossy(&join(q.errors.take())).trim().to_string();
        if let Some(status) = status {
            if !status.success() && status.code().is_none_or(|c| c > 1) {
                return Err(DeviceError::Device {
                    board: q.machine.clone(),
                    message: format!("QEMU exited with {status}: {errors}"),
                });
            }
        }
        Ok(Finished { exit: status.map(|s| s.success()), log })
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU running the firmware, with threads draining its output.
struct QemuProcess {
    child: Child,
    log: Option<thread::JoinHandle<Vec<u8>>>,
    errors: Option<thread::JoinHandle<Vec<u8>>>,
    machine: String,
}

/// The SDK's link over a serial session, in lockstep: each request frame of `requests` is sent once
/// the previous one has its answer frame; every chunk the board sends goes to `on_bytes`.
pub fn lockstep(
    session: &mut Session,
    requests: &[u8],
    timeout: Duration,
    on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
) -> Result<(), TargetError> {
    let io_error = |e: std::io::Error| {
        TargetError::Other(DeviceError::Device {
            board: "serial port".into(),
            message: format!("the link failed: {e}"),
        })
    };
    let mut buf = vec![0u8; 4096];
    for frame in requests.split_inclusive(|&b| b == 0) {
        session.port.write_all(frame).and_then(|()| session.port.flush()).map_err(io_error)?;
        let mut last_news = Instant::now();
        // One answer frame per request frame: read until its terminator.
        loop {
            let n = session.read_some(&mut buf).map_err(io_error)?;
            if n == 0 {
                if last_news.elapsed() > timeout {
                    return Err(TargetError::Silent { seconds: timeout.as_secs() });
                }
                continue;
            }
            last_news = Instant::now();
            if on_bytes(&buf[..n]) == Progress::Done {
                return Ok(());
            }
            if buf[..n].contains(&0) {
                break;
            }
        }
    }
    Ok(())
}

/// A board reached through a serial link: the SDK's link in lockstep.
pub struct SerialTarget {
    name: PortName,
    qemu: Option<(String, String)>,
    dir: PathBuf,
}

impl SerialTarget {
    /// The link `name`; `qemu` is the machine and CPU for [`PortName::Qemu`].
    pub fn new(name: PortName, qemu: Option<(String, String)>, dir: &Path) -> Self {
        SerialTarget { name, qemu, dir: dir.into() }
    }

    /// Opens the link, starting QEMU with `elf` for an emulated board.
    pub fn open(&self, elf: &Path) -> Result<Session, DeviceError> {
        match (&self.name, &self.qemu) {
            (PortName::Qemu, Some((machine, cpu))) => Session::qemu(machine, cpu, elf, &self.dir),
            (PortName::Device { path, baud }, _) => Session::device(path, *baud),
            (PortName::Qemu, None) => {
                Err(DeviceError::Mismatch("--port qemu needs an emulated board".into()))
            }
        }
    }
}

impl Target for SerialTarget {
    fn describe(&self) -> String {
        match &self.qemu {
            Some((machine, _)) => format!("qemu {machine}, UART link"),
            None => format!("serial {}", self.name),
        }
    }

    fn run(
        &mut self,
        elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError> {
        let mut session = self.open(elf).map_err(TargetError::Other)?;
        lockstep(&mut session, requests, timeout, on_bytes)?;
        session.finish(true).map_err(TargetError::Other)
    }
}
