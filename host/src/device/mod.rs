//! Running a model on a board: build the firmware for the board with the model and N inputs baked in, run
//! it (QEMU for emulated boards), read its results and compare them with the host runtime's, bit for bit.
//!
//! The firmware (`firmware/`) prints one line per inference over semihosting:
//! `result <i> class=<c> logits=<l0>,<l1>,... instructions=<n>`, then `done`, and exits with success; a
//! load or run error, panic or fault prints `error: ...` and exits with failure.

pub mod elf;
mod qemu;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qfd_boards::{Board, BoardError, Runner};
use qfd_runtime::Model;
use serde::Serialize;

use crate::data::{DataError, Dataset, DatasetKind, Split};
use crate::fsutil::{self, FsError};
use crate::model_file::{ModelFile, ModelFileError};

/// Stack and code the firmware needs besides the model and its arena (measured: code ~20 KiB; the stack
/// holds the `Model` tables, ~33 KiB at the peak on Cortex-M4). Used to say early that a model cannot fit.
const FIRMWARE_CODE_BYTES: u64 = 32 * 1024;
const FIRMWARE_STACK_BYTES: u64 = 40 * 1024;

/// Why a run did not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The board is unknown or its file is bad.
    #[error(transparent)]
    Board(#[from] BoardError),
    /// The model file cannot be used.
    #[error(transparent)]
    Model(#[from] ModelFileError),
    /// The data set cannot be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be written.
    #[error(transparent)]
    File(#[from] FsError),
    /// The model needs more memory than the board has.
    #[error("{model} does not fit {board}: {what}")]
    DoesNotFit {
        /// The model file.
        model: String,
        /// The board.
        board: String,
        /// Which memory, how much is needed and how much there is.
        what: String,
    },
    /// The data set's images do not fit the model's input, or the class counts differ.
    #[error("{0}")]
    Mismatch(String),
    /// Real boards need the `probe` feature.
    #[error("{board} is a real board ({runner}); this qfd-host runs emulated boards only (build it with --features probe for probe-rs)")]
    NeedsProbe {
        /// The board.
        board: String,
        /// How it would run.
        runner: String,
    },
    /// Building the firmware failed.
    #[error("building the firmware for {board} failed:\n{log}")]
    Build {
        /// The board.
        board: String,
        /// The end of cargo's output.
        log: String,
    },
    /// A tool could not be started.
    #[error("cannot start {program}: {source} (scripts/setup.sh installs it)")]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The device did not finish in time.
    #[error("{board} did not answer within {} s after {done} of {total} results; it was stopped", seconds)]
    Timeout {
        /// The board.
        board: String,
        /// Results received.
        done: usize,
        /// Results expected.
        total: usize,
        /// The time limit.
        seconds: u64,
    },
    /// The device reported an error, exited with failure or sent something that is not a result.
    #[error("{board}: {message}")]
    Device {
        /// The board.
        board: String,
        /// What happened, with the device's last words.
        message: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Board name (a file in `boards/`).
    pub board: String,
    /// The `.qfdm` model.
    pub model: PathBuf,
    /// The data set's directory, if not its standard place.
    pub data: Option<PathBuf>,
    /// The data set, if not the one the model records.
    pub dataset: Option<DatasetKind>,
    /// Test images to run.
    pub samples: usize,
    /// Time limit of the device run.
    pub timeout: Duration,
}

/// One input whose device output differs from the host runtime's.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Input index.
    pub input: usize,
    /// Host class and logits.
    pub host: (usize, Vec<i32>),
    /// Device class and logits.
    pub device: (usize, Vec<i32>),
}

/// Memory the firmware image uses on the board.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryUse {
    /// Bytes of flash: code, constants (the model) and the initial values of `.data`.
    pub flash_bytes: u64,
    /// Flash on the board.
    pub flash_total: u64,
    /// Bytes of RAM taken by statics (the arena included), before the stack.
    pub ram_static_bytes: u64,
    /// RAM on the board.
    pub ram_total: u64,
    /// The model's arena.
    pub arena_bytes: u64,
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
    /// Inputs run.
    pub samples: usize,
    /// The data set the inputs came from.
    pub dataset: String,
    /// Inputs whose device outputs differ from the host's (must be empty).
    pub mismatches: Vec<Mismatch>,
    /// Correct predictions of the device.
    pub device_correct: usize,
    /// Correct predictions of the host runtime on the same inputs.
    pub host_correct: usize,
    /// Instructions (QEMU) per inference, one per input.
    pub instructions: Vec<u64>,
    /// Multiply-accumulates of one inference.
    pub macs: u64,
    /// Memory used.
    pub memory: MemoryUse,
}

impl RunReport {
    /// Mean instructions per inference.
    pub fn mean_instructions(&self) -> f64 {
        self.instructions.iter().sum::<u64>() as f64 / self.instructions.len().max(1) as f64
    }
}

/// The repository's firmware crate.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// Builds the firmware for `opts.board` with the model and `opts.samples` test images, runs it and compares
/// every result with the host runtime.
pub fn run(opts: &RunOptions) -> Result<RunReport, DeviceError> {
    let board = Board::load(&qfd_boards::boards_dir(), &opts.board)?;
    if let Runner::Probe { .. } = board.run {
        return Err(DeviceError::NeedsProbe { board: board.name.clone(), runner: board.run.to_string() });
    }
    let file = ModelFile::read(&opts.model)?;
    let model = file.model()?;
    check_fits(&board, &file, &model)?;
    let (dataset, images, labels) = inputs(&model, opts)?;

    // The host runtime's answers.
    let mut arena = vec![0u8; model.arena_size()];
    let mut host = Vec::with_capacity(labels.len());
    for image in images.chunks(model.input_len()) {
        let mut logits = vec![0i32; model.num_classes()];
        let class = model
            .run(image, &mut arena, &mut logits)
            .map_err(|e| DeviceError::Mismatch(format!("the host runtime refused an input: {e}")))?;
        host.push((class, logits));
    }

    let work = firmware_dir().join("target").join("run").join(&board.name);
    std::fs::create_dir_all(&work).map_err(|source| FsError::Write { path: work.clone(), source })?;
    let (model_path, inputs_path) = (work.join("model.qfdm"), work.join("inputs.bin"));
    fsutil::write_atomic(&model_path, file.bytes())?;
    fsutil::write_atomic(&inputs_path, &images)?;
    let elf = build_firmware(&board, &model_path, &inputs_path)?;
    let memory = memory_use(&board, &elf, model.arena_size() as u64)?;

    let results = qemu::run(&board, &elf, labels.len(), opts.timeout)?;
    let mut report = RunReport {
        board: board.name.clone(),
        runner: board.run.to_string(),
        model: opts.model.display().to_string(),
        samples: labels.len(),
        dataset,
        mismatches: Vec::new(),
        device_correct: 0,
        host_correct: 0,
        instructions: Vec::new(),
        macs: qfd_codegen::stats::total_macs(model.desc()),
        memory,
    };
    for (i, (device, host)) in results.into_iter().zip(host).enumerate() {
        if let Some(&label) = labels.get(i).and_then(|l| l.as_ref()) {
            report.device_correct += usize::from(device.class == label);
            report.host_correct += usize::from(host.0 == label);
        }
        report.instructions.push(device.instructions);
        if (device.class, &device.logits) != (host.0, &host.1) {
            report.mismatches.push(Mismatch { input: i, host, device: (device.class, device.logits) });
        }
    }
    Ok(report)
}

/// Whether a model fits a board, estimated before building: the model file and the firmware's code in
/// flash, the arena and the firmware's stack in RAM.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// The board.
    pub board: String,
    /// Flash needed.
    pub flash_needed: u64,
    /// Flash on the board.
    pub flash_total: u64,
    /// RAM needed.
    pub ram_needed: u64,
    /// RAM on the board.
    pub ram_total: u64,
}

