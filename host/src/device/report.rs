//! What a run found: parity, accuracy, time (whole and per layer), memory; as text and JSON.

use std::fmt::Write as _;

use qfd_boards::Board;
use qfd_link::{ErrorKind, TimeUnit};
use qfd_runtime::Model;
use serde::Serialize;

use super::session::Outcome;
use super::{DeviceError, Engine, HostAnswer, MemoryUse, RunOptions};
use crate::table::{Align, Table};

/// One input whose device output differs from the host runtime's.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Input index.
    pub input: usize,
    /// Host class and logits.
    pub host: (usize, Vec<i32>),
    /// Device class and logits.
    pub device: (usize, Vec<i32>),
    /// The first layer whose output differs (`--trace`), and its kind.
    pub first_layer: Option<(usize, &'static str)>,
}

/// One layer's time on the device.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    /// Op kind.
    pub kind: &'static str,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Mean time over the inputs that timed their layers, in the run's unit.
    pub time: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Board name.
    pub board: String,
    /// How it ran.
    pub runner: String,
    /// The model file.
    pub model: String,
    /// Generated code or the interpreter.
    pub engine: Engine,
    /// Inputs run.
    pub samples: usize,
    /// The data set the inputs came from.
    pub dataset: String,
    /// Inputs whose device outputs differ from the host's (must be empty).
    pub mismatches: Vec<Mismatch>,
    /// Requests the device refused, with why (must be empty).
    pub refused: Vec<String>,
    /// Correct predictions of the device.
    pub device_correct: usize,
    /// Correct predictions of the host runtime on the same inputs.
    pub host_correct: usize,
    /// `instructions` (QEMU) or `cycles` (a board).
    pub time_unit: &'static str,
    /// Time of each inference.
    pub times: Vec<u64>,
    /// Per layer, from the inputs that timed their layers.
    pub layers: Vec<LayerTime>,
    /// Multiply-accumulates of one inference.
    pub macs: u64,
    /// Memory used.
    pub memory: MemoryUse,
    /// Stack high-water mark and stack size, from the device.
    pub stack: Option<(u32, u32)>,
    /// The device's log, decoded.
    pub log: Vec<String>,
}

impl RunReport {
    /// A report of a built image, before it ran.
    pub(super) fn new(board: &Board, opts: &RunOptions, model: &Model, memory: MemoryUse) -> Self {
        RunReport {
            board: board.name.clone(),
            runner: board.run.to_string(),
            model: opts.model.display().to_string(),
            engine: opts.engine,
            samples: 0,
            dataset: String::new(),
            mismatches: Vec::new(),
            refused: Vec::new(),
            device_correct: 0,
            host_correct: 0,
            time_unit: if board.is_emulated() { "instructions" } else { "cycles" },
            times: Vec::new(),
            layers: Vec::new(),
            macs: qfd_codegen::stats::total_macs(model.desc()),
            memory,
            stack: None,
            log: Vec::new(),
        }
    }

    /// Fills the report from the device's answers, compared with the host's.
    pub(super) fn compare(
        &mut self,
        model: &Model,
        outcome: &Outcome,
        host: &[HostAnswer],
        labels: &[Option<usize>],
    ) -> Result<(), DeviceError> {
        self.time_unit = match outcome.hello.time_unit {
            TimeUnit::Instructions => "instructions",
            TimeUnit::Cycles => "cycles",
            TimeUnit::Microseconds => "microseconds",
        };
        self.stack = Some((outcome.done.stack.peak_bytes, outcome.done.stack.size_bytes));
        for (id, kind) in &outcome.errors {
            let which = id.map_or_else(|| "a request".to_string(), |i| format!("input {i}"));
            self.refused.push(format!("{which}: {}", describe(kind)));
        }
        let ops = &model.desc().ops;
        let stats = qfd_codegen::stats::op_stats(model.desc());
        let mut layer_sums = vec![0u64; ops.len()];
        let mut layer_runs = 0u64;
        for r in &outcome.results {
            let Some(h) = host.get(r.id as usize) else {
                return Err(DeviceError::Device {
                    board: self.board.clone(),
                    message: format!("the device answered input {} which was never sent", r.id),
                });
            };
            if let Some(&Some(label)) = labels.get(r.id as usize) {
                self.device_correct += usize::from(r.class as usize == label);
                self.host_correct += usize::from(h.class == label);
            }
            self.times.push(r.time);
            if r.layer_time.len() == ops.len() {
                layer_runs += 1;
                layer_sums.iter_mut().zip(&r.layer_time).for_each(|(s, t)| *s += t);
            }
            let device_logits: Vec<i32> = r.logits.to_vec();
            if (r.class as usize, &device_logits) != (h.class, &h.logits) {
                let first_layer = r
                    .layer_crc
                    .iter()
                    .zip(&h.layer_crc)
                    .position(|(d, h)| d != h)
                    .map(|i| (i, ops[i].kind()));
                self.mismatches.push(Mismatch {
                    input: r.id as usize,
                    host: (h.class, h.logits.clone()),
                    device: (r.class as usize, device_logits),
                    first_layer,
                });
            }
        }
        if layer_runs > 0 {
            self.layers = ops
                .iter()
                .zip(&stats)
                .zip(&layer_sums)
                .map(|((op, s), &sum)| LayerTime {
                    kind: op.kind(),
                    macs: s.macs,
                    time: sum as f64 / layer_runs as f64,
                })
                .collect();
        }
        Ok(())
    }

