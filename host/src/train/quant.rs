//! Quantized layers of the training graph: the quantizer of EWGS, which the QFD paper uses, arranged so
//! that the fake-quantized forward pass computes what the integer runtime computes (`docs/arithmetic.md`).
//!
//! With `L = 2^bits`:
//! - weights: `k = round(clamp((w - lW) / (uW - lW), 0, 1) * (L - 1))`, value `(2k - (L - 1)) / (L - 1)`, the odd
//!   zero-free grid whose integer form `2k - (L - 1)` the runtime uses;
//! - activations: `c = round(clamp((x - lA) / (uA - lA), 0, 1) * (L - 1))`; a convolution reads the normalised
//!   code `c / (L - 1)` (the runtime reads `c`), and an identity shortcut or a pool reads the reconstructed
//!   value `lA + (uA - lA) c / (L - 1)`;
//! - a quantized convolution computes `|alpha| * conv(c / (L - 1), w_q)`.
//!
//! Rounding has a straight-through gradient; the bounds and `alpha` are learned. A quantizer belongs to a
//! stored tensor, not to the layer reading it: every reader of one tensor sees the same codes, as on the
//! device (the residual shortcut reads the block input's codes).

use std::cell::RefCell;

use tch::{nn, Kind, Tensor};

pub use super::ewgs::round_ste;

/// Optimizer parameter group of the quantizer parameters (bounds and `alpha`), which train with their own,
/// smaller learning rate; weights and BatchNorm are group 0.
pub const QUANT_GROUP: usize = 1;

/// LSQ's gradient scaling (Esser et al., "Learned Step Size Quantization", 2020): forward `x`, backward the
/// gradient times `scale`.
fn grad_scaled(x: &Tensor, scale: f64) -> Tensor {
    let y = x * scale;
    (x - &y).detach() + y
}

/// The gradient scale of a quantizer parameter shared by `elements` values of `bits` bits:
/// `1 / sqrt(elements * (2^bits - 1))`. A bound's gradient sums over every element it quantizes; unscaled,
/// bounds of large tensors and low bit-widths take steps big enough to leave the data (seen: 2-bit weight
/// bounds both below zero, a whole layer on one code).
fn lsq_scale(elements: i64, bits: u8) -> f64 {
    1.0 / (elements.max(1) as f64 * levels(bits)).sqrt()
}

/// `2^bits - 1` as a float.
fn levels(bits: u8) -> f64 {
    ((1u32 << bits) - 1) as f64
}

/// What the layers of a model do with their quantizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMode {
    /// Full precision: quantizers pass values through.
    Float,
    /// Fake quantization with the current parameters.
    Quantize,
    /// Fake quantization after setting each quantizer's parameters from the batch it sees (EWGS init).
    Calibrate,
    /// Full precision, with every activation quantizer recording what it sees (post-training
    /// quantization's calibration, see [`Observer`]).
    Observe,
}

impl QuantMode {
    /// Whether values pass through the quantizers unchanged (`Float` and `Observe`).
    pub fn is_float(self) -> bool {
        matches!(self, QuantMode::Float | QuantMode::Observe)
    }
}

/// What an activation quantizer saw in [`QuantMode::Observe`] passes: the running minimum and maximum of
/// each channel (dimension 1) and the last batch, which OMSE and PTF measure their errors on.
#[derive(Debug, Default)]
pub struct Observer {
    /// Per-channel minimum so far.
    pub min: Option<Tensor>,
    /// Per-channel maximum so far.
    pub max: Option<Tensor>,
    /// The last batch seen.
    pub last: Option<Tensor>,
}

impl Observer {
    /// Records one batch.
    pub fn observe(&mut self, x: &Tensor) {
        let x = x.detach();
        let channels = x.size().get(1).copied().unwrap_or(1);
        let flat = x.transpose(0, 1).reshape([channels, -1]);
        let (min, max) = (flat.amin(&[1i64][..], false), flat.amax(&[1i64][..], false));
        self.min = Some(match self.min.take() {
            Some(m) => m.minimum(&min),
            None => min,
        });
        self.max = Some(match self.max.take() {
            Some(m) => m.maximum(&max),
            None => max,
        });
        self.last = Some(x);
    }

