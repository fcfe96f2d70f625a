//! Running a model on a board and proving it computes what the host runtime computes.
//!
//! [`run`] builds the firmware for the board with the model compiled in ([`firmware`]), starts it on a
//! [`Target`](target::Target) (QEMU for emulated boards, probe-rs for real ones), sends it the inputs as
//! `qfd-link` frames and reads its answers ([`session`]), runs the same inputs through the host runtime,
//! and reports mismatches (there must be none), accuracy on both sides, time per inference and per layer,
//! and the memory the image uses ([`report`]).

pub mod elf;
pub mod fake;
pub mod firmware;
pub mod kernel_test;
pub mod logs;
pub mod mlperf;
#[cfg(feature = "probe")]
mod probe;
mod qemu;
pub mod report;
pub mod serial;
pub mod session;
pub mod speed;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use qfd_boards::{Board, BoardError};
use qfd_link::Detail;
use qfd_runtime::Model;

use crate::data::{DataError, Dataset, DatasetKind, Split};
use crate::fsutil::{self, FsError};
use crate::model_file::{ModelFile, ModelFileError};

pub use firmware::{check_fits, Firmware, Fit, MemoryUse};
pub use report::{LayerTime, Mismatch, RunReport};
pub use session::{execute, request_stream, Expect, Outcome};

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
    #[error(
        "{board} is a real board ({runner}); this qfd-host runs emulated boards only: build it with \
         --features probe to use probe-rs, or add --build-only to build and measure the firmware"
    )]
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
    /// The device panicked, exited with failure, runs another model, or broke the protocol.
    #[error("{board}: {message}")]
    Device {
        /// The board.
        board: String,
        /// What happened, with the device's last words.
        message: String,
    },
}

/// How the firmware runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Code generated for the model by `qfd-codegen` (static weights, one kernel call per layer).
    #[default]
    Generated,
    /// The `.qfdm` file in flash, run by the interpreter.
    Interpreter,
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
    /// Pseudo-random inputs instead of test images (`qfd-host bench`).
    pub random_inputs: bool,
    /// Inputs to run.
    pub samples: usize,
    /// How long the device may stay silent before it is stopped.
    pub timeout: Duration,
    /// Generated code or the interpreter.
    pub engine: Engine,
    /// Ask every layer's output checksum, to name the first layer of a mismatch.
    pub trace: bool,
    /// Time every layer of every input (else of the first input only).
    pub time_all_layers: bool,
    /// Build and measure the firmware, do not run it.
    pub build_only: bool,
    /// Speak over a serial link (QEMU's UART, or a serial device) instead of the board's default link.
    pub port: Option<serial::PortName>,
    /// Also copy the built firmware image here (to flash it yourself).
    pub save_elf: Option<PathBuf>,
}

/// One input's answer from the host runtime.
pub(crate) struct HostAnswer {
    class: usize,
    logits: Vec<i32>,
    layer_crc: Vec<u32>,
}

/// Builds the firmware for `opts.board`, runs `opts.samples` inputs on it and compares every answer with
/// the host runtime's. With `build_only`, stops after building and reports the memory use.
pub fn run(opts: &RunOptions, mut on_answer: impl FnMut(usize, usize)) -> Result<RunReport, DeviceError> {
    let board = Board::load(&qfd_boards::boards_dir(), &opts.board)?;
    let file = ModelFile::read(&opts.model)?;
    let model = file.model()?;
    check_fits(&board, &file, &model)?;
    check_port(&board, opts.port.as_ref())?;
    if !opts.build_only && !board.is_emulated() && opts.port.is_none() && !cfg!(feature = "probe") {
        return Err(DeviceError::NeedsProbe { board: board.name.clone(), runner: board.run.to_string() });
    }
    let flavor = firmware::Flavor { engine: opts.engine, serial: opts.port.is_some(), mlperf: false };
    let (work, built) = build_in_work_dir(&board, &file, &model, flavor, opts.save_elf.as_deref())?;
    let report = run_built(opts, &board, &file, &model, &built, &work, &mut on_answer);
    // Keep the work directory of a failed run for a look at the link files; a good run leaves nothing.
    if report.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    }
    report
}

/// Builds the firmware in a fresh work directory under `firmware/target/run/<board>/` (one per run:
/// concurrent runs on one board must not share link files or sockets) and copies the image to `save_elf`
/// if asked. Returns the directory and the image.
pub(crate) fn build_in_work_dir(
    board: &Board,
    file: &ModelFile,
    model: &Model,
    flavor: firmware::Flavor,
    save_elf: Option<&std::path::Path>,
) -> Result<(PathBuf, Firmware), DeviceError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let run_name = format!("{}-{}", std::process::id(), stamp.as_nanos());
    let work = firmware::firmware_dir().join("target").join("run").join(&board.name).join(run_name);
    std::fs::create_dir_all(&work).map_err(|source| FsError::Write { path: work.clone(), source })?;
    let model_path = work.join("model.qfdm");
    fsutil::write_atomic(&model_path, file.bytes())?;
    let elf = work.join("qfd-firmware.elf");
    let built = firmware::build(board, &model_path, firmware::arena_bytes(board, model), flavor, &elf)?;
    if let Some(path) = save_elf {
        fsutil::write_atomic(path, &fsutil::read(&built.elf)?)?;
    }
    Ok((work, built))
}

