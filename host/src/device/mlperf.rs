//! `qfd-host mlperf`: the host side of the MLPerf Tiny runner protocol, our own implementation of the
//! published command set (see `qfd_device::mlperf` for the device side and the transcript).
//!
//! It builds the firmware with the protocol (`--features mlperf`), opens the board's UART (QEMU's, or a
//! serial device), asks `name` and `profile`, and for each input loads it with `db load` / `db <hex>` and
//! runs `infer N W`. Every `m-results-[...]` is compared with the host runtime's logits for the same input:
//! the protocol carries the model's integer logits, so they must be equal.
//! - performance mode: a few inputs, `N` timed inferences each; the latency of one input is the time
//!   between its two `m-lap-us` lines over `N`, and the report gives the median, as the runner does;
//! - accuracy mode: every input once (`infer 1 0`); top-1 accuracy on the device and on the host.

use std::time::{Duration, Instant};

use qfd_boards::Board;
use serde::Serialize;

use super::serial::{PortName, Session};
use super::{check_port, firmware, host_answer, inputs, DeviceError, MemoryUse, RunOptions};
use crate::model_file::ModelFile;

/// Bytes per `db` command: 64 hex digits, within the 80-character commands of the reference firmware.
const DB_CHUNK: usize = 32;

/// What the runner measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Median latency of `N` back-to-back inferences on a few inputs.
    Performance,
    /// Top-1 accuracy over the inputs, one inference each.
    Accuracy,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MlperfOptions {
    /// Board, model, inputs, port, timeout, build-only (`trace` and layer timing do not apply).
    pub run: RunOptions,
    /// Performance or accuracy.
    pub mode: Mode,
    /// Timed inferences per input (performance mode).
    pub iterations: u32,
    /// Warm-up inferences before them.
    pub warmup: u32,
}

/// One input's answer.
#[derive(Debug, Clone, Serialize)]
pub struct InputResult {
    /// Its index among the inputs.
    pub index: usize,
    /// The device's logits (`m-results-[...]`).
    pub results: Vec<i32>,
    /// Whether they equal the host runtime's.
    pub equal: bool,
    /// Microseconds per inference between the `m-lap-us` timestamps (performance mode).
    pub latency_us: Option<f64>,
}

/// What a runner session found.
#[derive(Debug, Clone, Serialize)]
pub struct MlperfReport {
    /// The board.
    pub board: String,
    /// The link.
    pub port: String,
    /// The mode.
    pub mode: Mode,
    /// `m-name-...` and `m-profile-` / `m-model-` lines.
    pub device: Vec<String>,
    /// The data set of the inputs.
    pub dataset: String,
    /// Per input.
    pub inputs: Vec<InputResult>,
    /// Inputs whose results differ from the host runtime's.
    pub mismatches: usize,
    /// Inputs with a label.
    pub labelled: usize,
    /// Top-1 correct on the device, and on the host.
    pub device_correct: usize,
    /// See `device_correct`.
    pub host_correct: usize,
    /// Median latency in microseconds (performance mode); under QEMU a microsecond is 1,000 instructions.
    pub median_latency_us: Option<f64>,
    /// Timed inferences per input.
    pub iterations: u32,
    /// The firmware's memory use.
    pub memory: MemoryUse,
}

impl MlperfReport {
    /// Whether every result equals the host runtime's.
    pub fn parity(&self) -> bool {
        self.mismatches == 0 && !self.inputs.is_empty()
    }

    /// The report in the runner's words.
    pub fn to_text(&self) -> String {
        let m = &self.memory;
        let mut out = format!(
            "MLPerf Tiny runner protocol: {} over {}\n{}\nflash {} of {} B, static RAM {} of {} B (arena {} B)\n",
            self.board,
            self.port,
            self.device.join("\n"),
            m.flash_bytes,
            m.flash_total,
            m.ram_static_bytes,
            m.ram_total,
            m.arena_bytes
        );
        if self.inputs.is_empty() {
            return out + "(built only, not run)\n";
        }
        if self.mode == Mode::Performance {
            for (window, input) in self.inputs.iter().enumerate() {
                let us = input.latency_us.unwrap_or(0.0);
                out += &format!(
                    "Performance results for window {}:\n  # Inferences : {:>12}\n  Runtime      : {:>12.6} sec.\n  Throughput   : {:>12.3} inf./sec.\n",
                    window + 1,
                    self.iterations,
                    us * f64::from(self.iterations) / 1e6,
                    1e6 / us.max(f64::MIN_POSITIVE)
                );
            }
            if let Some(median) = self.median_latency_us {
                out += &format!(
                    "Median throughput is {:>12.3} inf./sec.\nMedian latency is {median:.1} us\n",
                    1e6 / median.max(f64::MIN_POSITIVE)
                );
            }
        }
        let n = self.inputs.len();
        out += &format!("results equal to the host runtime's: {} of {n} inputs\n", n - self.mismatches);
        if self.labelled > 0 {
            let pct = |c: usize| 100.0 * c as f64 / self.labelled as f64;
            out += &format!(
                "Top-1: {:.2}% on the device, {:.2}% on the host ({} labelled inputs)\n",
                pct(self.device_correct),
                pct(self.host_correct),
                self.labelled
            );
        }
        out
    }
}

