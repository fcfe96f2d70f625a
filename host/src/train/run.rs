//! Training: runs the stages [`plan_stages`] lists, each trained once and cached as a checkpoint in its own
//! run directory, and evaluates trained models.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::batches::{steps_per_epoch, DeviceData};
use super::bwrf;
use super::checkpoint::{load_matching_weights, Checkpoint, CheckpointError, TrainState};
use super::config::{ConfigError, DeviceError, TrainConfig};
use super::method::loss;
use super::metrics::{append_metrics, write_metrics, EpochMetrics, Evaluation, MetricsError, METRICS_FILE};
use super::models::{Arch, Net, NetSpec};
use super::optim::{OptimError, Optimizer};
use super::plot::{plot_training, PlotError, PLOT_FILE};
use super::progress::EpochProgress;
use super::quant::{QuantMode, QUANT_GROUP};
use super::stages::{plan_stages, Stage};
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
    /// The lock on the run directory cannot be taken.
    #[error(transparent)]
    Lock(#[from] crate::fsutil::FsError),
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

pub(crate) fn net_spec(
    config: &TrainConfig,
    feature_bits: Option<u8>,
    data: &Data,
) -> Result<NetSpec, TrainError> {
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
        ewgs_delta: config.ewgs.then_some(config.ewgs_delta),
        vit: config.vit_shape(),
        log2_softmax: config.log2_softmax,
    })
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

