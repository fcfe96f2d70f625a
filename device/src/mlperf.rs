//! The MLPerf Tiny runner protocol (EEMBC's EnergyRunner and PerformanceRunner), device side.
//!
//! The runner sends short text commands ending in `%`; the device answers with lines starting `m-`
//! (messages) or `e-` (errors), and `m-ready` when it is idle again:
//!
//! ```text
//! (start)          m-timestamp-mode-performance, m-init-done, m-ready
//! name%            m-name-dut-[<board>]
//! profile%         m-profile-[<firmware>], m-model-[<model>]
//! db load 784%     m-[Expecting 784 bytes]
//! db 00ff7f...%    (hex digits; after the last byte) m-load-done
//! infer 10 1%      m-warmup-start-1, m-warmup-done, m-infer-start-10, m-lap-us-<t0>, m-lap-us-<t1>,
//!                  m-infer-done, m-results-[<logits>]
//! results%         m-results-[<logits>]
//! timestamp%       m-lap-us-<t>
//! ```
//! Results are the model's integer logits, exactly; the runner reads them as numbers and takes the
//! largest. Timestamps bracket the timed inferences: in performance mode the device prints its clock in
//! microseconds (`m-lap-us-`), in energy mode it pulls the timestamp pin low for a moment and the energy
//! monitor takes the time.

use embedded_hal::digital::OutputPin;
use embedded_io::{Read, Write};
use qfd_link::MAX_CLASSES;

use crate::{link::check_input, Board, Clock, Model, ServeError};

/// Longest command, `%` excluded; longer ones are refused. The runners send `db` lines of at most 80.
pub const MAX_COMMAND: usize = 256;

/// How the runner times inferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampMode {
    /// The device prints `m-lap-us-<microseconds>` from its own clock.
    Performance,
    /// The device pulses the timestamp pin; the energy monitor timestamps the falling edge.
    Energy,
}

/// The protocol's buffers: the input being loaded (`INPUT` bytes, the model's input length) and the
/// command being read.
pub struct MlperfBuffers<const INPUT: usize> {
    input: [u8; INPUT],
    command: heapless::Vec<u8, MAX_COMMAND>,
}

impl<const INPUT: usize> MlperfBuffers<INPUT> {
    /// Empty buffers (const, so they can be a static).
    pub const fn new() -> Self {
        MlperfBuffers { input: [0; INPUT], command: heapless::Vec::new() }
    }
}

impl<const INPUT: usize> Default for MlperfBuffers<INPUT> {
    fn default() -> Self {
        Self::new()
    }
}

/// A pin for firmware without a timestamp pin (performance mode only needs the clock).
pub struct NoPin;

impl embedded_hal::digital::ErrorType for NoPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Serves runner commands from `port` until it ends (an in-memory port) or fails (a UART's break or
/// framing error, say); firmware calls it again to go on.
pub fn serve<P, M, C, T, const INPUT: usize>(
    port: &mut P,
    model: &mut M,
    clock: &mut C,
    timestamp_pin: &mut T,
    mode: TimestampMode,
    board: &Board,
    buffers: &mut MlperfBuffers<INPUT>,
) -> Result<(), ServeError>
where
    P: Read + Write,
    M: Model,
    C: Clock,
    T: OutputPin,
{
    let info = model.info();
    if info.input_len > INPUT || info.num_classes > MAX_CLASSES {
        return Err(ServeError::BufferTooSmall);
    }
    // The pin idles high; a timestamp is a short low pulse.
    let _ = timestamp_pin.set_high();
    let mut dut = Dut {
        port,
        model,
        clock,
        pin: timestamp_pin,
        mode,
        board,
        input: &mut buffers.input[..info.input_len],
        info,
        loaded: 0,
        expected: 0,
        logits: [0; MAX_CLASSES],
        have_results: false,
    };
    let mode_line = match mode {
        TimestampMode::Performance => "m-timestamp-mode-performance",
        TimestampMode::Energy => "m-timestamp-mode-energy",
    };
    dut.line(format_args!("{mode_line}"))?;
    dut.line(format_args!("m-init-done"))?;
    dut.line(format_args!("m-ready"))?;

    let command = &mut buffers.command;
    let mut overflow = false;
    let mut chunk = [0u8; 64];
    loop {
        let n = dut.port.read(&mut chunk).map_err(|_| ServeError::Read)?;
        if n == 0 {
            return Ok(());
        }
        for &byte in &chunk[..n] {
            if byte != b'%' {
                overflow |= command.push(byte).is_err();
                continue;
            }
            if overflow {
                dut.line(format_args!("e-[Command longer than {MAX_COMMAND} characters]"))?;
            } else {
                // Not UTF-8 is not a command either: it falls through to "unknown".
                let text = core::str::from_utf8(command).unwrap_or("?");
                dut.command(text.trim())?;
            }
            dut.line(format_args!("m-ready"))?;
            command.clear();
            overflow = false;
        }
    }
}

/// The device under test, between commands.
struct Dut<'a, P, M, C, T> {
    port: &'a mut P,
    model: &'a mut M,
    clock: &'a mut C,
    pin: &'a mut T,
    mode: TimestampMode,
    board: &'a Board,
    /// The model's input, being loaded by `db` commands.
    input: &'a mut [u8],
    /// The model's sizes, read once.
    info: crate::ModelInfo,
    loaded: usize,
    expected: usize,
    logits: [i32; MAX_CLASSES],
    have_results: bool,
}

