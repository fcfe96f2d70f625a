//! Post-training quantization of a full-precision vision transformer (FQ-ViT, Lin et al. 2022): 8-bit
//! weights per output channel (MinMax), 8-bit activations per tensor with whole zero points, calibrated on
//! the first training images with the MinMax or OMSE observer; the residual stream that feeds each
//! LayerNorm with power-of-two factors per channel (PTF), and 4-bit log2 attention probabilities
//! (Log-Int-Softmax, LIS). [`PtqMethod::MinMax`] is the baseline without either.
//!
//! The result is a run directory like a trained one (method `ptq`): `qfd-host export` turns it into an
//! integer model, and quantization-aware fine-tuning can start from it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::checkpoint::{load_matching_weights, Checkpoint, CheckpointError, TrainState};
use super::config::TrainConfig;
use super::method::Method;
use super::metrics::Evaluation;
use super::models::vit::ptf::PTF_MAX_SHIFT;
use super::models::Net;
use super::quant::{fake_quant_codes, whole_zero_grid, ActQuant, QuantMode};
use super::run::{evaluate, net_spec, Data, TrainError};
use qfd_codegen::synth::Arch;

/// What post-training quantization applies beyond per-tensor MinMax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtqMethod {
    /// Per-tensor activations everywhere, 8-bit linear attention probabilities: the baseline.
    MinMax,
    /// Power-of-two factors on the LayerNorm inputs; linear probabilities.
    Ptf,
    /// PTF and 4-bit log2 probabilities (FQ-ViT's 8/8/4).
    FqVit,
}

impl PtqMethod {
    /// Every method, baseline first.
    pub const ALL: [PtqMethod; 3] = [PtqMethod::MinMax, PtqMethod::Ptf, PtqMethod::FqVit];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PtqMethod::MinMax => "minmax",
            PtqMethod::Ptf => "ptf",
            PtqMethod::FqVit => "fq-vit",
        }
    }

    /// `K`, the largest power-of-two factor of the stream (0: one step per tensor).
    fn max_shift(self) -> u8 {
        match self {
            PtqMethod::MinMax => 0,
            PtqMethod::Ptf | PtqMethod::FqVit => PTF_MAX_SHIFT,
        }
    }
}

/// How an activation's range is chosen from what calibration saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observer {
    /// The smallest and largest value (with 0 inside the range).
    MinMax,
    /// OMSE: the MinMax range shrunk by `1 - 0.01 i` (`i` in `0..90`), keeping the one with the least
    /// squared error on the last calibration batch.
    Omse,
}

impl Observer {
    /// Both observers.
    pub const ALL: [Observer; 2] = [Observer::MinMax, Observer::Omse];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Observer::MinMax => "minmax",
            Observer::Omse => "omse",
        }
    }
}

/// `Display` and `FromStr` by the command-line names of `$all`.
macro_rules! named_enum {
    ($t:ty, $all:expr) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let all = $all;
                all.into_iter().find(|m| m.name() == s).ok_or_else(|| {
                    let names: Vec<_> = all.iter().map(|m| m.name()).collect();
                    format!("unknown value '{s}' (expected one of: {})", names.join(", "))
                })
            }
        }
    };
}
named_enum!(PtqMethod, PtqMethod::ALL);
named_enum!(Observer, Observer::ALL);

/// Options of one post-training quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct PtqOptions {
    /// What is applied.
    pub method: PtqMethod,
    /// How activation ranges are chosen.
    pub observer: Observer,
    /// Calibration images (the first of the training split).
    pub images: usize,
    /// Activation bits (8 in FQ-ViT; fewer show what PTF and the observers are for). The attention logits
    /// stay 8-bit.
    pub act_bits: u8,
    /// Where the quantized model goes.
    pub out: PathBuf,
    /// Where the data set is, when not where training read it.
    pub data: Option<PathBuf>,
}