/// [`run`] after the build.
fn run_built(
    opts: &RunOptions,
    board: &Board,
    file: &ModelFile,
    model: &Model,
    built: &Firmware,
    work: &std::path::Path,
    on_answer: &mut impl FnMut(usize, usize),
) -> Result<RunReport, DeviceError> {
    let mut report = RunReport::new(board, opts, model, built.memory.clone());
    if opts.build_only {
        return Ok(report);
    }

    let (dataset, images, labels) = inputs(model, opts)?;
    report.dataset = dataset;
    report.samples = labels.len();
    let inputs: Vec<&[u8]> = images.chunks(model.input_len()).collect();
    let host = inputs.iter().map(|i| host_answer(model, i, opts.trace)).collect::<Result<Vec<_>, _>>()?;
    let detail = |i: usize| Detail { layer_time: opts.time_all_layers || i == 0, layer_crc: opts.trace };
    let mut requests = request_stream(&inputs, detail);
    let mut target: Box<dyn target::Target> = match &opts.port {
        None => target::for_board(board, work)?,
        Some(port) => {
            // Over a serial port the board waits to be asked who it is.
            requests.splice(0..0, session::request_frame(&qfd_link::Request::Hello));
            let qemu = match &board.run {
                qfd_boards::Runner::Qemu { machine, cpu, .. } => Some((machine.clone(), cpu.clone())),
                qfd_boards::Runner::Probe { .. } => None,
            };
            Box::new(serial::SerialTarget::new(port.clone(), qemu, work))
        }
    };
    report.runner = target.describe();
    let expect = Expect {
        board: &board.name,
        model_crc: qfd_codegen::emit::model_crc(file.bytes())
            .map_err(|e| DeviceError::Mismatch(e.to_string()))?,
        requests: inputs.len(),
    };
    let outcome = execute(target.as_mut(), &built.elf, &requests, expect, opts.timeout, |n| {
        on_answer(n, inputs.len())
    })?;
    report.compare(model, &outcome, &host, &labels)?;
    report.log = logs::decode(&built.elf, &outcome.log);
    Ok(report)
}

/// Refuses a port that does not suit the board: `qemu` is for emulated boards, a device path for real
/// ones.
pub fn check_port(board: &Board, port: Option<&serial::PortName>) -> Result<(), DeviceError> {
    match (port, board.is_emulated()) {
        (Some(serial::PortName::Device { path, .. }), true) => Err(DeviceError::Mismatch(format!(
            "{} is emulated: its UART is QEMU's, so say --port qemu (not {path})",
            board.name
        ))),
        (Some(serial::PortName::Qemu), false) => Err(DeviceError::Mismatch(format!(
            "{} is a real board: give its serial device, e.g. --port /dev/ttyACM0",
            board.name
        ))),
        (Some(_), true) if !matches!(&board.run, qfd_boards::Runner::Qemu { uart: Some(_), .. }) => {
            Err(DeviceError::Mismatch(format!(
                "boards/{}.toml names no UART (run = {{ qemu = {{ uart = ... }} }})",
                board.name
            )))
        }
        _ => Ok(()),
    }
}

pub(crate) fn host_answer(model: &Model, input: &[u8], trace: bool) -> Result<HostAnswer, DeviceError> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let mut layer_crc = Vec::new();
    let class = model
        .run_traced(input, &mut arena, &mut logits, |_, _, out| {
            if trace {
                layer_crc.push(qfd_link::layer_crc(out.bytes()));
            }
        })
        .map_err(|e| DeviceError::Mismatch(format!("the host runtime refused an input: {e}")))?;
    Ok(HostAnswer { class, logits, layer_crc })
}

/// The inputs (concatenated) and their labels: the first `samples` test images of the data set, or, for a
/// model of no known data set (a synthetic one) without `--dataset`, pseudo-random pixels without labels.
#[allow(clippy::type_complexity)]
pub(crate) fn inputs(
    model: &Model,
    opts: &RunOptions,
) -> Result<(String, Vec<u8>, Vec<Option<usize>>), DeviceError> {
    let kind = match opts.dataset {
        Some(kind) => Some(kind),
        None => model.desc().meta.dataset.parse::<DatasetKind>().ok(),
    };
    let Some(kind) = kind.filter(|_| !opts.random_inputs) else {
        let mut images = vec![0u8; opts.samples * model.input_len()];
        let mut state = 0x5eed_u32;
        let bits = match model.desc().values[0].elem {
            qfd_runtime::format::ElemType::Codes { bits } => bits,
            qfd_runtime::format::ElemType::I32 => 8,
        };
        for p in &mut images {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *p = (state >> 24) as u8 >> (8 - bits);
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