    /// The range seen over all channels, widened to hold 0; `None` before the first batch.
    pub fn range(&self) -> Option<(f64, f64)> {
        let (min, max) = (self.min.as_ref()?, self.max.as_ref()?);
        Some((min.min().double_value(&[]).min(0.0), max.max().double_value(&[]).max(0.0)))
    }
}

/// The grid of `levels` steps over `[lo, hi]` (`lo <= 0 <= hi`) with a whole zero point: its step and the
/// code of 0. The quantizers that post-training quantization sets use it; the attention products need
/// whole zero points.
pub fn whole_zero_grid(lo: f64, hi: f64, levels: f64) -> (f64, f64) {
    let step = ((hi - lo) / levels).max(1e-8);
    (step, (-lo / step).round().clamp(0.0, levels))
}

/// A tensor as stored between layers, in the three forms its readers need.
#[derive(Debug)]
pub struct QTensor {
    /// The value before quantization (used by calibration).
    pub float: Tensor,
    /// `c / (L - 1)` in `[0, 1]`: what a convolution reads.
    pub norm: Tensor,
    /// `lA + (uA - lA) c / (L - 1)`: the reconstructed value, for shortcuts and pools.
    pub value: Tensor,
}

impl QTensor {
    /// A tensor that is not quantized (full precision, or the raw input before its fixed quantizer).
    pub fn float(x: Tensor) -> Self {
        QTensor { norm: x.shallow_clone(), value: x.shallow_clone(), float: x }
    }

    /// The same tensors, shared (as [`Tensor::shallow_clone`]).
    pub fn shallow(&self) -> Self {
        QTensor {
            float: self.float.shallow_clone(),
            norm: self.norm.shallow_clone(),
            value: self.value.shallow_clone(),
        }
    }
}

/// Learned lower and upper bound of a quantizer.
#[derive(Debug)]
pub struct Bounds {
    /// `l`.
    pub lower: Tensor,
    /// `u`.
    pub upper: Tensor,
}

impl Bounds {
    fn new(path: &nn::Path, lower: f64, upper: f64) -> Self {
        Self::with_shape(path, &[1], lower, upper)
    }

    /// Bounds of shape `dims`, broadcast against the quantized tensor (one pair per channel).
    fn with_shape(path: &nn::Path, dims: &[i64], lower: f64, upper: f64) -> Self {
        let path = path.set_group(QUANT_GROUP);
        Bounds {
            lower: path.var("lower", dims, nn::Init::Const(lower)),
            upper: path.var("upper", dims, nn::Init::Const(upper)),
        }
    }

    /// The rounded codes `c` of `x` (straight-through gradient) and the bounds used, with gradients to the
    /// bounds scaled by `grad_scale`. See [`fake_quant_codes`].
    fn codes_ste(&self, x: &Tensor, bits: u8, grad_scale: f64) -> (Tensor, Tensor, Tensor) {
        let (l, u) = (grad_scaled(&self.lower, grad_scale), grad_scaled(&self.upper, grad_scale));
        (fake_quant_codes(x, &l, &u, bits), l, u)
    }

    /// Integer codes `c` of `x` (no gradient), as the runtime and the model file see them.
    fn codes(&self, x: &Tensor, bits: u8) -> Tensor {
        tch::no_grad(|| self.codes_ste(x, bits, 1.0).0)
    }

    /// Sets both bounds without recording gradients.
    fn set(&self, lower: &Tensor, upper: &Tensor) {
        tch::no_grad(|| {
            self.lower.shallow_clone().copy_(&lower.reshape(self.lower.size()));
            self.upper.shallow_clone().copy_(&upper.reshape(self.upper.size()));
        });
    }
}

/// `c = round(clamp((x - l) / (u - l) * L, 0, L))` with a straight-through gradient through the rounding,
/// `L = 2^bits - 1`. Written as `clamp(x * k - l * k, 0, L)` with the scalar `k = L / (u - l)`, the tensor
/// sees one fused multiply-add and a clamp before the rounding instead of four ops: the same function and
/// gradients in fewer, larger operations (`tests/train_quant.rs` compares it with the four-op form).
pub fn fake_quant_codes(x: &Tensor, lower: &Tensor, upper: &Tensor, bits: u8) -> Tensor {
    let l = levels(bits);
    let k = (upper - lower).reciprocal() * l;
    let scaled = (-(lower * &k)).addcmul(x, &k).clamp(0.0, l);
    round_ste(&scaled)
}

