//! The device speed report: a fixed set of synthetic models run on each emulated board, written up as
//! Markdown (`qfd-host bench --report FILE`), with CMSIS-NN's figures for the same model beside ours.
//!
//! Each cell is a real `bench` run: the firmware built for the board with the model compiled in, outputs
//! compared with the host runtime (a cell whose outputs differ is an error, not a number), instructions
//! counted by QEMU (`-icount`), so numbers are instructions, not cycles.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_runtime::Model;

use super::{run, DeviceError, Engine, RunOptions, RunReport};
use crate::fsutil;

/// One model of the report.
#[derive(Debug, Clone, Copy)]
pub struct SpeedModel {
    /// Short name, e.g. `resnet8-w8a8`.
    pub name: &'static str,
    /// Architecture.
    pub arch: Arch,
    /// Input `[H, W, C]`.
    pub input: [usize; 3],
    /// Width multiplier (MobileNets).
    pub width: f32,
    /// Inner weight and activation bits.
    pub bits: (u8, u8),
}

/// The report's models: MLPerf Tiny's ResNet-8 and visual-wake-words MobileNetV1-0.25 at several widths.
pub const MODELS: [SpeedModel; 5] = [
    SpeedModel { name: "resnet8-w8a8", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: (8, 8) },
    SpeedModel { name: "resnet8-w4a4", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: (4, 4) },
    SpeedModel { name: "resnet8-w2a2", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: (2, 2) },
    SpeedModel {
        name: "mobilenetv1-0.25-w8a8",
        arch: Arch::MobileNetV1,
        input: [96, 96, 3],
        width: 0.25,
        bits: (8, 8),
    },
    SpeedModel {
        name: "mobilenetv1-0.25-w4a4",
        arch: Arch::MobileNetV1,
        input: [96, 96, 3],
        width: 0.25,
        bits: (4, 4),
    },
];

/// The report's boards: every emulated core.
pub const BOARDS: [&str; 5] = ["qemu-m3", "qemu-m4", "qemu-m7", "qemu-m33", "qemu-m55"];

/// CMSIS-NN (v7, gcc -O3) running the int8 ResNet-8 in the same QEMU, measured the same way (instructions
/// per inference): the figures this SDK is held against. `None` where no figure was measured.
pub fn cmsis_nn_instructions(model: &str, board: &str) -> Option<f64> {
    match (model, board) {
        ("resnet8-w8a8", "qemu-m4") => Some(29.85e6),
        ("resnet8-w8a8", "qemu-m7") => Some(29.89e6),
        ("resnet8-w8a8", "qemu-m3") => Some(41.75e6),
        ("resnet8-w8a8", "qemu-m55") => Some(4.80e6),
        // CMSIS-NN's int4-weight path (weights widened back to 8 bits) on the M4.
        ("resnet8-w4a4", "qemu-m4") => Some(51.73e6),
        _ => None,
    }
}

/// One measured cell.
#[derive(Debug, Clone)]
pub struct SpeedCell {
    /// The model.
    pub model: SpeedModel,
    /// Arena bytes of tensors and of kernel scratch.
    pub arena: (usize, usize),
    /// The bench run.
    pub report: RunReport,
}

