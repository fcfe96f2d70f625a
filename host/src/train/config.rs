//! Every option of `qfd-host train`, as one value that a TOML file, the command line and a checkpoint share.
//!
//! TOML keys are the flag names without `--` (`fp-first-last = true`); unknown keys are refused. A config
//! read from a file is checked with [`TrainConfig::validate`] before use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::bwrf::{BwrfMode, BwrfOptions, PathCount, PathLoss};
use super::method::Method;
use super::schedule::LrSchedule;
use crate::data::DatasetKind;
use crate::fsutil::{self, FsError};
use qfd_codegen::synth::VitShape;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and the line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid training option {field}: {reason}")]
    Invalid {
        /// The option, as written in TOML and on the command line.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// The default learning rate of a fine-tuning stage, as a fraction of the optimiser's default: starting
/// quantization-aware training from trained weights at the from-scratch rate throws much of them away.
pub const FINETUNE_LR_FACTOR: f64 = 0.2;

/// The batch the learning rates are meant for: `lr-batch-scaling` scales them by `batch-size / this`.
pub const BATCH_OF_THE_RATES: usize = 128;

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// SGD with momentum (Nesterov by default); base learning rate 0.05.
    Sgd,
    /// Adam; base learning rate 1e-3.
    Adam,
    /// Adam with decoupled weight decay (Loshchilov and Hutter); base learning rate 1e-3.
    Adamw,
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::Adamw),
            other => Err(format!("unknown optimizer '{other}' (expected sgd, adam or adamw)")),
        }
    }
}

impl OptimizerKind {
    /// The learning rate used when none is given.
    pub fn default_lr(self) -> f64 {
        match self {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adam | OptimizerKind::Adamw => 1e-3,
        }
    }
}

/// Where to train: `auto`, `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA GPU when one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this index.
    Cuda(usize),
}

/// A device that was asked for but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The text names no device.
    #[error("unknown device '{0}': expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    /// No CUDA GPU is usable (none present, or libtorch was built without CUDA).
    #[error("device cuda:{0} asked for, but CUDA is not available (no GPU, or a CPU-only libtorch)")]
    NoCuda(usize),
    /// The GPU index is too large.
    #[error("device cuda:{index} asked for, but libtorch sees only {count} CUDA device(s), numbered from 0")]
    NoSuchGpu {
        /// The index asked for.
        index: usize,
        /// How many GPUs libtorch sees.
        count: usize,
    },
}