impl Fit {
    /// The estimate for a model file of `model_bytes` bytes whose arena is `arena_bytes`.
    pub fn estimate(board: &Board, model_bytes: u64, arena_bytes: u64) -> Fit {
        Fit {
            board: board.name.clone(),
            flash_needed: model_bytes + FIRMWARE_CODE_BYTES,
            flash_total: board.flash.length as u64,
            ram_needed: arena_bytes + FIRMWARE_STACK_BYTES,
            ram_total: board.ram.length as u64,
        }
    }

    /// Whether both memories suffice.
    pub fn fits(&self) -> bool {
        self.flash_needed <= self.flash_total && self.ram_needed <= self.ram_total
    }

    /// One line per memory: needed, available and what is left (or missing).
    pub fn to_text(&self) -> String {
        let line = |what: &str, needed: u64, total: u64| {
            let (word, margin) =
                if needed <= total { ("left", total - needed) } else { ("MISSING", needed - total) };
            format!(
                "{what:<6} {needed} of {total} bytes ({:.1}%), {margin} bytes {word}\n",
                100.0 * needed as f64 / total as f64
            )
        };
        format!(
            "{}: {}\n{}{}",
            self.board,
            if self.fits() {
                "fits (estimate: model + ~32 KiB of code in flash, arena + ~40 KiB of stack in RAM)"
            } else {
                "DOES NOT FIT"
            },
            line("flash", self.flash_needed, self.flash_total),
            line("RAM", self.ram_needed, self.ram_total)
        )
    }
}