/// Why a model cannot be quantized.
#[derive(Debug, thiserror::Error)]
pub enum PtqError {
    /// Not a full-precision vision transformer.
    #[error("{} holds a {arch} trained with method {method}; post-training quantization takes a full-precision vit (`qfd-host train --arch vit --method fp`)", dir.display())]
    NotFullPrecisionVit {
        /// The run directory.
        dir: PathBuf,
        /// Its architecture.
        arch: String,
        /// Its method.
        method: String,
    },
    /// No calibration images.
    #[error("--calibration-images must be at least 1")]
    NoImages,
    /// Activation bits out of range.
    #[error("--abits {0}: must be 2 to 8")]
    ActBits(u8),
    /// The checkpoint or data cannot be read.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The checkpoint cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What [`quantize`] did.
#[derive(Debug)]
pub struct Quantized {
    /// The run directory written.
    pub dir: PathBuf,
    /// The full-precision model on the test split.
    pub float: Evaluation,
    /// The fake-quantized model on the test split.
    pub quantized: Evaluation,
}

/// Quantizes the full-precision vision transformer in `fp_dir` into `options.out`.
pub fn quantize(fp_dir: &Path, options: &PtqOptions) -> Result<Quantized, PtqError> {
    if options.images == 0 {
        return Err(PtqError::NoImages);
    }
    if !(2..=8).contains(&options.act_bits) {
        return Err(PtqError::ActBits(options.act_bits));
    }
    let fp = Checkpoint::peek(fp_dir)?.config;
    if fp.arch != Arch::Vit.to_string() || fp.method != Method::Fp {
        return Err(PtqError::NotFullPrecisionVit {
            dir: fp_dir.into(),
            arch: fp.arch,
            method: fp.method.to_string(),
        });
    }
    let config = TrainConfig {
        method: Method::Ptq,
        wbits: 8,
        abits: options.act_bits,
        log2_softmax: options.method == PtqMethod::FqVit,
        run_dir: Some(options.out.clone()),
        data: options.data.clone().or(fp.data.clone()),
        teacher: None,
        ..fp.clone()
    };
    let data = Data::load(&config, Device::Cpu)?;
    let mut vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &net_spec(&config, None, &data)?).map_err(TrainError::Build)?;
    load_matching_weights(fp_dir, &mut vs)?;
    let float = evaluate(&net, &data.test, QuantMode::Float, None, &config);

    calibrate(&net, &data, options);
    let quantized = evaluate(&net, &data.test, QuantMode::Quantize, None, &config);
    let state = TrainState {
        epochs_completed: 0,
        step: 0,
        best_test_acc: Some(quantized.acc),
        config,
        metrics: Vec::new(),
        start: Some(quantized),
    };
    Checkpoint::save(&options.out, &vs, &[], &state)?;
    Ok(Quantized { dir: options.out.clone(), float, quantized })
}

/// Sets every quantizer of `net` (built quantized, holding full-precision weights).
fn calibrate(net: &Net, data: &Data, options: &PtqOptions) {
    for layer in net.conv_layers() {
        if let Some(q) = &layer.conv.quant {
            q.set_min_max(&layer.conv.weight);
        }
    }
    if let Some(q) = &net.fc().quant {
        q.set_min_max(&net.fc().weight);
    }
    let batch = options.images.min(100);
    tch::no_grad(|| {
        let mut seen = 0;
        for b in data.train.test_batches(batch) {
            if seen >= options.images {
                break;
            }
            net.forward(&b.images, false, QuantMode::Observe);
            seen += b.labels.size()[0] as usize;
        }
    });
    for (_, q) in net.act_quantizers() {
        set_range(q, options.observer);
    }
    if let Some(vit) = net.vit() {
        for q in vit.stream_quantizers() {
            q.calibrate(options.method.max_shift());
        }
    }
}

/// Sets an observed activation quantizer's grid: a whole zero point, and the range the observer picks.
fn set_range(q: &ActQuant, observer: Observer) {
    let (step, zero) = {
        let obs = q.observer.borrow();
        let Some((lo, hi)) = obs.range() else { return };
        let levels = ((1u32 << q.bits) - 1) as f64;
        // The grid of the range shrunk by `shrink`.
        let grid = |shrink: f64| whole_zero_grid(lo * shrink, hi * shrink, levels);
        match (observer, &obs.last) {
            (Observer::Omse, Some(last)) => {
                let last = last.to_kind(Kind::Float);
                let error = |(step, zero): (f64, f64)| {
                    let bound = |v: f64| Tensor::from_slice(&[v as f32]);
                    let codes =
                        fake_quant_codes(&last, &bound(-zero * step), &bound((levels - zero) * step), q.bits);
                    ((codes - zero) * step - &last).square().mean(Kind::Float).double_value(&[])
                };
                let mut best = (f64::INFINITY, grid(1.0));
                for i in 0..90 {
                    let candidate = grid(1.0 - 0.01 * i as f64);
                    let e = error(candidate);
                    if e < best.0 {
                        best = (e, candidate);
                    }
                }
                best.1
            }
            _ => grid(1.0),
        }
    };
    q.set_grid(step, zero);
}