/// Builds each model under `work`, runs it on each board (`on_cell` hears of every finished cell), and
/// returns the cells in order.
pub fn measure(
    models: &[SpeedModel],
    boards: &[String],
    work: &Path,
    timeout: Duration,
    mut on_cell: impl FnMut(&SpeedCell),
) -> Result<Vec<SpeedCell>, DeviceError> {
    std::fs::create_dir_all(work)
        .map_err(|source| fsutil::FsError::Write { path: work.to_path_buf(), source })?;
    let mut cells = Vec::new();
    for m in models {
        let path = write_model(m, work)?;
        let bytes = fsutil::read(&path)?;
        let model = Model::load(&bytes).map_err(|e| DeviceError::Mismatch(format!("{}: {e}", m.name)))?;
        for board in boards {
            // The kernels' scratch depends on the board's core.
            let loaded = qfd_boards::Board::load(&qfd_boards::boards_dir(), board)?;
            let values = model.values_size();
            let arena = (values, super::firmware::arena_bytes(&loaded, &model) as usize - values);
            let opts = RunOptions {
                board: board.clone(),
                model: path.clone(),
                data: None,
                dataset: None,
                random_inputs: true,
                samples: 1,
                timeout,
                engine: Engine::Generated,
                trace: false,
                time_all_layers: true,
                build_only: false,
                port: None,
                save_elf: None,
            };
            let report = run(&opts, |_, _| {})?;
            if !report.parity() {
                return Err(DeviceError::Mismatch(format!(
                    "{} on {board}: the device's outputs differ from the host runtime's",
                    m.name
                )));
            }
            let cell = SpeedCell { model: *m, arena, report };
            on_cell(&cell);
            cells.push(cell);
        }
    }
    Ok(cells)
}

fn write_model(m: &SpeedModel, work: &Path) -> Result<PathBuf, DeviceError> {
    let mut config = SynthConfig::new(m.arch, m.input);
    (config.weight_bits, config.act_bits, config.width) = (m.bits.0, m.bits.1, m.width);
    let graph = synth(&config).map_err(|e| DeviceError::Mismatch(format!("{}: {e}", m.name)))?;
    let bytes = qfd_codegen::encode_model_as(&graph, crate::PRODUCER)
        .map_err(|e| DeviceError::Mismatch(format!("{}: {e}", m.name)))?;
    let path = work.join(format!("{}.qfdm", m.name));
    fsutil::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// The report as Markdown. `command` is how it was produced.
pub fn to_markdown(cells: &[SpeedCell], command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Device speed: instructions per inference under QEMU\n");
    let _ = writeln!(
        md,
        "Written by `{command}`. Synthetic models (`qfd-host synth`, seed 0: random weights, plausible \
         requantization) run as generated code on each emulated board; every run's outputs equal the host \
         runtime's bit for bit. QEMU counts instructions (`-icount`), not cycles. \"CMSIS-NN\" is CMSIS-NN v7 \
         (gcc -O3) running the same ResNet-8 at int8 in the same QEMU, measured the same way; the ratio is \
         ours over theirs (below 1: faster).\n"
    );
    let _ = writeln!(
        md,
        "| model | board | instructions | per MAC | CMSIS-NN | ratio | arena (tensors + scratch) | flash |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        let r = &c.report;
        let t = r.mean_time();
        let cmsis = cmsis_nn_instructions(c.model.name, &r.board);
        let (cmsis_text, ratio) = match cmsis {
            Some(v) => (format!("{:.2} M", v / 1e6), format!("{:.2}", t / v)),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} M | {:.2} | {cmsis_text} | {ratio} | {} + {} B | {} B |",
            c.model.name,
            r.board,
            t / 1e6,
            t / r.macs.max(1) as f64,
            c.arena.0,
            c.arena.1,
            r.memory.flash_bytes
        );
    }
    let _ = writeln!(md, "\n## Where the time goes\n");
    let _ = writeln!(md, "Each op kind's share of the instructions (all layers of that kind together).\n");
    let _ = writeln!(md, "| model | board | conv2d (incl. depthwise) | add | pools | fully connected |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    for c in cells {
        let r = &c.report;
        let total: f64 = r.layers.iter().map(|l| l.time).sum::<f64>().max(1.0);
        let share = |kinds: &[&str]| {
            // `+ 0.0`: an empty f64 sum is -0.0.
            let t: f64 =
                r.layers.iter().filter(|l| kinds.contains(&l.kind)).map(|l| l.time).sum::<f64>() + 0.0;
            format!("{:.1}%", 100.0 * t / total)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            c.model.name,
            r.board,
            share(&["conv2d"]),
            share(&["add"]),
            share(&["max_pool", "avg_pool", "global_sum_pool"]),
            share(&["fully_connected"])
        );
    }
    md
}
