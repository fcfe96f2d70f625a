//! The training pipeline: the stages a method needs (full-precision model, feature-quantized teacher,
//! student), each trained once and cached as a checkpoint in its own run directory.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::batches::{steps_per_epoch, DeviceData};
use super::checkpoint::{load_matching_weights, Checkpoint, CheckpointError, TrainState};
use super::config::{ConfigError, DeviceError, TrainConfig};
use super::method::{loss, Method};
use super::metrics::{append_metrics, write_metrics, EpochMetrics, MetricsError, METRICS_FILE};
use super::models::{Arch, Net, NetOutput, NetSpec};
use super::optim::{OptimError, Optimizer};
use super::plot::{plot_training, PlotError, PLOT_FILE};
use super::progress::EpochProgress;
use super::quant::{QuantMode, QUANT_GROUP};
use crate::data::{DataError, Dataset, DatasetKind, Split};

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad option.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The data set cannot be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The metrics file cannot be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The plot cannot be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The network cannot be built for these options.
    #[error("cannot build the network: {0}")]
    Build(String),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The optimiser state saved in a checkpoint cannot be used.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Training stopped after an epoch because [`train_until`] was asked to (a stand-in for a kill, for
    /// tests); the checkpoint of that epoch is complete and `--resume` continues it.
    #[error("stage {stage}: stopped after epoch {epoch} as asked; pass --resume to continue {}", dir.display())]
    Stopped {
        /// Stage name.
        stage: &'static str,
        /// The last completed epoch.
        epoch: usize,
        /// The run directory.
        dir: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error(
        "stage {stage}: the loss became {loss} at epoch {epoch}; the last good checkpoint is kept in {}. \
         Lower --lr (or --quant-lr) and run again",
        dir.display()
    )]
    Diverged {
        /// Stage name.
        stage: &'static str,
        /// Epoch (1-based).
        epoch: usize,
        /// The bad value.
        loss: f64,
        /// Where the last good checkpoint is.
        dir: PathBuf,
    },
    /// A stage was interrupted and `--resume` was not given.
    #[error("{} holds an unfinished run ({done} of {total} epochs): pass --resume to continue it, or remove it", dir.display())]
    Unfinished {
        /// The run directory.
        dir: PathBuf,
        /// Epochs completed.
        done: usize,
        /// Epochs planned.
        total: usize,
    },
}

/// One model to train.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `fp`, `teacher` or `student`.
    pub name: &'static str,
    /// Its options (method and run directory set for the stage).
    pub config: TrainConfig,
    /// Bits of the pooled-feature quantizer (the QFD teacher).
    pub feature_bits: Option<u8>,
    /// Checkpoint to start from (the full-precision model).
    pub init_from: Option<PathBuf>,
    /// Checkpoint of the teacher to distil from.
    pub teacher: Option<PathBuf>,
}

/// The stages `config` needs, in order. Stages shared between methods (the full-precision model, the QFD
/// teacher) live in sibling run directories named by what they are, so other runs reuse them.
pub fn plan_stages(config: &TrainConfig) -> Vec<Stage> {
    let defaults = TrainConfig::default();
    let sibling = |cfg: &TrainConfig, suffix: &str| match &config.run_dir {
        Some(dir) => dir.join(suffix),
        None => PathBuf::from(format!("{}{}", cfg.run_dir().display(), suffix.trim_start_matches("fp"))),
    };
    // The full-precision model does not depend on the quantization options: keep them at their defaults so
    // every method and bit-width shares one.
    let fp = TrainConfig {
        method: Method::Fp,
        wbits: defaults.wbits,
        abits: defaults.abits,
        teacher_feature_bits: defaults.teacher_feature_bits,
        lambda: defaults.lambda,
        temperature: defaults.temperature,
        ewgs: defaults.ewgs,
        quant_lr: None,
        fp_first_last: defaults.fp_first_last,
        teacher: None,
        run_dir: None,
        ..config.clone()
    };
    let fp_dir = sibling(&fp, "fp");
    let fp_stage = Stage {
        name: "fp",
        config: TrainConfig { run_dir: Some(fp_dir.clone()), ..fp.clone() },
        feature_bits: None,
        init_from: None,
        teacher: None,
    };
    let student = |teacher: Option<PathBuf>| Stage {
        name: "student",
        config: config.clone(),
        feature_bits: None,
        init_from: Some(fp_dir.clone()),
        teacher,
    };
    match config.method {
        Method::Fp => vec![Stage { config: config.clone(), ..fp_stage }],
        Method::Qat => vec![fp_stage, student(None)],
        Method::LogitKd | Method::FeatureKd => match &config.teacher {
            Some(t) => vec![fp_stage, student(Some(t.clone()))],
            None => vec![fp_stage, student(Some(fp_dir.clone()))],
        },
        Method::Qfd => {
            if let Some(t) = &config.teacher {
                return vec![fp_stage, student(Some(t.clone()))];
            }
            let bits = config.teacher_feature_bits;
            let teacher_dir = match &config.run_dir {
                Some(dir) => dir.join(format!("teacher-f{bits}")),
                None => PathBuf::from(format!("{}-teacher-f{bits}", fp_dir.display())),
            };
            let teacher = Stage {
                name: "teacher",
                config: TrainConfig {
                    teacher_feature_bits: bits,
                    run_dir: Some(teacher_dir.clone()),
                    ..fp.clone()
                },
                feature_bits: Some(bits),
                init_from: Some(fp_dir.clone()),
                teacher: None,
            };
            vec![fp_stage, teacher, student(Some(teacher_dir))]
        }
    }
}

