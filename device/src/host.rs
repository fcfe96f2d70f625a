//! The device side on a host (feature `std`): an in-memory port and a stepping clock, to serve the
//! protocols in tests and simulators exactly as a board does.

extern crate std;

use std::vec::Vec;

use qfd_link::TimeUnit;

/// A port that reads `input` (at most `max_read` bytes per call, to cut it into awkward pieces as a UART
/// does) and keeps everything written in `output`.
pub struct MemoryPort<'a> {
    input: &'a [u8],
    max_read: usize,
    /// What the device wrote.
    pub output: Vec<u8>,
}

impl<'a> MemoryPort<'a> {
    /// A port that delivers `input` in reads of at most `max_read` bytes.
    pub fn new(input: &'a [u8], max_read: usize) -> Self {
        MemoryPort { input, max_read: max_read.max(1), output: Vec::new() }
    }
}

impl embedded_io::ErrorType for MemoryPort<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for MemoryPort<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.max_read).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl embedded_io::Write for MemoryPort<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A clock that advances `step` ticks at every reading.
pub struct StepClock {
    now: u64,
    step: u64,
    unit: TimeUnit,
    ticks_per_second: u64,
}

impl StepClock {
    /// Counting `unit` at `ticks_per_second`, `step` ticks per reading.
    pub fn new(unit: TimeUnit, ticks_per_second: u64, step: u64) -> Self {
        StepClock { now: 0, step, unit, ticks_per_second }
    }
}

impl crate::Clock for StepClock {
    fn unit(&self) -> TimeUnit {
        self.unit
    }

    fn now(&mut self) -> u64 {
        self.now += self.step;
        self.now
    }

    fn ticks_per_second(&self) -> u64 {
        self.ticks_per_second
    }
}
