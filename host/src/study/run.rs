//! One run of a study: train its stages (reusing what is done), export the integer model, run the fixed
//! test subset on the board, and record everything in `study-result.json` in the run directory. A run whose
//! result file matches its options is not repeated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Bits, DeviceStep, Group, RunSpec, Variant};
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceError, Engine, RunOptions};
use crate::eval::EvalEngine;
use crate::export::{self, ExportError};
use crate::fsutil::{self, FsError};
use crate::train::batches::DeviceData;
use crate::train::checkpoint::{fingerprint, Checkpoint, CheckpointError};
use crate::train::quant::QuantMode;
use crate::train::run::{load_trained, predictions, train_stage, Data, TrainError};
use crate::train::stages::plan_stages_shared;

/// The file a finished run leaves in its directory.
pub const RESULT_FILE: &str = "study-result.json";

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Training failed.
    #[error("{label}: training failed: {source}")]
    Train {
        /// The run.
        label: String,
        /// Why.
        #[source]
        source: TrainError,
    },
    /// Export failed.
    #[error("{label}: export failed: {source}")]
    Export {
        /// The run.
        label: String,
        /// Why.
        #[source]
        source: ExportError,
    },
    /// The board run failed.
    #[error("{label}: the run on the board failed: {source}")]
    Device {
        /// The run.
        label: String,
        /// Why.
        #[source]
        source: DeviceError,
    },
    /// The result file could not be written.
    #[error(transparent)]
    Write(#[from] FsError),
}

/// The integer model on the board, on the study's fixed test subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceResult {
    /// The board.
    pub board: String,
    /// Test images run (the first N).
    pub samples: usize,
    /// Correct answers of the device.
    pub device_correct: usize,
    /// Correct answers of the host runtime on the same images.
    pub host_correct: usize,
    /// Inputs whose outputs differ between device and host (0 when bit-exact).
    pub mismatches: usize,
    /// Mean instructions (QEMU) or cycles (board) per inference.
    pub time_per_inference: f64,
    /// `instructions` or `cycles`.
    pub time_unit: String,
    /// Flash bytes of the firmware.
    pub flash_bytes: u64,
}

/// What one run measured. Accuracies are in `[0, 1]`, on the whole test split unless said otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Grid or ablation.
    pub group: Group,
    /// Architecture.
    pub arch: String,
    /// Method.
    pub variant: Variant,
    /// Bit-widths (`None` for fp).
    pub bits: Option<Bits>,
    /// Distillation weight.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// The training options' fingerprint: a result with another one is stale.
    pub fingerprint: String,
    /// Test accuracy of the trained model as trained (fake-quantized for quantized methods).
    pub fake_quant_acc: f64,
    /// Test accuracy of the exported integer model under the host runtime.
    pub integer_acc: Option<f64>,
    /// Test images where the fake-quantized and integer models agree.
    pub agreement: Option<f64>,
    /// Test images the accuracies were measured on.
    pub test_images: usize,
    /// The board check.
    pub device: Option<DeviceResult>,
    /// Test accuracy after each epoch of the final stage.
    pub curve: Vec<f64>,
    /// Test accuracy before the first epoch (after calibrating the quantizers), when it starts from a model.
    pub start_acc: Option<f64>,
    /// Seconds spent training the final stage.
    pub train_seconds: f64,
    /// Wall seconds this run took here, shared stages trained on its behalf included (0 when reused).
    pub wall_seconds: f64,
    /// The block-replacement setting (block-replacement methods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwrf: Option<super::BwrfSetting>,
}