/// Training and test data on the device, with what the network needs to know about them.
pub struct Data {
    /// Training images and labels.
    pub train: DeviceData,
    /// Test images and labels.
    pub test: DeviceData,
    /// Which data set.
    pub kind: DatasetKind,
    /// `[C, H, W]`.
    pub input: [i64; 3],
    /// Classes.
    pub classes: i64,
    /// Per-channel mean of `p / 255` (training split).
    pub mean: Vec<f64>,
    /// One std shared by the channels.
    pub std: f64,
}

impl Data {
    /// Loads both splits (the first `subset` training images and as many test images, if given).
    pub fn load(config: &TrainConfig, device: Device) -> Result<Data, TrainError> {
        let dir = config.data.as_deref();
        let mut train = Dataset::load(config.dataset, Split::Train, dir)?;
        let mut test = Dataset::load(config.dataset, Split::Test, dir)?;
        if let Some(n) = config.subset {
            train = train.subset(n);
            let m = n.min(test.len());
            test = test.subset(m);
        }
        let stats = train.channel_stats();
        let [h, w, c] = train.shape;
        Ok(Data {
            input: [c as i64, h as i64, w as i64],
            classes: train.num_classes() as i64,
            mean: stats.mean.iter().map(|&m| m as f64).collect(),
            std: stats.std.iter().map(|&s| s as f64).sum::<f64>() / stats.std.len().max(1) as f64,
            kind: config.dataset,
            train: DeviceData::from_dataset(&train, device),
            test: DeviceData::from_dataset(&test, device),
        })
    }
}

fn net_spec(config: &TrainConfig, feature_bits: Option<u8>, data: &Data) -> Result<NetSpec, TrainError> {
    let arch: Arch = config.arch.parse().map_err(TrainError::Build)?;
    Ok(NetSpec {
        arch,
        input: data.input,
        classes: data.classes,
        weight_bits: config.wbits,
        act_bits: config.abits,
        fp_first_last: config.fp_first_last,
        feature_bits,
        mean: data.mean.clone(),
        std: data.std,
        width: config.width,
    })
}

/// The quantizer mode a stage trains and evaluates in: float for the full-precision model and the teacher
/// (whose feature quantizer is active in every mode), fake quantization for students.
fn stage_mode(stage: &Stage) -> QuantMode {
    if stage.config.method.quantized() {
        QuantMode::Quantize
    } else {
        QuantMode::Float
    }
}

/// A trained network, loaded from its run directory.
pub struct Trained {
    /// The network.
    pub net: Net,
    /// Its variables.
    pub vs: VarStore,
    /// Its training state.
    pub state: TrainState,
}

/// Loads the network trained in `dir` with the configuration recorded there.
pub fn load_trained(dir: &Path, data: &Data, device: Device) -> Result<Trained, TrainError> {
    let state = Checkpoint::peek(dir)?;
    let feature_bits = dir_feature_bits(&state.config, dir);
    let mut vs = VarStore::new(device);
    let net =
        Net::new(&vs.root(), &net_spec(&state.config, feature_bits, data)?).map_err(TrainError::Build)?;
    let ck = Checkpoint::load(dir, &mut vs, &state.config)?;
    Ok(Trained { net, vs, state: ck.state })
}