/// Training batches (not augmented) over which a quantized model's BatchNorm statistics are re-estimated
/// after each epoch.
const BN_BATCHES: usize = 20;

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
    // Another process (a study's other job) may be training this stage: wait for it, then reuse its work.
    let _lock = crate::fsutil::lock_exclusive(&dir.join("train.lock"), || {
        eprintln!("{}: another process is training {}; waiting for it", stage.name, dir.display())
    })?;
    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(device);
    let net = Net::new(&vs.root(), &net_spec(cfg, stage.feature_bits, data)?).map_err(TrainError::Build)?;
    let mode = mode_of(cfg);
    let teacher = match &stage.teacher {
        Some(t) => Some(load_trained(t, data, device)?),
        None => None,
    };
    let teacher = teacher.as_ref().map(|t| Teacher { net: &t.net, mode: mode_of(&t.state.config) });
    // Block-wise replacement's full-precision partner: frozen, so that no gradient reaches it.
    let partner = match &stage.partner {
        Some(dir) => {
            let mut p = load_trained(dir, data, device)?;
            p.vs.freeze();
            Some(p)
        }
        None => None,
    };
    let partner = partner.as_ref().map(|p| &p.net);

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
        let start = match &stage.init_from {
            Some(init) => {
                load_matching_weights(init, &mut vs)?;
                // A quantized starting point (post-training quantization) keeps its quantizers.
                if Checkpoint::peek(init)?.config.method.quantized() {
                    reestimate_batch_norm(&net, cfg, data);
                } else {
                    calibrate(&net, cfg, stage.feature_bits.is_some(), data);
                }
                let start = evaluate(&net, &data.test, mode, teacher.as_ref(), cfg);
                eprintln!("{}: starting from {}: {}", stage.name, init.display(), start.summary());
                Some(start)
            }
            None => None,
        };
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io { path: dir.clone(), source })?;
        let _ = std::fs::remove_file(dir.join(METRICS_FILE));
        TrainState {
            epochs_completed: 0,
            step: 0,
            best_test_acc: None,
            config: cfg.clone(),
            metrics: Vec::new(),
            start,
        }
    };

    eprintln!("{}: training {} ({}) into {}", stage.name, cfg.arch, cfg.method, dir.display());
    for epoch in state.epochs_completed + 1..=cfg.epochs {
        let m = train_epoch(&net, &mut opt, teacher.as_ref(), partner, cfg, data, epoch, &mut state.step)
            .map_err(|e| e.in_stage(stage.name, &dir))?;
        append_metrics(&dir.join(METRICS_FILE), &m)?;
        state.best_test_acc = Some(state.best_test_acc.unwrap_or(0.0).max(m.test_acc));
        state.metrics.push(m);
        state.epochs_completed = epoch;
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

/// Sets every quantizer of a model that starts from trained weights (EWGS initialisation from one training
/// batch), then, for a quantized model, its BatchNorm statistics.
fn calibrate(net: &Net, cfg: &TrainConfig, has_feature_quantizer: bool, data: &Data) {
    let mode = mode_of(cfg);
    if mode == QuantMode::Quantize || has_feature_quantizer {
        if let Some(batch) = data.train.train_batches(cfg.batch_size, cfg.seed, 0, data.kind.augment()).next()
        {
            tch::no_grad(|| net.forward(&batch.images, false, QuantMode::Calibrate));
        }
    }
    reestimate_batch_norm(net, cfg, data);
}

/// Re-estimates a quantized model's BatchNorm statistics (see [`Net::reestimate_batch_norm`]) over the
/// first [`BN_BATCHES`] training batches, not augmented.
fn reestimate_batch_norm(net: &Net, cfg: &TrainConfig, data: &Data) {
    if mode_of(cfg) == QuantMode::Quantize {
        let batches: Vec<Tensor> =
            data.train.test_batches(cfg.batch_size).take(BN_BATCHES).map(|b| b.images).collect();
        net.reestimate_batch_norm(&batches, QuantMode::Quantize);
    }
}

/// Why an epoch stopped early, before the stage's name and directory are known.
enum EpochError {
    Diverged { epoch: usize, loss: f64 },
    Torch(tch::TchError),
}

impl From<tch::TchError> for EpochError {
    fn from(e: tch::TchError) -> Self {
        EpochError::Torch(e)
    }
}

impl EpochError {
    fn in_stage(self, stage: &'static str, dir: &Path) -> TrainError {
        match self {
            EpochError::Diverged { epoch, loss } => {
                TrainError::Diverged { stage, epoch, loss, dir: dir.into() }
            }
            EpochError::Torch(e) => TrainError::Torch(e),
        }
    }
}

/// One epoch: the optimiser steps over the shuffled, augmented training split, then the evaluation.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    net: &Net,
    opt: &mut Optimizer,
    teacher: Option<&Teacher>,
    partner: Option<&Net>,
    cfg: &TrainConfig,
    data: &Data,
    epoch: usize,
    step: &mut u64,
) -> Result<EpochMetrics, EpochError> {
    // Nothing in an epoch should draw from libtorch's global generator (batches come from a host
    // generator); reseeding per epoch keeps a resumed run identical even if something does.
    tch::manual_seed(cfg.seed.wrapping_add(epoch as u64) as i64);
    let (mode, schedule) = (mode_of(cfg), cfg.schedule());
    let steps = steps_per_epoch(data.train.len(), cfg.batch_size);
    let mut progress = EpochProgress::new(epoch, cfg.epochs, steps);
    let mut sums = StepSums::default();
    // The figures last read back (the loop reads them at its last step).
    let mut figures = None;
    let bwrf = cfg.bwrf();
    for (i, batch) in
        data.train.train_batches(cfg.batch_size, cfg.seed, epoch, data.kind.augment()).enumerate()
    {
        let factor = schedule.factor_at(*step, steps);
        let factor = factor * cfg.lr_factor();
        opt.set_lr(cfg.lr() * factor);
        opt.set_lr_group(QUANT_GROUP, cfg.quant_lr() * factor);
        // (Block-wise replacement's prefix paths continue from the network's own block inputs.)
        let (out, inputs) = match partner {
            Some(_) => net.forward_keeping_inputs(&batch.images, true, mode),
            None => (net.forward(&batch.images, true, mode), Vec::new()),
        };
        let t_out = teacher.map(|t| tch::no_grad(|| t.net.forward(&batch.images, false, t.mode)));
        let mut l = loss(cfg.method, &out, t_out.as_ref(), &batch.labels, cfg.lambda, cfg.temperature);
        let path_loss = partner.map(|p| {
            let count = bwrf::path_count(net.blocks(), bwrf.mode);
            let paths = bwrf::paths_for_step(count, bwrf.paths, cfg.seed, *step);
            bwrf::path_loss(net, p, &batch.images, &batch.labels, &inputs, &paths, &bwrf)
        });
        if let Some(p) = &path_loss {
            l.total = &l.total + p * cfg.bwrf_weight;
        }
        opt.zero_grad();
        net.backward(&l.total)?;
        opt.step()?;
        let correct = out.logits.argmax(1, false).eq_tensor(&batch.labels).sum(Kind::Int64);
        sums.add(&l.total, &l.task, l.distill.as_ref(), path_loss.as_ref(), &correct, batch.labels.size()[0]);
        *step += 1;
        let last = i as u64 + 1 == steps;
        if last || (i as u64 + 1).is_multiple_of(READ_BACK_STEPS) {
            let read = sums.read()?;
            if !read.worst_loss.is_finite() || read.worst_loss > 1e6 {
                return Err(EpochError::Diverged { epoch, loss: read.worst_loss });
            }
            let images = read.images.max(1.0);
            progress.update(i as u64 + 1, read.sums[0] / images, read.sums[4] / images, read.images as u64);
            figures = Some(read);
        }
    }
    let figures = match figures {
        Some(f) => f,
        None => sums.read()?,
    };
    let (sums, seen) = (figures.sums, figures.images);
    progress.evaluating();
    reestimate_batch_norm(net, cfg, data);
    let test = evaluate(net, &data.test, mode, teacher, cfg);
    let seen = seen.max(1.0);
    let m = EpochMetrics {
        epoch,
        train_loss: sums[0] / seen,
        train_task_loss: sums[1] / seen,
        train_distill_loss: cfg.method.needs_teacher().then_some(sums[2] / seen),
        train_path_loss: partner.is_some().then_some(sums[3] / seen),
        train_acc: sums[4] / seen,
        test_loss: test.loss,
        test_acc: test.acc,
        test_distill_loss: test.distill,
        lr: cfg.lr() * cfg.lr_factor() * schedule.factor_at(step.saturating_sub(1), steps),
        images_per_sec: progress.images_per_sec(),
        seconds: progress.elapsed().as_secs_f64(),
    };
    progress.finish(&m);
    Ok(m)
}