/// Activation quantizer of one stored tensor.
#[derive(Debug)]
pub struct ActQuant {
    /// `lA`, `uA`.
    pub bounds: Bounds,
    /// Bit-width.
    pub bits: u8,
    /// What [`QuantMode::Observe`] passes saw.
    pub observer: RefCell<Observer>,
}

impl ActQuant {
    /// A quantizer of `bits` bits with bounds `[0, 1]` until calibrated.
    pub fn new(path: &nn::Path, bits: u8) -> Self {
        ActQuant { bounds: Bounds::new(path, 0.0, 1.0), bits, observer: RefCell::default() }
    }

    /// Sets the bounds to the grid of step `step` on which `zero` (an integer code) stands for the real 0.
    pub fn set_grid(&self, step: f64, zero: f64) {
        let l = levels(self.bits);
        let t = |v: f64| Tensor::from_slice(&[v as f32]).to_device(self.bounds.lower.device());
        self.bounds.set(&t(-zero * step), &t((l - zero) * step));
    }

    /// EWGS initialisation: `uA = 3 std(x) / sqrt(1 - 2/pi)`, `lA = min(x)`.
    pub fn calibrate(&self, x: &Tensor) {
        let x = x.detach();
        let upper = x.std(true) * (3.0 / (1.0 - 2.0 / std::f64::consts::PI).sqrt());
        let lower = x.min();
        // A tensor that is constant (or nearly) would give an empty range.
        let upper = upper.maximum(&(&lower + 1e-3));
        self.bounds.set(&lower, &upper);
    }

    /// Quantizes `x` (see the module docs); in [`QuantMode::Float`] passes it through.
    pub fn forward(&self, x: Tensor, mode: QuantMode) -> QTensor {
        if mode == QuantMode::Observe {
            self.observer.borrow_mut().observe(&x);
        }
        if mode.is_float() {
            return QTensor::float(x);
        }
        if mode == QuantMode::Calibrate {
            self.calibrate(&x);
        }
        let l = levels(self.bits);
        // Per sample: the batch size must not change how fast the bounds learn.
        let per_sample = x.numel() as i64 / x.size().first().copied().unwrap_or(1).max(1);
        let (codes, lower, upper) = self.bounds.codes_ste(&x, self.bits, lsq_scale(per_sample, self.bits));
        let norm = &codes * (1.0 / l);
        // `lA + (uA - lA) c / L`, one fused multiply-add over the tensor.
        let value = lower.addcmul(&codes, &((upper - &lower) * (1.0 / l)));
        QTensor { float: x, norm, value }
    }

    /// Integer codes `c` of `x` (no gradient), for tests and export.
    pub fn codes(&self, x: &Tensor) -> Tensor {
        self.bounds.codes(x, self.bits)
    }
}

/// Weight quantizer of one layer: learned bounds and output scale `alpha`.
#[derive(Debug)]
pub struct WeightQuant {
    /// `lW`, `uW`.
    pub bounds: Bounds,
    /// Output scale; the layer multiplies by `|alpha|`.
    pub alpha: Tensor,
    /// Bit-width.
    pub bits: u8,
}

impl WeightQuant {
    /// A quantizer of `bits` bits, uncalibrated.
    pub fn new(path: &nn::Path, bits: u8) -> Self {
        WeightQuant {
            bounds: Bounds::new(path, -1.0, 1.0),
            alpha: path.set_group(QUANT_GROUP).var("alpha", &[1], nn::Init::Const(1.0)),
            bits,
        }
    }

    /// A quantizer with its own bounds and `alpha` for each of a convolution's `channels` output channels.
    pub fn per_channel(path: &nn::Path, bits: u8, channels: i64) -> Self {
        WeightQuant {
            bounds: Bounds::with_shape(path, &[channels, 1, 1, 1], -1.0, 1.0),
            alpha: path.set_group(QUANT_GROUP).var("alpha", &[channels], nn::Init::Const(1.0)),
            bits,
        }
    }