/// A teacher run directory records a full-precision config; its feature quantizer is named by the directory.
fn dir_feature_bits(config: &TrainConfig, dir: &Path) -> Option<u8> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    (!config.method.quantized() && name.contains("teacher-f")).then_some(config.teacher_feature_bits)
}

/// Trains every stage of `config` that is not already complete; returns the final run directory.
pub fn train(config: &TrainConfig, resume: bool) -> Result<PathBuf, TrainError> {
    train_until(config, resume, None)
}

/// [`train`], stopping with [`TrainError::Stopped`] right after the checkpoint of epoch `stop_after_epoch`
/// of any stage that trains that epoch: how tests simulate a kill between epochs.
pub fn train_until(
    config: &TrainConfig,
    resume: bool,
    stop_after_epoch: Option<usize>,
) -> Result<PathBuf, TrainError> {
    config.validate()?;
    if config.ewgs {
        // tch has no custom autograd functions; EWGS needs one for its scaled straight-through gradient.
        return Err(TrainError::Build(
            "ewgs gradient scaling is not supported yet; remove `ewgs = true`".into(),
        ));
    }
    let device = config.device.resolve()?;
    let data = Data::load(config, device)?;
    let stages = plan_stages(config);
    let mut last = PathBuf::new();
    for stage in &stages {
        last = stage.config.run_dir();
        train_stage(stage, &data, device, resume, stop_after_epoch)?;
    }
    Ok(last)
}