    /// Mean time per inference.
    pub fn mean_time(&self) -> f64 {
        self.times.iter().sum::<u64>() as f64 / self.times.len().max(1) as f64
    }

    /// Whether the device computed exactly what the host did, for every input, and refused nothing.
    pub fn parity(&self) -> bool {
        self.mismatches.is_empty() && self.refused.is_empty() && self.times.len() == self.samples
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.samples.max(1) as f64;
        let engine = match self.engine {
            Engine::Generated => "generated code",
            Engine::Interpreter => "interpreter",
        };
        let mut out =
            format!("board     {} ({}), {engine}\nmodel     {}\n", self.board, self.runner, self.model);
        let m = &self.memory;
        let memory = format!(
            "flash     {} of {} bytes ({:.1}%)\nRAM       {} of {} bytes in statics ({:.1}%; arena {})",
            m.flash_bytes,
            m.flash_total,
            100.0 * m.flash_bytes as f64 / m.flash_total as f64,
            m.ram_static_bytes,
            m.ram_total,
            100.0 * m.ram_static_bytes as f64 / m.ram_total as f64,
            m.arena_bytes
        );
        if self.times.is_empty() && self.samples == 0 {
            return out + &memory + "\n(built only, not run)\n";
        }
        let _ = writeln!(out, "inputs    {} ({})", self.samples, self.dataset);
        if self.parity() {
            let _ = writeln!(
                out,
                "parity    OK: all {} outputs match the host runtime bit for bit",
                self.samples
            );
        } else {
            let _ = writeln!(
                out,
                "parity    FAILED: {} of {} outputs differ, {} requests refused",
                self.mismatches.len(),
                self.samples,
                self.refused.len()
            );
            for m in self.mismatches.iter().take(10) {
                let layer = m
                    .first_layer
                    .map_or_else(String::new, |(i, k)| format!(" (first differs at layer {i}, {k})"));
                let _ = writeln!(
                    out,
                    "  input {}{layer}: host class {} {:?}, device class {} {:?}",
                    m.input, m.host.0, m.host.1, m.device.0, m.device.1
                );
            }
            for r in self.refused.iter().take(10) {
                let _ = writeln!(out, "  refused {r}");
            }
        }
        if self.dataset != "random pixels" {
            let _ = writeln!(
                out,
                "accuracy  device {:.2}%, host {:.2}%",
                pct(self.device_correct),
                pct(self.host_correct)
            );
        }
        let mean = self.mean_time();
        let _ = writeln!(
            out,
            "time      {:.3} M {} per inference, {:.2} per MAC ({} MACs){}",
            mean / 1e6,
            self.time_unit,
            mean / self.macs.max(1) as f64,
            self.macs,
            if self.time_unit == "instructions" { " (QEMU -icount: instructions, not cycles)" } else { "" }
        );
        out += &memory;
        if let Some((peak, size)) = self.stack {
            let _ = write!(out, "\nstack     {peak} bytes at the deepest point, of {size}");
        }
        out.push('\n');
        if !self.layers.is_empty() {
            out += &self.layer_table();
        }
        out
    }

    /// The per-layer breakdown.
    pub fn layer_table(&self) -> String {
        let mut t = Table::new(&[
            ("#", Align::Right),
            ("op", Align::Left),
            ("MACs", Align::Right),
            (self.time_unit, Align::Right),
            ("per MAC", Align::Right),
            ("share", Align::Right),
        ]);
        let total: f64 = self.layers.iter().map(|l| l.time).sum();
        for (i, l) in self.layers.iter().enumerate() {
            t.row(vec![
                i.to_string(),
                l.kind.to_string(),
                l.macs.to_string(),
                format!("{:.0}", l.time),
                if l.macs > 0 { format!("{:.2}", l.time / l.macs as f64) } else { "-".into() },
                format!("{:.1}%", 100.0 * l.time / total.max(1.0)),
            ]);
        }
        format!(
            "\nper layer ({} of the inputs that timed their layers, mean)\n{}",
            self.time_unit,
            t.render("  ")
        )
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::BadFrame(e) => format!("bad frame: {e}"),
        ErrorKind::InputLength { expected, found } => {
            format!("input of {found} bytes, the model reads {expected}")
        }
        ErrorKind::InputCodeOutOfRange { index } => format!("input byte {index} exceeds the input bit-width"),
        other => format!("{other:?}"),
    }
}