impl RunResult {
    /// Reads the result file in `dir`, if there is one that parses.
    pub fn read(dir: &Path) -> Option<RunResult> {
        let bytes = std::fs::read(dir.join(RESULT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// How a study measures each run: on the board (if any) and on how many test images (all when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Measure<'a> {
    /// The board check.
    pub device: Option<&'a DeviceStep>,
    /// Test images for the accuracies.
    pub test_images: Option<usize>,
    /// What computes the integer model's accuracy (every engine gives the same result).
    pub engine: EvalEngine,
}

/// The fingerprint a run's result must carry: the training options and how it is measured.
pub fn run_fingerprint(spec: &RunSpec, measure: Measure<'_>) -> String {
    let device = measure.device.map(|d| format!(" {}x{}", d.board, d.samples)).unwrap_or_default();
    let limit = measure.test_images.map(|n| format!(" test{n}")).unwrap_or_default();
    format!("{}{device}{limit}", fingerprint(&spec.config))
}

/// The result of `spec` if it is already done with these options.
pub fn done(spec: &RunSpec, measure: Measure<'_>) -> Option<RunResult> {
    RunResult::read(&spec.dir()).filter(|r| r.fingerprint == run_fingerprint(spec, measure))
}

/// The result of `spec` trained and exported with these options but not checked on the board yet (the
/// study ran with `--skip-device`), if there is one.
pub fn awaiting_board(spec: &RunSpec, measure: Measure<'_>) -> Option<RunResult> {
    measure.device?;
    let unchecked = Measure { device: None, ..measure };
    RunResult::read(&spec.dir())
        .filter(|r| r.device.is_none() && r.fingerprint == run_fingerprint(spec, unchecked))
}

/// Trains, exports and checks `spec` on the board, writes its result file and returns it. A run trained and
/// exported before without its board check only has that check done.
pub fn run_one(spec: &RunSpec, measure: Measure<'_>) -> Result<RunResult, RunError> {
    let label = spec.label();
    let started = Instant::now();
    if let Some(mut result) = awaiting_board(spec, measure) {
        if let (Some(step), true) = (measure.device, spec.variant.quantized()) {
            result.device = Some(
                run_on_board(&trained_dir(spec).join("model.qfdm"), step, spec)
                    .map_err(|source| RunError::Device { label: label.clone(), source })?,
            );
        }
        result.fingerprint = run_fingerprint(spec, measure);
        write_result(&spec.dir(), &result)?;
        return Ok(result);
    }
    let train_err = |source| RunError::Train { label: label.clone(), source };
    let torch_device = spec.config.device.resolve().map_err(|e| train_err(e.into()))?;
    let data = Data::load(&spec.config, torch_device).map_err(train_err)?;
    let stages = plan_stages_shared(&spec.config, &spec.shared);
    for stage in &stages {
        // `resume`: a study that was stopped continues its unfinished stage where it left off.
        train_stage(stage, &data, torch_device, true, None).map_err(train_err)?;
    }
    let trained_dir = trained_dir(spec);
    let state = Checkpoint::peek(&trained_dir).map_err(|e: CheckpointError| train_err(e.into()))?;
    let curve: Vec<f64> = state.metrics.iter().map(|m| m.test_acc).collect();
    let mut result = RunResult {
        group: spec.group,
        arch: spec.arch.clone(),
        variant: spec.variant,
        bits: spec.bits,
        lambda: spec.lambda,
        seed: spec.seed,
        fingerprint: run_fingerprint(spec, measure),
        fake_quant_acc: curve.last().copied().unwrap_or(f64::NAN),
        integer_acc: None,
        agreement: None,
        test_images: data.test.len(),
        device: None,
        curve,
        start_acc: state.start.map(|s| s.acc),
        train_seconds: state.metrics.iter().map(|m| m.seconds).sum(),
        wall_seconds: 0.0,
        bwrf: spec.bwrf,
    };
    if !spec.variant.quantized() {
        // The training curve is on the subset's test images; the tables compare on the study's test images.
        let (acc, images) = test_accuracy(&trained_dir, &data, measure.test_images).map_err(train_err)?;
        (result.fake_quant_acc, result.test_images) = (acc, images);
    } else {
        let exported = export::export_with(
            &trained_dir,
            spec.config.data.as_deref(),
            measure.test_images,
            measure.engine,
        )
        .map_err(|source| RunError::Export { label: label.clone(), source })?;
        let model = trained_dir.join("model.qfdm");
        fsutil::write_atomic(&model, &exported.bytes)?;
        result.fake_quant_acc = exported.fake_quant_accuracy;
        result.integer_acc = Some(exported.integer_accuracy);
        result.agreement = Some(exported.agreement);
        result.test_images = exported.images;
        if let Some(step) = measure.device {
            result.device = Some(
                run_on_board(&model, step, spec)
                    .map_err(|source| RunError::Device { label: label.clone(), source })?,
            );
        }
    }
    result.wall_seconds = started.elapsed().as_secs_f64();
    write_result(&spec.dir(), &result)?;
    Ok(result)
}

/// Where the model `spec` exports was trained: its last stage's directory.
fn trained_dir(spec: &RunSpec) -> PathBuf {
    let stages = plan_stages_shared(&spec.config, &spec.shared);
    stages.last().map(|s| s.config.run_dir()).unwrap_or_else(|| spec.dir())
}

/// Accuracy of the full-precision model in `dir` on the first `limit` images of the test split (all when
/// `None`), and the number of images.
fn test_accuracy(dir: &Path, data: &Data, limit: Option<usize>) -> Result<(f64, usize), TrainError> {
    let trained = load_trained(dir, data, tch::Device::Cpu)?;
    let config = &trained.state.config;
    let mut test = Dataset::load(config.dataset, Split::Test, config.data.as_deref())?;
    if let Some(n) = limit {
        test.truncate(n);
    }
    let predicted =
        predictions(&trained.net, &DeviceData::from_dataset(&test, tch::Device::Cpu), QuantMode::Float);
    let correct = predicted.iter().zip(&test.labels).filter(|(&p, &l)| p == l as usize).count();
    Ok((correct as f64 / test.len().max(1) as f64, test.len()))
}

fn run_on_board(model: &Path, step: &DeviceStep, spec: &RunSpec) -> Result<DeviceResult, DeviceError> {
    let opts = RunOptions {
        board: step.board.clone(),
        model: model.to_path_buf(),
        data: spec.config.data.clone(),
        dataset: Some(spec.config.dataset),
        random_inputs: false,
        samples: step.samples,
        timeout: Duration::from_secs(120),
        engine: Engine::Generated,
        trace: false,
        time_all_layers: false,
        build_only: false,
        port: None,
        save_elf: None,
    };
    let report = device::run(&opts, |_, _| {})?;
    Ok(DeviceResult {
        board: report.board.clone(),
        samples: report.samples,
        device_correct: report.device_correct,
        host_correct: report.host_correct,
        mismatches: report.mismatches.len() + report.refused.len(),
        time_per_inference: report.mean_time(),
        time_unit: report.time_unit.to_string(),
        flash_bytes: report.memory.flash_bytes,
    })
}

fn write_result(dir: &Path, result: &RunResult) -> Result<(), FsError> {
    std::fs::create_dir_all(dir).map_err(|source| FsError::Write { path: PathBuf::from(dir), source })?;
    let json = serde_json::to_vec_pretty(result).expect("a result is always representable in JSON");
    fsutil::write_atomic(&dir.join(RESULT_FILE), &json)
}