/// Builds the MLPerf firmware, runs the runner's command sequence and compares every result with the
/// host runtime's. `progress(done, total)` after each input.
pub fn run(
    opts: &MlperfOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<MlperfReport, DeviceError> {
    let run = &opts.run;
    let board = Board::load(&qfd_boards::boards_dir(), &run.board)?;
    let port = match (&run.port, board.is_emulated()) {
        (Some(p), _) => p.clone(),
        (None, true) => PortName::Qemu,
        (None, false) if run.build_only => PortName::Device { path: String::new(), baud: 0 },
        (None, false) => {
            return Err(DeviceError::Mismatch(format!(
                "{} is a real board: give the serial port of its UART, e.g. --port /dev/ttyACM0",
                board.name
            )))
        }
    };
    if !run.build_only || run.port.is_some() {
        check_port(&board, Some(&port))?;
    }
    let file = ModelFile::read(&run.model)?;
    let model = file.model()?;
    firmware::check_fits(&board, &file, &model)?;
    let flavor = firmware::Flavor { engine: run.engine, serial: true, mlperf: true };
    let (work, built) = super::build_in_work_dir(&board, &file, &model, flavor, run.save_elf.as_deref())?;
    let mut report = MlperfReport {
        board: board.name.clone(),
        port: if run.port.is_none() && !board.is_emulated() {
            "no port (built only)".into()
        } else {
            port.to_string()
        },
        mode: opts.mode,
        device: Vec::new(),
        dataset: String::new(),
        inputs: Vec::new(),
        mismatches: 0,
        labelled: 0,
        device_correct: 0,
        host_correct: 0,
        median_latency_us: None,
        iterations: if opts.mode == Mode::Performance { opts.iterations } else { 1 },
        memory: built.memory.clone(),
    };
    if run.build_only {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(report);
    }

    let (dataset, images, labels) = inputs(&model, run)?;
    report.dataset = dataset;
    let session = match (&port, &board.run) {
        (PortName::Qemu, qfd_boards::Runner::Qemu { machine, cpu, .. }) => {
            Session::qemu(machine, cpu, &built.elf, &work)?
        }
        (PortName::Device { path, baud }, _) => Session::device(path, *baud)?,
        (PortName::Qemu, _) => unreachable!("check_port refused --port qemu for a real board"),
    };
    let mut runner = Runner { session, pending: Vec::new(), timeout: run.timeout, board: board.name.clone() };
    let result = converse(&mut runner, opts, &model, &images, &labels, &mut report, &mut progress);
    let _ = runner.session.finish(false);
    result?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

/// The command sequence: the banner, `name`, `profile`, then each input.
fn converse(
    runner: &mut Runner,
    opts: &MlperfOptions,
    model: &qfd_runtime::Model,
    images: &[u8],
    labels: &[Option<usize>],
    report: &mut MlperfReport,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(), DeviceError> {
    // QEMU starts with the session: its banner ends in m-ready. A real board said it long ago.
    if runner.session.is_emulated() {
        runner.until_ready()?;
    }
    report.device.extend(runner.command("name")?);
    report.device.extend(runner.command("profile")?);
    let (iterations, warmup) = match opts.mode {
        Mode::Performance => (opts.iterations.max(1), opts.warmup),
        Mode::Accuracy => (1, 0),
    };
    let total = labels.len();
    let mut latencies = Vec::new();
    for (index, (input, label)) in images.chunks(model.input_len()).zip(labels).enumerate() {
        runner.load(input)?;
        let lines = runner.command(&format!("infer {iterations} {warmup}"))?;
        let results = parse_results(&lines)
            .ok_or_else(|| runner.fail(format!("no m-results line after infer: {lines:?}")))?;
        let laps: Vec<u64> = lines.iter().filter_map(|l| l.strip_prefix("m-lap-us-")?.parse().ok()).collect();
        let latency_us = match laps[..] {
            [t0, t1] => Some((t1.saturating_sub(t0)) as f64 / f64::from(iterations)),
            _ if opts.mode == Mode::Performance => {
                return Err(
                    runner.fail(format!("expected two m-lap-us lines around the inferences, got {lines:?}"))
                )
            }
            _ => None,
        };
        let host = host_answer(model, input, false)?;
        let equal = results == host.logits;
        report.mismatches += usize::from(!equal);
        if let Some(label) = label {
            report.labelled += 1;
            report.host_correct += usize::from(host.class == *label);
            report.device_correct += usize::from(qfd_runtime::arena::predicted_class(&results) == *label);
        }
        latencies.extend(latency_us);
        report.inputs.push(InputResult { index, results, equal, latency_us });
        progress(index + 1, total);
    }
    report.median_latency_us = median(&mut latencies);
    Ok(())
}

/// The median (the mean of the middle two for an even count), as the runner reports it.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let k = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[k]),
        _ => Some((values[k - 1] + values[k]) / 2.0),
    }
}

/// The numbers of an `m-results-[a,b,...]` line.
fn parse_results(lines: &[String]) -> Option<Vec<i32>> {
    let line = lines.iter().find_map(|l| l.strip_prefix("m-results-["))?;
    let inner = line.strip_suffix(']')?;
    inner.split(',').map(|v| v.trim().parse().ok()).collect()
}

/// The host end of the protocol: commands out, lines back until `m-ready`.
struct Runner {
    session: Session,
    /// Bytes received after the last complete line.
    pending: Vec<u8>,
    timeout: Duration,
    board: String,
}

impl Runner {
    fn fail(&self, message: String) -> DeviceError {
        DeviceError::Device { board: self.board.clone(), message }
    }

    /// Reads lines until `m-ready`; returns them without it.
    fn until_ready(&mut self) -> Result<Vec<String>, DeviceError> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 1024];
        let mut last_news = Instant::now();
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line == "m-ready" {
                    return Ok(lines);
                }
                if !line.is_empty() {
                    lines.push(line);
                }
            }
            let n = self
                .session
                .read_some(&mut buf)
                .map_err(|e| self.fail(format!("cannot read the port: {e}")))?;
            if n == 0 {
                if last_news.elapsed() > self.timeout {
                    return Err(self.fail(format!(
                        "no m-ready within {} s; the last lines were {lines:?}",
                        self.timeout.as_secs()
                    )));
                }
                continue;
            }
            last_news = Instant::now();
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Sends `command%` and returns the answer's lines; an `e-` line is an error naming the command.
    fn command(&mut self, command: &str) -> Result<Vec<String>, DeviceError> {
        let port = &mut self.session.port;
        port.write_all(format!("{command}%").as_bytes())
            .and_then(|()| port.flush())
            .map_err(|e| self.fail(format!("cannot write the port: {e}")))?;
        let lines = self.until_ready()?;
        if let Some(error) = lines.iter().find(|l| l.starts_with("e-")) {
            let shown = if command.len() > 40 { &command[..40] } else { command };
            return Err(self.fail(format!("the device refused '{shown}': {error}")));
        }
        Ok(lines)
    }

    /// Loads one input: `db load N`, then `db <hex>` in chunks until `m-load-done`.
    fn load(&mut self, input: &[u8]) -> Result<(), DeviceError> {
        self.command(&format!("db load {}", input.len()))?;
        let mut done = false;
        for chunk in input.chunks(DB_CHUNK) {
            let hex: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
            done = self.command(&format!("db {hex}"))?.iter().any(|l| l == "m-load-done");
        }
        if !done {
            return Err(self.fail("the device did not say m-load-done after the last byte".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn results_lines_are_read_whole_or_not_at_all() {
        let lines = |l: &str| vec!["m-infer-done".to_string(), l.to_string()];
        assert_eq!(parse_results(&lines("m-results-[-3,0,17]")), Some(vec![-3, 0, 17]));
        assert_eq!(parse_results(&lines("m-results-[-3,0.5,17]")), None, "not integer logits");
        assert_eq!(parse_results(&lines("m-results-[-3,0,17")), None, "cut short");
        assert_eq!(parse_results(&lines("m-lap-us-12")), None);
    }
}
