//! Real boards through a debug probe (probe-rs): flash the ELF, reset, and speak the link over RTT (down
//! channel 0 carries requests, up channel 1 responses, up channel 0 defmt logs).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use probe_rs::flashing::{download_file, ElfLoader, ElfOptions};
use probe_rs::rtt::Rtt;
use probe_rs::{Session, SessionConfig};

use super::target::{Finished, Progress, Target, TargetError};
use super::DeviceError;

/// How long the firmware may take to set up its RTT control block after reset.
const RTT_SETUP: Duration = Duration::from_secs(3);

/// A board reached through the first probe found.
pub struct Probe {
    chip: String,
}

impl Probe {
    /// The board whose chip probe-rs knows as `chip`.
    pub fn new(chip: &str) -> Self {
        Probe { chip: chip.into() }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> TargetError {
        TargetError::Other(DeviceError::Device {
            board: self.chip.clone(),
            message: format!(
                "{what}: {e} (is the board connected, powered and not held by another debugger?)"
            ),
        })
    }
}

impl Target for Probe {
    fn describe(&self) -> String {
        format!("probe-rs {}", self.chip)
    }

    fn run(
        &mut self,
        elf: &Path,
        requests: &[u8],
        timeout: Duration,
        on_bytes: &mut dyn FnMut(&[u8]) -> Progress,
    ) -> Result<Finished, TargetError> {
        let mut session = Session::auto_attach(self.chip.as_str(), SessionConfig::default())
            .map_err(|e| self.fail("cannot attach to the probe", e))?;
        download_file(&mut session, elf, ElfLoader(ElfOptions::default()))
            .map_err(|e| self.fail("cannot flash the firmware", e))?;
        let mut core = session.core(0).map_err(|e| self.fail("cannot reach core 0", e))?;
        core.reset().map_err(|e| self.fail("cannot reset the core", e))?;
        let start = Instant::now();
        let mut rtt = loop {
            match Rtt::attach(&mut core) {
                Ok(rtt) => break rtt,
                Err(_) if start.elapsed() < RTT_SETUP => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(self.fail("the firmware set up no RTT control block", e)),
            }
        };

        let (mut sent, mut log, mut buf) = (0usize, Vec::new(), vec![0u8; 4096]);
        let mut last_news = Instant::now();
        loop {
            let mut busy = false;
            if sent < requests.len() {
                let down = rtt.down_channel(0).ok_or_else(|| self.fail("RTT", "no down channel 0"))?;
                let n =
                    down.write(&mut core, &requests[sent..]).map_err(|e| self.fail("cannot write RTT", e))?;
                sent += n;
                busy |= n > 0;
            }
            if let Some(logs) = rtt.up_channel(0) {
                let n = logs.read(&mut core, &mut buf).map_err(|e| self.fail("cannot read RTT", e))?;
                log.extend_from_slice(&buf[..n]);
            }
            let up = rtt.up_channel(1).ok_or_else(|| self.fail("RTT", "no up channel 1 (qfd-link)"))?;
            let n = up.read(&mut core, &mut buf).map_err(|e| self.fail("cannot read RTT", e))?;
            if n > 0 {
                busy = true;
                last_news = Instant::now();
                if on_bytes(&buf[..n]) == Progress::Done {
                    return Ok(Finished { exit: None, log });
                }
            }
            if last_news.elapsed() > timeout {
                return Err(TargetError::Silent { seconds: timeout.as_secs() });
            }
            if !busy {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