/// Refuses a model that cannot fit the board, before anything is built.
fn check_fits(board: &Board, file: &ModelFile, model: &Model) -> Result<(), DeviceError> {
    let fit = Fit::estimate(board, file.len() as u64, model.arena_size() as u64);
    if fit.fits() {
        return Ok(());
    }
    Err(DeviceError::DoesNotFit {
        model: file.path().display().to_string(),
        board: board.name.clone(),
        what: fit.to_text(),
    })
}

/// The inputs (concatenated) and their labels: the first `samples` test images of the data set, or, for a
/// model of no known data set (a synthetic one) without `--dataset`, pseudo-random pixels without labels.
#[allow(clippy::type_complexity)]
fn inputs(model: &Model, opts: &RunOptions) -> Result<(String, Vec<u8>, Vec<Option<usize>>), DeviceError> {
    let kind = match opts.dataset {
        Some(kind) => Some(kind),
        None => model.desc().meta.dataset.parse::<DatasetKind>().ok(),
    };
    let Some(kind) = kind else {
        let mut images = vec![0u8; opts.samples * model.input_len()];
        let mut state = 0x5eed_u32;
        for p in &mut images {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *p = (state >> 24) as u8;
        }
        return Ok(("random pixels".into(), images, vec![None; opts.samples]));
    };
    let test = Dataset::load(kind, Split::Test, opts.data.as_deref())?;
    let [h, w, c] = model.input_shape().map(|d| d as usize);
    if test.shape != [h, w, c] {
        return Err(DeviceError::Mismatch(format!(
            "{kind} images are {:?} (HxWxC), the model reads {:?}",
            test.shape,
            [h, w, c]
        )));
    }
    if test.num_classes() != model.num_classes() {
        return Err(DeviceError::Mismatch(format!(
            "{kind} has {} classes, the model {}",
            test.num_classes(),
            model.num_classes()
        )));
    }
    let n = opts.samples.min(test.len());
    let images = (0..n).flat_map(|i| test.image(i).iter().copied()).collect();
    let labels = test.labels[..n].iter().map(|&l| Some(l as usize)).collect();
    Ok((kind.to_string(), images, labels))
}

/// Builds the firmware; returns the ELF's path.
fn build_firmware(board: &Board, model: &Path, inputs: &Path) -> Result<PathBuf, DeviceError> {
    let dir = firmware_dir();
    let target_dir = dir.join("target").join(&board.name);
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&dir)
        .args(["build", "--release", "--target", &board.target, "--target-dir"])
        .arg(&target_dir)
        .env("QFD_BOARD", &board.name)
        .env("QFD_MODEL", model)
        .env("QFD_INPUTS", inputs)
        .env("RUSTFLAGS", format!("-C target-cpu={}", board.cpu))
        .env_remove("QFD_NUM_INPUTS")
        .output()
        .map_err(|source| DeviceError::Spawn { program: "cargo".into(), source })?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(DeviceError::Build { board: board.name.clone(), log });
    }
    Ok(target_dir.join(&board.target).join("release").join("qfd-firmware"))
}

/// Flash and static RAM of the image, from its ELF sections.
fn memory_use(board: &Board, elf: &Path, arena: u64) -> Result<MemoryUse, DeviceError> {
    let bytes = fsutil::read(elf)?;
    let sections = elf::sections(elf, &bytes)
        .map_err(|e| DeviceError::Device { board: board.name.clone(), message: e.to_string() })?;
    let in_region = |addr: u32, r: &qfd_boards::Region| {
        (r.origin as u64..r.origin as u64 + r.length as u64).contains(&(addr as u64))
    };
    let (mut flash, mut ram) = (0u64, 0u64);
    for s in &sections {
        if in_region(s.addr, &board.ram) {
            ram += s.size as u64;
            // `.data`'s initial values are stored in flash and copied at start-up.
            if s.has_data {
                flash += s.size as u64;
            }
        } else if in_region(s.addr, &board.flash) {
            flash += s.size as u64;
        }
    }
    Ok(MemoryUse {
        flash_bytes: flash,
        flash_total: board.flash.length as u64,
        ram_static_bytes: ram,
        ram_total: board.ram.length as u64,
        arena_bytes: arena,
    })
}