    /// Whether each output channel has its own bounds and `alpha`.
    pub fn is_per_channel(&self) -> bool {
        self.alpha.numel() > 1
    }

    /// Post-training (MinMax) setting of a per-channel or per-tensor quantizer: bounds `+-max|w|` and
    /// `alpha = max|w|`, so the grid's extreme levels are the extreme weights.
    pub fn set_min_max(&self, w: &Tensor) {
        let w = w.detach();
        let u = if self.is_per_channel() {
            w.abs().reshape([w.size()[0], -1]).amax(&[1i64][..], false)
        } else {
            w.abs().max()
        }
        .clamp_min(1e-8);
        self.bounds.set(&(-&u), &u);
        tch::no_grad(|| {
            self.alpha.shallow_clone().copy_(&u.reshape(self.alpha.size()));
        });
    }

    /// The quantized weights `(2k - (L - 1)) / (L - 1)` of `w`.
    pub fn quantize(&self, w: &Tensor) -> Tensor {
        let l = levels(self.bits);
        let k = self.bounds.codes_ste(w, self.bits, self.grad_scale(w)).0;
        k * (2.0 / l) - 1.0
    }

    /// Integer codes `k` of `w` (no gradient), as the model file stores them.
    pub fn codes(&self, w: &Tensor) -> Tensor {
        self.bounds.codes(w, self.bits)
    }

    /// Gradient scale of the bounds and `alpha` of a layer whose weights are `w`.
    fn grad_scale(&self, w: &Tensor) -> f64 {
        lsq_scale(w.numel() as i64, self.bits)
    }

    /// `|alpha|`, with its gradient scaled like the bounds', shaped to scale a convolution's output
    /// (`[1, C, 1, 1]`) when per channel.
    fn scale(&self, w: &Tensor) -> Tensor {
        let alpha = grad_scaled(&self.alpha, self.grad_scale(w)).abs();
        if self.is_per_channel() {
            alpha.reshape([1, -1, 1, 1])
        } else {
            alpha
        }
    }

    /// EWGS initialisation of the bounds: `uW = 3 std(W)`, `lW = -uW` (per channel when per channel).
    fn calibrate_bounds(&self, w: &Tensor) {
        let w = w.detach();
        let u = if self.is_per_channel() {
            w.reshape([w.size()[0], -1]).std_dim(&[1i64][..], true, false) * 3.0
        } else {
            w.std(true) * 3.0
        };
        self.bounds.set(&(-&u), &u);
    }

    /// EWGS initialisation of `alpha = mean|float output| / mean|quantized output|` (over each output
    /// channel, dimension 1, when per channel).
    fn calibrate_alpha(&self, float_out: &Tensor, quant_out: &Tensor) {
        let mean_abs = |t: &Tensor| {
            let t = t.detach().abs();
            if self.is_per_channel() {
                t.transpose(0, 1).reshape([self.alpha.numel() as i64, -1]).mean_dim(
                    &[1i64][..],
                    false,
                    Kind::Float,
                )
            } else {
                t.mean(Kind::Float)
            }
        };
        let ratio = mean_abs(float_out) / mean_abs(quant_out).clamp_min(1e-12);
        tch::no_grad(|| {
            self.alpha.shallow_clone().copy_(&ratio.reshape(self.alpha.size()));
        });
    }
}

/// Convolution geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Square kernel size.
    pub kernel: i64,
    /// Stride.
    pub stride: i64,
    /// Zero padding on every side.
    pub padding: i64,
    /// Groups (`cin` for depthwise).
    pub groups: i64,
}

/// What a quantized convolution multiplies its weights with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvReads {
    /// The normalised codes `c / (L - 1)` (the CNNs: the BatchNorm after the convolution absorbs the
    /// input's grid, and quantization-aware training adapts it).
    Codes,
    /// The reconstructed values (the vision transformer: the float model's own arithmetic, so that
    /// post-training quantization needs no retraining). Zero padding is code 0 on the device, so the
    /// input's grid must put code 0 at the real 0 wherever the convolution pads.
    Values,
}