impl<P: Read + Write, M: Model, C: Clock, T: OutputPin> Dut<'_, P, M, C, T> {
    fn line(&mut self, args: core::fmt::Arguments<'_>) -> Result<(), ServeError> {
        self.port.write_fmt(args).map_err(|_| ServeError::Write)?;
        self.port.write_all(b"\r\n").map_err(|_| ServeError::Write)?;
        self.port.flush().map_err(|_| ServeError::Write)
    }

    fn command(&mut self, text: &str) -> Result<(), ServeError> {
        let mut words = text.split_ascii_whitespace();
        match (words.next().unwrap_or(""), words.next(), words.next()) {
            ("name", ..) => self.line(format_args!("m-name-dut-[{}]", self.board.name)),
            ("timestamp", ..) => self.timestamp(),
            ("profile", ..) => {
                self.line(format_args!("m-profile-[qfd-device {}]", env!("CARGO_PKG_VERSION")))?;
                let crc = self.info.model_crc;
                self.line(format_args!("m-model-[qfdm-{crc:08x}]"))
            }
            ("help", ..) => {
                self.line(format_args!(
                    "qfd-device {}: the MLPerf Tiny runner protocol",
                    env!("CARGO_PKG_VERSION")
                ))?;
                self.line(format_args!("name, profile, timestamp, results, help"))?;
                self.line(format_args!("db load N | db HEX.. | db print [N] [OFFSET]"))?;
                self.line(format_args!("infer N [W]: N timed inferences after W warm-up ones"))
            }
            ("db", Some("load"), n) => self.db_load(n),
            ("db", Some("print"), n) => self.db_print(n, words.next()),
            ("db", Some(hex), _) => self.db_hex(hex),
            ("db", None, _) => self.line(format_args!("e-[Command 'db' requires a subcommand]")),
            ("infer", n, w) => self.infer(n, w),
            ("results", ..) => self.results(),
            ("", ..) => Ok(()),
            (other, ..) => self.line(format_args!("e-[Unknown command: {other}]")),
        }
    }

    fn db_load(&mut self, n: Option<&str>) -> Result<(), ServeError> {
        let len = self.input.len();
        match n.and_then(|n| n.parse::<usize>().ok()) {
            None => self.line(format_args!("e-[Command 'db load' requires the number of bytes]")),
            Some(n) if n != len => self.line(format_args!("e-[The model reads {len} bytes, not {n}]")),
            Some(n) => {
                (self.expected, self.loaded) = (n, 0);
                self.line(format_args!("m-[Expecting {n} bytes]"))
            }
        }
    }

    fn db_hex(&mut self, hex: &str) -> Result<(), ServeError> {
        if self.expected == 0 {
            return self.line(format_args!("e-[Say 'db load N' first]"));
        }
        if !hex.len().is_multiple_of(2) {
            return self.line(format_args!("e-[Odd number of hex digits]"));
        }
        for pair in hex.as_bytes().chunks(2) {
            let byte = core::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok());
            let Some(byte) = byte else {
                return self.line(format_args!("e-[Invalid hex digits in '{hex}']"));
            };
            if self.loaded < self.expected {
                self.input[self.loaded] = byte;
                self.loaded += 1;
                if self.loaded == self.expected {
                    return self.line(format_args!("m-load-done"));
                }
            }
        }
        Ok(())
    }

    fn db_print(&mut self, n: Option<&str>, offset: Option<&str>) -> Result<(), ServeError> {
        let n = n.and_then(|n| n.parse::<usize>().ok()).unwrap_or(16);
        let offset = offset.and_then(|o| o.parse::<usize>().ok()).unwrap_or(0);
        let end = (offset + n).min(self.loaded);
        for row in (offset..end).step_by(8) {
            self.port.write_all(b"m-buffer-").map_err(|_| ServeError::Write)?;
            for i in row..(row + 8).min(end) {
                let sep = if i + 1 < (row + 8).min(end) { "-" } else { "" };
                self.port
                    .write_fmt(format_args!("{:02x}{sep}", self.input[i]))
                    .map_err(|_| ServeError::Write)?;
            }
            self.line(format_args!(""))?;
        }
        Ok(())
    }

    fn infer(&mut self, n: Option<&str>, w: Option<&str>) -> Result<(), ServeError> {
        let count = |s: Option<&str>, default: u32| s.map_or(Some(default), |s| s.parse::<u32>().ok());
        let (Some(n), Some(warmup)) = (count(n, 1), count(w, 10)) else {
            return self.line(format_args!("e-[infer N [W]: N and W are whole numbers]"));
        };
        if n == 0 {
            return self.line(format_args!("e-[Inference iterations must be >0]"));
        }
        if self.expected == 0 || self.loaded < self.expected {
            let (loaded, len) = (self.loaded, self.input.len());
            return self.line(format_args!("e-[Load the input first: {loaded} of {len} bytes loaded]"));
        }
        if let Err(qfd_link::ErrorKind::InputCodeOutOfRange { index }) = check_input(&self.info, self.input) {
            let bits = self.info.input_bits;
            return self
                .line(format_args!("e-[Input byte {index} does not fit the model's {bits}-bit codes]"));
        }
        self.line(format_args!("m-warmup-start-{warmup}"))?;
        for _ in 0..warmup {
            self.run_once()?;
        }
        self.line(format_args!("m-warmup-done"))?;
        self.line(format_args!("m-infer-start-{n}"))?;
        self.timestamp()?;
        for _ in 0..n {
            self.run_once()?;
        }
        self.timestamp()?;
        self.line(format_args!("m-infer-done"))?;
        self.results()
    }

    fn run_once(&mut self) -> Result<(), ServeError> {
        let classes = self.info.num_classes;
        let ran = self.model.infer(self.input, &mut self.logits[..classes], &mut |_, _| {});
        self.have_results = ran.is_some();
        match ran {
            Some(_) => Ok(()),
            None => self.line(format_args!("e-[The model refused a checked input]")),
        }
    }

    fn results(&mut self) -> Result<(), ServeError> {
        if !self.have_results {
            return self.line(format_args!("e-[No results yet: run 'infer' first]"));
        }
        let classes = self.info.num_classes;
        self.port.write_all(b"m-results-[").map_err(|_| ServeError::Write)?;
        for (i, logit) in self.logits[..classes].iter().enumerate() {
            let sep = if i + 1 < classes { "," } else { "" };
            self.port.write_fmt(format_args!("{logit}{sep}")).map_err(|_| ServeError::Write)?;
        }
        self.line(format_args!("]"))
    }

    /// Marks a moment: a low pulse on the pin (about a microsecond), and in performance mode the clock.
    fn timestamp(&mut self) -> Result<(), ServeError> {
        let now = self.clock.now();
        let _ = self.pin.set_low();
        let per_us = (self.clock.ticks_per_second() / 1_000_000).max(1);
        // Bounded: a clock that does not run must not hang the device.
        for _ in 0..100_000 {
            if self.clock.now() - now >= per_us {
                break;
            }
        }
        let _ = self.pin.set_high();
        if self.mode == TimestampMode::Performance {
            let us = u128::from(now) * 1_000_000 / u128::from(self.clock.ticks_per_second().max(1));
            self.line(format_args!("m-lap-us-{us}"))?;
        }
        Ok(())
    }
}