impl DeviceChoice {
    /// The `tch` device: `auto` gives `Cuda(0)` when [`tch::Cuda::is_available`], else `Cpu`.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Auto => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda(index) if !tch::Cuda::is_available() => Err(DeviceError::NoCuda(index)),
            DeviceChoice::Cuda(index) => {
                let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                if index < count {
                    Ok(tch::Device::Cuda(index))
                } else {
                    Err(DeviceError::NoSuchGpu { index, count })
                }
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            t => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

/// All options of a training run. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainConfig {
    /// Architecture name: `resnet8`, `resnet20`, `mobilenetv1`, `mobilenetv2`.
    pub arch: String,
    /// Data set.
    #[serde(with = "as_str")]
    pub dataset: DatasetKind,
    /// Directory of the data set's files; `None` for the data set's standard place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Train and test on the first N images only (quick runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<usize>,
    /// Training method.
    #[serde(with = "as_str")]
    pub method: Method,
    /// Weight bit-width of the quantized layers, 1-8.
    pub wbits: u8,
    /// Activation bit-width of the quantized layers, 1-8.
    pub abits: u8,
    /// Keep the first conv and last FC in full precision (the paper's setting; export refuses it).
    pub fp_first_last: bool,
    /// Bit-width of the QFD teacher's quantized pooled feature: 1, 4 or 8.
    pub teacher_feature_bits: u8,
    /// Weight of the distillation term: loss = CE + lambda * distillation.
    pub lambda: f64,
    /// Softening temperature of logit distillation.
    pub temperature: f64,
    /// EWGS gradient scaling in the quantizers (see [`ewgs`](super::ewgs)).
    pub ewgs: bool,
    /// EWGS's `delta`: how strongly the gradient of a rounded value is scaled by its distance (in code units)
    /// to the rounded value.
    pub ewgs_delta: f64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Base learning rate of this run's last stage; `None` for the optimiser's default
    /// ([`OptimizerKind::default_lr`]) when it trains from scratch, a fifth of it when it fine-tunes a
    /// trained model (the QFD teacher and every quantized student).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Base learning rate of the shared full-precision stage of a non-`fp` method; `None` for the
    /// optimiser's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp_lr: Option<f64>,
    /// Epochs of the shared full-precision stage of a non-`fp` method; `None` for `epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp_epochs: Option<usize>,
    /// Base learning rate of the quantizer parameters (bounds, alpha; their gradients are scaled as in LSQ);
    /// `None` for `lr`; 0 freezes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant_lr: Option<f64>,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
    /// L2 weight decay of the weights.
    pub weight_decay: f64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Scale every learning rate by `batch-size / 128` (the linear scaling rule: the rates are meant for
    /// batches of 128), for large batches on a GPU.
    pub lr_batch_scaling: bool,
    /// Number of epochs.
    pub epochs: usize,
    /// Linear learning-rate warm-up, in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Learning rate at the end of the cosine decay, as a fraction of the base rate.
    pub final_lr_fraction: f64,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Device: `auto`, `cpu`, `cuda`, `cuda:N`.
    #[serde(with = "as_str")]
    pub device: DeviceChoice,
    /// Channel width multiplier of the MobileNets.
    pub width: f64,
    /// Vision transformer: patch side in pixels.
    pub patch: usize,
    /// Vision transformer: embedding width.
    pub embed_dim: usize,
    /// Vision transformer: blocks.
    pub depth: usize,
    /// Vision transformer: attention heads.
    pub heads: usize,
    /// Vision transformer: MLP width over the embedding width.
    pub mlp_ratio: usize,
    /// Vision transformer: 4-bit log2 attention probabilities (Log-Int-Softmax) when quantized; linear
    /// codes of the activation bit-width otherwise.
    pub log2_softmax: bool,
    /// Where checkpoints, metrics and plots go; `None` for [`TrainConfig::run_dir`]'s default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// A trained teacher checkpoint directory to use instead of training one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// A trained full-precision run directory to use instead of training the full-precision stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp_run: Option<PathBuf>,
    /// The run directory the quantized student starts from instead of the full-precision model: a
    /// `qfd-host quantize` result, whose quantizers it keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Block-wise replacement (bwrf, bwrf-qfd): `single` (one quantized block among full-precision ones)
    /// or `prefix` (the first quantized blocks, then full precision). See [`bwrf`](super::bwrf).
    pub bwrf_mode: BwrfMode,
    /// Block-wise replacement: each path's loss, `ce` or `ce+kd`.
    pub bwrf_path_loss: PathLoss,
    /// Block-wise replacement: `all` paths each step, or this many drawn each step.
    pub bwrf_paths: PathCount,
    /// Block-wise replacement: weight of the mean path loss beside the network's own loss.
    pub bwrf_weight: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            arch: "resnet20".into(),
            dataset: DatasetKind::FashionMnist,
            data: None,
            subset: None,
            method: Method::Qfd,
            wbits: 4,
            abits: 4,
            fp_first_last: false,
            teacher_feature_bits: 4,
            lambda: 0.5,
            temperature: 4.0,
            ewgs: false,
            ewgs_delta: 0.2,
            optimizer: OptimizerKind::Sgd,
            lr: None,
            fp_lr: None,
            fp_epochs: None,
            quant_lr: None,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            batch_size: 128,
            lr_batch_scaling: false,
            epochs: 10,
            warmup_epochs: 1.0,
            final_lr_fraction: 0.0,
            seed: 0,
            device: DeviceChoice::Auto,
            width: 1.0,
            patch: VitShape::default().patch,
            embed_dim: VitShape::default().dim,
            depth: VitShape::default().depth,
            heads: VitShape::default().heads,
            mlp_ratio: VitShape::default().mlp_ratio,
            log2_softmax: true,
            run_dir: None,
            teacher: None,
            fp_run: None,
            init: None,
            bwrf_mode: BwrfMode::Single,
            bwrf_path_loss: PathLoss::Ce,
            bwrf_paths: PathCount::All,
            bwrf_weight: 1.0,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; errors name the file, and the key and line that are wrong. Does not validate.
    pub fn from_toml_file(path: &Path) -> Result<TrainConfig, ConfigError> {
        let bytes = fsutil::read(path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Parse { path: path.into(), message: "not UTF-8 text".into() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// The config as TOML, every key written except unset optional ones.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a TrainConfig is always representable in TOML")
    }

    /// The base learning rate: the one given, or the optimiser's default.
    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.optimizer.default_lr())
    }

    /// The base learning rate of a stage that fine-tunes a trained model: the one given, or
    /// [`FINETUNE_LR_FACTOR`] times the optimiser's default.
    pub fn finetune_lr(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.optimizer.default_lr() * FINETUNE_LR_FACTOR)
    }

    /// The base learning rate of the quantizer parameters: the one given, or `lr()` (their gradients are
    /// already scaled down, see `quant::lsq_scale`).
    pub fn quant_lr(&self) -> f64 {
        self.quant_lr.unwrap_or_else(|| self.lr())
    }

    /// What every learning rate is multiplied by when it is used: `batch-size / 128` with
    /// `lr-batch-scaling` ([`BATCH_OF_THE_RATES`]), else 1.
    pub fn lr_factor(&self) -> f64 {
        if self.lr_batch_scaling {
            self.batch_size as f64 / BATCH_OF_THE_RATES as f64
        } else {
            1.0
        }
    }

    /// The config with `lr` and `quant-lr` filled in, e.g. to record in the run directory what was used.
    pub fn with_resolved_lrs(self) -> TrainConfig {
        TrainConfig { lr: Some(self.lr()), quant_lr: Some(self.quant_lr()), ..self }
    }

    /// The vision transformer's shape.
    pub fn vit_shape(&self) -> VitShape {
        VitShape {
            patch: self.patch,
            dim: self.embed_dim,
            depth: self.depth,
            heads: self.heads,
            mlp_ratio: self.mlp_ratio,
        }
    }

    /// The run directory: the one given, or `runs/<dataset>-<arch>[-x<width>]-<method>[-w<W>a<A>]`.
    pub fn run_dir(&self) -> PathBuf {
        if let Some(dir) = &self.run_dir {
            return dir.clone();
        }
        let mut name = format!("{}-{}", self.dataset, self.arch);
        if self.width != 1.0 {
            name += &format!("-x{}", self.width);
        }
        name += &format!("-{}", self.method);
        if self.method.quantized() {
            name += &format!("-w{}a{}", self.wbits, self.abits);
        }
        Path::new("runs").join(name)
    }

    /// The block-wise replacement options.
    pub fn bwrf(&self) -> BwrfOptions {
        BwrfOptions {
            mode: self.bwrf_mode,
            path_loss: self.bwrf_path_loss,
            paths: self.bwrf_paths,
            temperature: self.temperature,
        }
    }

    /// The learning-rate schedule of this run (multiply [`LrSchedule::factor_at`] by [`Self::quant_lr`] for
    /// the quantizer parameters).
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            base_lr: self.lr(),
            warmup_epochs: self.warmup_epochs,
            total_epochs: self.epochs,
            final_lr_fraction: self.final_lr_fraction,
        }
    }

    /// Checks every value; the error names the first option out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        let pos = |x: f64| x.is_finite() && x > 0.0;
        let non_neg = |x: f64| x.is_finite() && x >= 0.0;
        if self.arch.trim().is_empty() {
            return bad("arch", "must name an architecture".into());
        }
        for (field, bits) in [("wbits", self.wbits), ("abits", self.abits)] {
            if !(1..=8).contains(&bits) {
                return bad(field, format!("{bits} bits: must be 1 to 8"));
            }
        }
        if ![1, 4, 8].contains(&self.teacher_feature_bits) {
            return bad("teacher-feature-bits", format!("{}: must be 1, 4 or 8", self.teacher_feature_bits));
        }
        let fp_lr = self.fp_lr.unwrap_or(1.0);
        let checks: [(&'static str, f64, bool, &str); 11] = [
            ("ewgs-delta", self.ewgs_delta, non_neg(self.ewgs_delta), "must be >= 0"),
            ("bwrf-weight", self.bwrf_weight, non_neg(self.bwrf_weight), "must be >= 0"),
            ("lambda", self.lambda, non_neg(self.lambda), "must be >= 0"),
            ("fp-lr", fp_lr, pos(fp_lr), "must be > 0"),
            ("temperature", self.temperature, pos(self.temperature), "must be > 0"),
            ("lr", self.lr(), pos(self.lr()), "must be > 0"),
            ("quant-lr", self.quant_lr(), non_neg(self.quant_lr()), "must be >= 0"),
            ("momentum", self.momentum, (0.0..1.0).contains(&self.momentum), "must be in [0, 1)"),
            ("weight-decay", self.weight_decay, non_neg(self.weight_decay), "must be >= 0"),
            ("width", self.width, pos(self.width), "must be > 0"),
            (
                "final-lr-fraction",
                self.final_lr_fraction,
                (0.0..=1.0).contains(&self.final_lr_fraction),
                "must be in [0, 1]",
            ),
        ];
        if let Some((field, value, _, rule)) = checks.into_iter().find(|c| !c.2) {
            return bad(field, format!("{value}: {rule}"));
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.fp_epochs == Some(0) {
            return bad("fp-epochs", "must be at least 1".into());
        }
        if self.subset == Some(0) {
            return bad("subset", "must be at least 1 image".into());
        }
        if !(non_neg(self.warmup_epochs) && self.warmup_epochs <= self.epochs as f64) {
            return bad(
                "warmup-epochs",
                format!("{}: must be in [0, epochs = {}]", self.warmup_epochs, self.epochs),
            );
        }
        if self.teacher.is_some() && !self.method.needs_teacher() {
            return bad("teacher", format!("method {} uses no teacher", self.method));
        }
        if self.method == Method::Ptq {
            return bad("method", "ptq models are made by `qfd-host quantize RUN_DIR`, not trained".into());
        }
        if self.arch == "vit" && self.method.needs_partner() {
            return bad(
                "method",
                format!(
                    "{} swaps CNN blocks; a vit trains with fp, qat, logit-kd, feature-kd or qfd",
                    self.method
                ),
            );
        }
        Ok(())
    }
}

/// Serde through `Display` and `FromStr`, for the enums written as words.
mod as_str {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