/// Steps between read-backs of the step figures (loss terms, accuracy): reading a value back waits for the
/// device, and doing it every step leaves a GPU idle between steps. A loss that diverges is seen within this
/// many steps (the checkpoint of the last epoch stays as it was).
const READ_BACK_STEPS: u64 = 25;

/// The figures of an epoch's steps, summed on the device (in `f64`) as the steps go and read back now and
/// then ([`READ_BACK_STEPS`]).
#[derive(Default)]
struct StepSums {
    /// Per image: the loss, its task term, its distillation term, the mean path loss, the correct answers.
    sums: Option<Tensor>,
    /// The largest step loss (NaN once one was NaN).
    worst: Option<Tensor>,
    /// Images so far.
    images: i64,
}

/// What [`StepSums::read`] returns.
struct StepFigures {
    /// The sums of [`StepSums`], in its order.
    sums: [f64; 5],
    /// The largest step loss so far.
    worst_loss: f64,
    /// Images so far.
    images: f64,
}

impl StepSums {
    /// Adds one step's figures (its loss terms are means over its `n` images).
    fn add(
        &mut self,
        total: &Tensor,
        task: &Tensor,
        distill: Option<&Tensor>,
        path: Option<&Tensor>,
        correct: &Tensor,
        n: i64,
    ) {
        let scalar = |t: &Tensor| t.detach().to_kind(Kind::Double).reshape([1]);
        let zero = || total.zeros_like().to_kind(Kind::Double).reshape([1]);
        let per_step = [
            scalar(total),
            scalar(task),
            distill.map(scalar).unwrap_or_else(zero),
            path.map(scalar).unwrap_or_else(zero),
        ];
        let row = Tensor::cat(&[Tensor::cat(&per_step, 0) * n as f64, scalar(correct)], 0);
        self.sums = Some(match self.sums.take() {
            Some(s) => s + row,
            None => row,
        });
        let loss = scalar(total);
        self.worst = Some(match self.worst.take() {
            Some(w) => w.maximum(&loss),
            None => loss,
        });
        self.images += n;
    }

    /// The figures so far (waits for the device).
    fn read(&self) -> Result<StepFigures, tch::TchError> {
        let sums = match &self.sums {
            Some(s) => Vec::<f64>::try_from(s)?,
            None => vec![0.0; 5],
        };
        let worst_loss = match &self.worst {
            Some(w) => f64::try_from(w)?,
            None => 0.0,
        };
        Ok(StepFigures { sums: core::array::from_fn(|i| sums[i]), worst_loss, images: self.images as f64 })
    }
}

/// The quantizer mode a model trains and evaluates in: float for the full-precision model and the teacher
/// (whose feature quantizer is active in every mode), fake quantization for students.
fn mode_of(config: &TrainConfig) -> QuantMode {
    if config.method.quantized() {
        QuantMode::Quantize
    } else {
        QuantMode::Float
    }
}

/// The predicted class of every image of `data` (in order), in evaluation mode.
pub fn predictions(net: &Net, data: &DeviceData, mode: QuantMode) -> Vec<usize> {
    tch::no_grad(|| {
        data.test_batches(500)
            .flat_map(|batch| {
                let classes = net.forward(&batch.images, false, mode).logits.argmax(1, false);
                Vec::<i64>::try_from(classes).unwrap_or_default().into_iter().map(|c| c as usize)
            })
            .collect()
    })
}

/// A teacher as a stage uses it: its network and the mode it runs in.
pub struct Teacher<'a> {
    /// The teacher's network.
    pub net: &'a Net,
    /// Its quantizer mode.
    pub mode: QuantMode,
}

/// Evaluates `net` (in evaluation mode) over `data`; with a teacher, also the distillation term of `method`.
pub fn evaluate(
    net: &Net,
    data: &DeviceData,
    mode: QuantMode,
    teacher: Option<&Teacher>,
    cfg: &TrainConfig,
) -> Evaluation {
    tch::no_grad(|| {
        let (mut loss_sum, mut distill_sum, mut correct, mut n) = (0f64, 0f64, 0i64, 0i64);
        for batch in data.test_batches(500) {
            let out = net.forward(&batch.images, false, mode);
            let t_out = teacher.map(|t| t.net.forward(&batch.images, false, t.mode));
            let l = loss(cfg.method, &out, t_out.as_ref(), &batch.labels, cfg.lambda, cfg.temperature);
            let k = batch.labels.size()[0];
            loss_sum += f64::try_from(&l.task).unwrap_or(f64::NAN) * k as f64;
            if let Some(d) = &l.distill {
                distill_sum += f64::try_from(d).unwrap_or(f64::NAN) * k as f64;
            }
            correct += i64::try_from(out.logits.argmax(1, false).eq_tensor(&batch.labels).sum(Kind::Int64))
                .unwrap_or(0);
            n += k;
        }
        let n = n.max(1) as f64;
        Evaluation {
            loss: loss_sum / n,
            acc: correct as f64 / n,
            distill: (teacher.is_some() && cfg.method.needs_teacher()).then_some(distill_sum / n),
        }
    })
}