/// A convolution with quantized weights, or a float one when `quant` is `None`. No bias: a BatchNorm
/// or a bias follows every convolution.
#[derive(Debug)]
pub struct QConv2d {
    /// `[cout, cin / groups, k, k]`.
    pub weight: Tensor,
    /// Weight quantizer, `None` for a float layer.
    pub quant: Option<WeightQuant>,
    /// Geometry.
    pub shape: ConvShape,
    /// What the quantized layer reads.
    pub reads: ConvReads,
}

impl QConv2d {
    /// A convolution under `path` with Kaiming-initialised weights; `weight_bits` `None` keeps it float.
    pub fn new(path: &nn::Path, shape: ConvShape, weight_bits: Option<u8>) -> Self {
        let fan_in = shape.cin / shape.groups * shape.kernel * shape.kernel;
        let dims = [shape.cout, shape.cin / shape.groups, shape.kernel, shape.kernel];
        let weight =
            path.var("weight", &dims, nn::Init::Randn { mean: 0.0, stdev: (2.0 / fan_in as f64).sqrt() });
        let quant = weight_bits.map(|bits| WeightQuant::new(&(path / "wq"), bits));
        QConv2d { weight, quant, shape, reads: ConvReads::Codes }
    }

    /// [`QConv2d::new`] with `bits`-bit weights quantized per output channel, reading values.
    pub fn per_channel(path: &nn::Path, shape: ConvShape, bits: u8) -> Self {
        let float = Self::new(path, shape, None);
        let quant = Some(WeightQuant::per_channel(&(path / "wq"), bits, shape.cout));
        QConv2d { quant, reads: ConvReads::Values, ..float }
    }

    fn conv(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let s = self.shape;
        x.conv2d(w, None::<Tensor>, [s.stride], [s.padding], [1], s.groups)
    }

    /// Applies the layer to a stored tensor: the float value in float mode, the normalised codes otherwise.
    pub fn forward(&self, x: &QTensor, mode: QuantMode) -> Tensor {
        match (&self.quant, mode) {
            (None, _) => self.conv(&x.value, &self.weight),
            (_, m) if m.is_float() => self.conv(&x.value, &self.weight),
            (Some(q), _) => {
                if mode == QuantMode::Calibrate {
                    q.calibrate_bounds(&self.weight);
                }
                let input = match self.reads {
                    ConvReads::Codes => &x.norm,
                    ConvReads::Values => &x.value,
                };
                let out = self.conv(input, &q.quantize(&self.weight));
                if mode == QuantMode::Calibrate {
                    q.calibrate_alpha(&self.conv(&x.float, &self.weight), &out);
                }
                out * q.scale(&self.weight)
            }
        }
    }
}

/// A fully connected layer with quantized weights (or float), reading a float feature vector.
#[derive(Debug)]
pub struct QLinear {
    /// `[outputs, inputs]`.
    pub weight: Tensor,
    /// `[outputs]`.
    pub bias: Tensor,
    /// Weight quantizer, `None` for a float layer.
    pub quant: Option<WeightQuant>,
}

impl QLinear {
    /// A layer under `path`; `weight_bits` `None` keeps it float.
    pub fn new(path: &nn::Path, inputs: i64, outputs: i64, weight_bits: Option<u8>) -> Self {
        let bound = 1.0 / (inputs as f64).sqrt();
        QLinear {
            weight: path.var("weight", &[outputs, inputs], nn::Init::Uniform { lo: -bound, up: bound }),
            bias: path.var("bias", &[outputs], nn::Init::Const(0.0)),
            quant: weight_bits.map(|bits| WeightQuant::new(&(path / "wq"), bits)),
        }
    }

    /// `x W^T + b`, with `W` quantized and scaled by `|alpha|` unless float.
    pub fn forward(&self, x: &Tensor, mode: QuantMode) -> Tensor {
        match (&self.quant, mode) {
            (None, _) => x.linear(&self.weight, Some(&self.bias)),
            (_, m) if m.is_float() => x.linear(&self.weight, Some(&self.bias)),
            (Some(q), _) => {
                if mode == QuantMode::Calibrate {
                    q.calibrate_bounds(&self.weight);
                }
                let out = x.linear(&q.quantize(&self.weight), None::<Tensor>);
                if mode == QuantMode::Calibrate {
                    q.calibrate_alpha(&x.linear(&self.weight, None::<Tensor>), &out);
                }
                out * q.scale(&self.weight) + &self.bias
            }
        }
    }
}