/// Trains one stage, reusing a complete checkpoint and continuing an unfinished one on `resume` (weights,
/// BatchNorm statistics, optimiser buffers and step, schedule position: on CPU the result is bitwise that of
/// an uninterrupted run). With `stop_after_epoch`, returns [`TrainError::Stopped`] after saving that epoch.
pub fn train_stage(
    stage: &Stage,
    data: &Data,
    device: Device,
    resume: bool,
    stop_after_epoch: Option<usize>,
) -> Result<(), TrainError> {
    let cfg = &stage.config;
    let dir = cfg.run_dir();
    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(device);
    let net = Net::new(&vs.root(), &net_spec(cfg, stage.feature_bits, data)?).map_err(TrainError::Build)?;
    let mode = stage_mode(stage);

    let mut opt = Optimizer::from_config(cfg, &vs);
    let mut state = if Checkpoint::exists(&dir) {
        let ck = Checkpoint::load(&dir, &mut vs, cfg)?;
        if ck.state.epochs_completed >= cfg.epochs {
            eprintln!("{}: {} is complete, reusing it", stage.name, dir.display());
            return Ok(());
        }
        if !resume {
            return Err(TrainError::Unfinished { dir, done: ck.state.epochs_completed, total: cfg.epochs });
        }
        eprintln!("{}: resuming {} after epoch {}", stage.name, dir.display(), ck.state.epochs_completed);
        if ck.extra.is_empty() {
            eprintln!(
                "{}: warning: the checkpoint holds no optimizer state (an older version?); momentum restarts",
                stage.name
            );
        } else {
            opt.load_state(&ck.extra)?;
        }
        write_metrics(&dir.join(METRICS_FILE), &ck.state.metrics)?;
        ck.state
    } else {
        if let Some(init) = &stage.init_from {
            load_matching_weights(init, &mut vs)?;
        }
        if mode == QuantMode::Quantize || stage.feature_bits.is_some() {
            // EWGS initialisation of every quantizer from one training batch.
            if let Some(batch) =
                data.train.train_batches(cfg.batch_size, cfg.seed, 0, data.kind.augment()).next()
            {
                tch::no_grad(|| net.forward(&batch.images, false, QuantMode::Calibrate));
            }
        }
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io { path: dir.clone(), source })?;
        let _ = std::fs::remove_file(dir.join(METRICS_FILE));
        TrainState {
            epochs_completed: 0,
            step: 0,
            best_test_acc: None,
            config: cfg.clone(),
            metrics: Vec::new(),
        }
    };

    let teacher = match &stage.teacher {
        Some(t) => Some(load_trained(t, data, device)?),
        None => None,
    };
    let schedule = cfg.schedule();
    let steps = steps_per_epoch(data.train.len(), cfg.batch_size);
    eprintln!("{}: training {} ({}) into {}", stage.name, cfg.arch, cfg.method, dir.display());
    for epoch in state.epochs_completed + 1..=cfg.epochs {
        // Nothing in an epoch should draw from libtorch's global generator (batches come from a host
        // generator); reseeding per epoch keeps a resumed run identical even if something does.
        tch::manual_seed(cfg.seed.wrapping_add(epoch as u64) as i64);
        let mut progress = EpochProgress::new(epoch, cfg.epochs, steps);
        let (mut sums, mut seen, mut correct) = ([0f64; 3], 0u64, 0i64);
        for (i, batch) in
            data.train.train_batches(cfg.batch_size, cfg.seed, epoch, data.kind.augment()).enumerate()
        {
            let factor = schedule.factor_at(state.step, steps);
            opt.set_lr(cfg.lr() * factor);
            opt.set_lr_group(QUANT_GROUP, cfg.quant_lr() * factor);
            let out = net.forward(&batch.images, true, mode);
            let t_out: Option<NetOutput> = teacher.as_ref().map(|t| {
                tch::no_grad(|| t.net.forward(&batch.images, false, stage_mode_of(&t.state.config)))
            });
            let l = loss(cfg.method, &out, t_out.as_ref(), &batch.labels, cfg.lambda, cfg.temperature);
            let total = f64::try_from(&l.total)?;
            if !total.is_finite() || total > 1e6 {
                return Err(TrainError::Diverged { stage: stage.name, epoch, loss: total, dir });
            }
            opt.backward_step(&l.total)?;
            let n = batch.labels.size()[0] as u64;
            sums[0] += total * n as f64;
            sums[1] += f64::try_from(&l.task)? * n as f64;
            if let Some(d) = &l.distill {
                sums[2] += f64::try_from(d)? * n as f64;
            }
            correct += i64::try_from(out.logits.argmax(1, false).eq_tensor(&batch.labels).sum(Kind::Int64))?;
            seen += n;
            state.step += 1;
            progress.update(i as u64 + 1, sums[0] / seen as f64, correct as f64 / seen as f64, seen);
        }
        progress.evaluating();
        let (test_loss, test_acc) = evaluate(&net, &data.test, mode);
        let seen_f = seen.max(1) as f64;
        let m = EpochMetrics {
            epoch,
            train_loss: sums[0] / seen_f,
            train_task_loss: sums[1] / seen_f,
            train_distill_loss: cfg.method.needs_teacher().then_some(sums[2] / seen_f),
            train_acc: correct as f64 / seen_f,
            test_loss,
            test_acc,
            lr: cfg.lr() * schedule.factor_at(state.step.saturating_sub(1), steps),
            images_per_sec: progress.images_per_sec(),
            seconds: progress.elapsed().as_secs_f64(),
        };
        progress.finish(&m);
        append_metrics(&dir.join(METRICS_FILE), &m)?;
        state.metrics.push(m);
        state.epochs_completed = epoch;
        state.best_test_acc = Some(state.best_test_acc.unwrap_or(0.0).max(test_acc));
        let opt_state = opt.state();
        let extra: Vec<(&str, &Tensor)> = opt_state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        Checkpoint::save(&dir, &vs, &extra, &state)?;
        plot_training(&state.metrics, &dir.join(PLOT_FILE))?;
        if stop_after_epoch == Some(epoch) && epoch < cfg.epochs {
            return Err(TrainError::Stopped { stage: stage.name, epoch, dir });
        }
    }
    Ok(())
}

fn stage_mode_of(config: &TrainConfig) -> QuantMode {
    if config.method.quantized() {
        QuantMode::Quantize
    } else {
        QuantMode::Float
    }
}

/// Mean cross-entropy and top-1 accuracy over `data`, in evaluation mode.
pub fn evaluate(net: &Net, data: &DeviceData, mode: QuantMode) -> (f64, f64) {
    tch::no_grad(|| {
        let (mut loss_sum, mut correct, mut n) = (0f64, 0i64, 0i64);
        for batch in data.test_batches(500) {
            let out = net.forward(&batch.images, false, mode);
            let k = batch.labels.size()[0];
            loss_sum += f64::try_from(out.logits.cross_entropy_for_logits(&batch.labels)).unwrap_or(f64::NAN)
                * k as f64;
            correct += i64::try_from(out.logits.argmax(1, false).eq_tensor(&batch.labels).sum(Kind::Int64))
                .unwrap_or(0);
            n += k;
        }
        (loss_sum / n.max(1) as f64, correct as f64 / n.max(1) as f64)
    })
}
