use std::path::PathBuf;

use anyhow::Context;

use qfd_host::args::BitWidths;
use qfd_host::data::DatasetKind;
use qfd_host::train::bwrf::{BwrfMode, PathCount, PathLoss};
use qfd_host::train::config::{DeviceChoice, OptimizerKind, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::run::train;

/// Train a network with quantization-aware training and Quantized Feature Distillation.
///
/// Trains whatever the method needs and is missing: the full-precision model, the feature-quantized
/// teacher (qfd, bwrf-qfd), then the student (bwrf and bwrf-qfd train it beside the frozen
/// full-precision model, through mixed paths of their blocks); each is cached as a checkpoint in its run directory (under runs/) and
/// reused next time. Options come from --config FILE (TOML, keys named as the flags) and then the flags.
/// Each run directory holds metrics.jsonl, training.png and the checkpoint.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// TOML file with any of the options below (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Architecture: resnet8, resnet20, mobilenetv1, mobilenetv2 or vit [default: resnet20].
    #[arg(long)]
    arch: Option<String>,
    /// Channel width multiplier of the MobileNets [default: 1].
    #[arg(long)]
    width: Option<f64>,
    /// Vision transformer: patch side in pixels, dividing the input's height and width [default: 4].
    #[arg(long)]
    patch: Option<usize>,
    /// Vision transformer: embedding width, the channels of every token [default: 64].
    #[arg(long)]
    embed_dim: Option<usize>,
    /// Vision transformer: transformer blocks [default: 4].
    #[arg(long)]
    depth: Option<usize>,
    /// Vision transformer: attention heads, dividing the embedding width [default: 4].
    #[arg(long)]
    heads: Option<usize>,
    /// Vision transformer: MLP hidden width in multiples of the embedding width [default: 2].
    #[arg(long)]
    mlp_ratio: Option<usize>,
    /// fp, qat, logit-kd, feature-kd, qfd, bwrf (block-wise replacement) or bwrf-qfd (bwrf plus the QFD
    /// term) [default: qfd].
    #[arg(long)]
    method: Option<Method>,
    /// Bits of weights and activations of the inner layers: one number or W/A [default: 4/4].
    #[arg(long, value_name = "W/A")]
    bits: Option<BitWidths>,
    /// Weight bits of the inner layers (overrides --bits).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    wbits: Option<u8>,
    /// Activation bits of the inner layers (overrides --bits).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    abits: Option<u8>,
    /// fashion-mnist, cifar10 or cifar100 [default: fashion-mnist].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Directory of the data set files [default: where the Debian package puts Fashion-MNIST].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train on the first N training images (stratified) and as many test images, for quick runs.
    #[arg(long, value_name = "N")]
    subset: Option<usize>,
    /// Epochs of the final stage, and of the QFD teacher's fine-tuning [default: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// Epochs of the full-precision model that quantized methods start from [default: --epochs].
    #[arg(long)]
    fp_epochs: Option<usize>,
    /// Batch size [default: 128].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Scale every learning rate by batch-size / 128 (the rates are meant for batches of 128), for large
    /// batches on a GPU.
    #[arg(long)]
    lr_batch_scaling: bool,
    /// sgd, adam or adamw (decoupled weight decay, for the vit) [default: sgd].
    #[arg(long)]
    optimizer: Option<OptimizerKind>,
    /// Base learning rate [default: 0.05 for sgd, 0.001 for adam; a fifth of that when fine-tuning a
    /// trained model: the QFD teacher and quantized students].
    #[arg(long)]
    lr: Option<f64>,
    /// Base learning rate of the full-precision model that quantized methods start from [default: 0.05
    /// for sgd, 0.001 for adam].
    #[arg(long)]
    fp_lr: Option<f64>,
    /// Learning rate of the quantizer bounds and scales, whose gradients are scaled as in LSQ [default: lr].
    #[arg(long)]
    quant_lr: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    momentum: Option<f64>,
    /// L2 weight decay of the weights [default: 5e-4].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Linear learning-rate warm-up at the start of each stage, in epochs [default: 1].
    #[arg(long, value_name = "EPOCHS")]
    warmup_epochs: Option<f64>,
    /// Weight of the distillation term: loss = CE + lambda * distillation [default: 0.5].
    #[arg(long)]
    lambda: Option<f64>,
    /// Bits of the QFD teacher's quantized pooled feature: 1, 4 or 8 [default: 4].
    #[arg(long)]
    teacher_feature_bits: Option<u8>,
    /// Softmax temperature of logit-kd [default: 4].
    #[arg(long)]
    temperature: Option<f64>,
    /// Block-wise replacement paths: single (one quantized block inside the full-precision network) or
    /// prefix (the first quantized blocks, then full precision) [default: single].
    #[arg(long, value_name = "MODE")]
    bwrf_mode: Option<BwrfMode>,
    /// Loss of each block-wise replacement path: ce, or ce+kd (plus KL to the full-precision logits, at
    /// --temperature) [default: ce].
    #[arg(long, value_name = "LOSS")]
    bwrf_path_loss: Option<PathLoss>,
    /// Block-wise replacement paths per step: all, or a number drawn each step to bound the cost
    /// [default: all].
    #[arg(long, value_name = "all|K")]
    bwrf_paths: Option<PathCount>,
    /// Weight of the mean path loss: loss = network loss + weight * paths [default: 1].
    #[arg(long, value_name = "W")]
    bwrf_weight: Option<f64>,
    /// Keep the first conv and last FC in full precision (the paper's setting; export refuses it).
    #[arg(long)]
    fp_first_last: bool,
    /// Scale the straight-through gradient of each rounding element-wise, as EWGS does.
    #[arg(long)]
    ewgs: bool,
    /// EWGS's delta: gradient scale 1 + delta * sign(g) * (x - round(x)), in code units [default: 0.2].
    #[arg(long, requires = "ewgs")]
    ewgs_delta: Option<f64>,
    /// auto, cpu, cuda or cuda:N [default: auto, CUDA when available].
    #[arg(long)]
    device: Option<DeviceChoice>,
    /// Random seed [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory of the final stage [default: runs/<dataset>-<arch>-<method>-w<W>a<A>].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Distil from this teacher run directory instead of training one.
    #[arg(long, value_name = "DIR")]
    teacher: Option<PathBuf>,
    /// Use this trained full-precision run directory instead of training the full-precision stage.
    #[arg(long, value_name = "DIR")]
    fp_run: Option<PathBuf>,
    /// Start the quantized student from this run directory, keeping its quantizers: a `qfd-host quantize`
    /// result (how a vit's quantization-aware training starts) [default: the full-precision model].
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// Continue an interrupted stage from its last completed epoch.
    #[arg(long)]
    resume: bool,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let mut cfg = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { cfg.$field = v.into(); } )* };
        }
        set!(arch, method, dataset, epochs, batch_size, optimizer, lambda, teacher_feature_bits, temperature);
        set!(device, seed, width, momentum, weight_decay, warmup_epochs, ewgs_delta);
        set!(bwrf_mode, bwrf_path_loss, bwrf_paths, bwrf_weight);
        set!(patch, embed_dim, depth, heads, mlp_ratio);
        if let Some(b) = self.bits {
            (cfg.wbits, cfg.abits) = (b.weight, b.act);
        }
        set!(wbits, abits);
        cfg.data = self.data.or(cfg.data);
        cfg.subset = self.subset.or(cfg.subset);
        cfg.lr = self.lr.or(cfg.lr);
        cfg.fp_lr = self.fp_lr.or(cfg.fp_lr);
        cfg.fp_epochs = self.fp_epochs.or(cfg.fp_epochs);
        cfg.quant_lr = self.quant_lr.or(cfg.quant_lr);
        cfg.run_dir = self.run_dir.or(cfg.run_dir);
        cfg.teacher = self.teacher.or(cfg.teacher);
        cfg.fp_run = self.fp_run.or(cfg.fp_run);
        cfg.init = self.init.or(cfg.init);
        cfg.fp_first_last |= self.fp_first_last;
        cfg.ewgs |= self.ewgs;
        cfg.lr_batch_scaling |= self.lr_batch_scaling;
        let dir = train(&cfg, self.resume).context("training failed")?;
        super::print(&format!("trained: {}\n", dir.display()))
    }
}
