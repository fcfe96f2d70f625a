//! The folds of `docs/arithmetic.md`: a trained layer (convolution, BatchNorm, `|alpha|`, ReLU, the next
//! quantizer; a residual add; the classifier) becomes the integer op that computes the same codes, up to the
//! rounding of the fixed-point constants and exact ties.
//!
//! All arithmetic here is in `f64` on values read from the checkpoint.

use qfd_codegen::fixed_point::requant_for;
use qfd_codegen::graph::{ConvSpec, FcSpec};
use qfd_runtime::format::{Clamp, FcOutput, Padding, Window};
use qfd_runtime::requant::RequantParams;
use tch::{Device, Kind, Tensor};

use super::ExportError;
use crate::train::models::{ConvAffine, ConvBnQ, BN_EPS};
use crate::train::quant::{ActQuant, ConvReads, QLinear, WeightQuant};

/// Fractional bits of the residual add's common step: each branch's step is written as an integer multiple
/// of `max(step_a, step_b) / 2^ADD_FRACTION_BITS` (relative error below `2^-15`).
pub(super) const ADD_FRACTION_BITS: i32 = 14;

/// The grid of a stored tensor: `value = lower + step * code`, codes `0..=levels`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// `lA`.
    pub lower: f64,
    /// `uA`.
    pub upper: f64,
    /// Bit-width.
    pub bits: u8,
}

impl Grid {
    /// The grid of a trained activation quantizer; refused when its bounds are not finite and increasing.
    pub fn of(layer: &str, q: &ActQuant) -> Result<Grid, ExportError> {
        let (lower, upper) = (scalar(&q.bounds.lower), scalar(&q.bounds.upper));
        if !(lower.is_finite() && upper.is_finite() && upper > lower) {
            return Err(ExportError::Unsupported {
                layer: layer.into(),
                reason: format!("its quantizer bounds [{lower}, {upper}] are not an increasing range"),
            });
        }
        Ok(Grid { lower, upper, bits: q.bits })
    }

    /// `2^bits - 1`, the largest code.
    pub fn levels(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }

    /// Real value between two codes.
    pub fn step(&self) -> f64 {
        (self.upper - self.lower) / self.levels()
    }

    /// The code the training quantizer gives `z` (`torch.round`: ties to even).
    pub fn code_of(&self, z: f64) -> u8 {
        (((z - self.lower) / (self.upper - self.lower)).clamp(0.0, 1.0) * self.levels()).round_ties_even()
            as u8
    }

    /// The requantization and clamp that map an accumulator `acc` whose real value is `scale * acc + offset`
    /// onto this grid, after a ReLU when `relu`.
    pub(super) fn requant(&self, layer: &str, scale: f64, offset: f64) -> Result<RequantParams, ExportError> {
        let per_unit = self.levels() / (self.upper - self.lower);
        requant_for(scale * per_unit, (offset - self.lower) * per_unit).ok_or_else(|| ExportError::Overflow {
            layer: layer.into(),
            reason: format!(
                "the requantization (scale {:e}, offset {:e}) does not fit the fixed-point format: a \
                     BatchNorm scale or quantizer range near zero",
                scale * per_unit,
                offset
            ),
        })
    }

    /// Output clamp: `[f(0), levels]` after a ReLU (the quantizer is monotone, so `f(max(z, 0)) =
    /// max(f(z), f(0))`), else the whole range.
    pub(super) fn clamp(&self, relu: bool) -> Clamp {
        Clamp { min: if relu { self.code_of(0.0) } else { 0 }, max: self.levels() as u8 }
    }
}

/// What a convolution reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ConvInput {
    /// Raw `u8` pixels; training normalised `p / 255` with these per-channel means and one std.
    Pixels {
        /// Per-channel mean of `p / 255`.
        mean: Vec<f64>,
        /// Shared std of `p / 255`.
        std: f64,
        /// Zero padding of the pixels (the stem's).
        padding: u8,
    },
    /// Codes of a stored tensor; a convolution reads `code / levels`.
    Codes(Grid),
}

/// One scalar tensor as `f64`.
pub(super) fn scalar(t: &Tensor) -> f64 {
    t.to_device(Device::Cpu).to_kind(Kind::Double).reshape([-1]).double_value(&[0])
}

/// Every element of `t`, as `f64`, in row-major order.
pub(super) fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double).reshape([-1]))
        .expect("a double tensor converts to Vec<f64>")
}

/// Weight codes of `weight` in row-major order of `weight.permute(order)`, and `2^bits - 1`.
fn weight_codes(q: &WeightQuant, weight: &Tensor, order: &[i64]) -> (Vec<u8>, f64) {
    let codes = q.codes(weight).permute(order);
    let codes = values(&codes).into_iter().map(|k| k as u8).collect();
    (codes, ((1u32 << q.bits) - 1) as f64)
}

fn quantizer<'a>(layer: &str, q: Option<&'a WeightQuant>) -> Result<&'a WeightQuant, ExportError> {
    q.ok_or_else(|| ExportError::FloatLayer { layer: layer.into() })
}

/// A convolution, its BatchNorm, `|alpha|`, optional ReLU and output quantizer as one integer convolution.
///
/// With integer weights `w = 2k - Lw` and input codes `c` (`Lw`, `La` the largest codes), the conv computes
/// `y = |alpha| * acc / (La * Lw)` for `acc = sum(c * w)`; reading pixels it is `|alpha| * sum(w * (p / 255 -
/// mean) / std) / Lw`, the mean part a per-channel constant (padding is pixel 0 in training too). BatchNorm
/// in inference form makes it `S * acc + T` per channel, and the output quantizer a requantization.
pub fn fold_conv(name: &str, layer: &ConvBnQ, input: &ConvInput) -> Result<(ConvSpec, Grid), ExportError> {
    let conv = &layer.conv;
    let q = quantizer(name, conv.quant.as_ref())?;
    let shape = conv.shape;
    let (codes, lw) = weight_codes(q, &conv.weight, &[0, 2, 3, 1]);
    // `|alpha|` for the tensor, or per output channel.
    let alpha: Vec<f64> = values(&q.alpha).into_iter().map(f64::abs).collect();
    let cout = shape.cout as usize;
    let fan_in = codes.len() / cout;

    let (acc_scale, constant): (f64, Vec<f64>) = match input {
        ConvInput::Codes(g) => match conv.reads {
            ConvReads::Codes => (1.0 / (g.levels() * lw), vec![0.0; cout]),
            // `sum(w * (lower + step * c)) / Lw`: the lower bound times each channel's weight sum.
            ConvReads::Values => {
                if shape.padding > 0 && g.code_of(0.0) != 0 {
                    return Err(ExportError::Unsupported {
                        layer: name.into(),
                        reason: format!(
                            "it pads its input with code 0, which stands for {:e}, not 0 (the float model's padding)",
                            g.lower
                        ),
                    });
                }
                let constant = codes
                    .chunks(fan_in)
                    .map(|w| g.lower / lw * w.iter().map(|&k| 2.0 * k as f64 - lw).sum::<f64>())
                    .collect();
                (g.step() / lw, constant)
            }
        },
        ConvInput::Pixels { mean, std, .. } => {
            let channels = mean.len();
            let constant = codes
                .chunks(fan_in)
                .map(|w| {
                    let sum: f64 =
                        w.iter().enumerate().map(|(i, &k)| (2.0 * k as f64 - lw) * mean[i % channels]).sum();
                    -1.0 / (lw * std) * sum
                })
                .collect();
            (1.0 / (255.0 * lw * std), constant)
        }
    };
    let (scale, shift) = affine_of(layer, cout);
    let out = Grid::of(name, &layer.q)?;
    let requant = (0..cout)
        .map(|o| {
            let (s_bn, t_bn) = (scale[o] * alpha[o % alpha.len()], shift[o]);
            if s_bn == 0.0 {
                return Err(ExportError::Unsupported {
                    layer: name.into(),
                    reason: format!("channel {o} has BatchNorm scale 0 (a constant output)"),
                });
            }
            out.requant(name, s_bn * acc_scale, s_bn * constant[o] + t_bn)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pad = match input {
        ConvInput::Pixels { padding, .. } => *padding,
        ConvInput::Codes(_) => shape.padding as u8,
    };
    let (k, s) = (shape.kernel as u8, shape.stride as u8);
    let spec = ConvSpec {
        out_channels: cout,
        window: Window {
            kernel: [k, k],
            stride: [s, s],
            padding: Padding { top: pad, left: pad, bottom: pad, right: pad },
        },
        groups: shape.groups as usize,
        weight_bits: q.bits,
        weight_codes: codes,
        requant,
        clamp: out.clamp(layer.relu),
        out_bits: out.bits,
    };
    Ok((spec, out))
}

/// The per-channel affine map after a layer's convolution, in inference form: `(scale, shift)` per
/// channel (a BatchNorm with its running statistics, or `(1, bias)`).
fn affine_of(layer: &ConvBnQ, channels: usize) -> (Vec<f64>, Vec<f64>) {
    match &layer.affine {
        ConvAffine::BatchNorm(bn) => {
            let gamma = bn.ws.as_ref().map(values).unwrap_or_else(|| vec![1.0; channels]);
            let beta = bn.bs.as_ref().map(values).unwrap_or_else(|| vec![0.0; channels]);
            let (mean, var) = (values(&bn.running_mean), values(&bn.running_var));
            let scale: Vec<f64> = (0..channels).map(|o| gamma[o] / (var[o] + BN_EPS).sqrt()).collect();
            let shift = (0..channels).map(|o| beta[o] - scale[o] * mean[o]).collect();
            (scale, shift)
        }
        ConvAffine::Bias(b) => (vec![1.0; channels], values(b)),
    }
}

/// The residual add `quant(relu?(value_a + value_b))` with `value = lower + step * code` for both inputs:
/// both steps become integer weights on a common step `u`, the lower bounds go into the offset.
pub struct FoldedAdd {
    /// `[wa, wb]`.
    pub input_weights: [i32; 2],
    /// Requantization of `wa * ca + wb * cb`.
    pub requant: RequantParams,
    /// Output clamp.
    pub clamp: Clamp,
    /// The output grid.
    pub out: Grid,
}

/// Folds a residual add of tensors on grids `a` and `b` into the quantizer `q`.
pub fn fold_add(name: &str, [a, b]: [Grid; 2], q: &ActQuant, relu: bool) -> Result<FoldedAdd, ExportError> {
    let out = Grid::of(name, q)?;
    let u = a.step().max(b.step()) / 2f64.powi(ADD_FRACTION_BITS);
    let input_weights = [(a.step() / u).round() as i32, (b.step() / u).round() as i32];
    let requant = out.requant(name, u, a.lower + b.lower)?;
    Ok(FoldedAdd { input_weights, requant, clamp: out.clamp(relu), out })
}

/// The classifier reading a global sum pool of `pixels` positions of a tensor on `grid`: the pooled feature
/// is `lower + step * sum / pixels`, so the logits are `logit_scale * (acc + offset)` with
/// `acc = sum(w * sum)`.
/// Returns the layer and `logit_scale`.
pub fn fold_classifier(fc: &QLinear, grid: Grid, pixels: usize) -> Result<(FcSpec, f64), ExportError> {
    let q = quantizer("fc", fc.quant.as_ref())?;
    let (codes, lw) = weight_codes(q, &fc.weight, &[0, 1]);
    let alpha = scalar(&q.alpha).abs();
    let bias = values(&fc.bias);
    let classes = bias.len();
    let inputs = codes.len() / classes;
    let logit_scale = alpha * grid.step() / (lw * pixels as f64);
    if !(logit_scale.is_finite() && logit_scale > 0.0) {
        return Err(ExportError::Unsupported {
            layer: "fc".into(),
            reason: format!("logit scale {logit_scale}"),
        });
    }
    let requant = codes
        .chunks(inputs)
        .zip(&bias)
        .map(|(w, &b)| {
            let w_sum: f64 = w.iter().map(|&k| 2.0 * k as f64 - lw).sum();
            let constant = (alpha * grid.lower / lw * w_sum + b) / logit_scale;
            if constant.abs() > i32::MAX as f64 / 2.0 {
                return Err(ExportError::Overflow {
                    layer: "fc".into(),
                    reason: format!("offset {constant:e} in logit units does not fit i32"),
                });
            }
            // Logits add the offset to the accumulator: it stays in accumulator (logit) units.
            Ok(RequantParams { offset: constant.round() as i64, multiplier: 0, shift: 0 })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = FcSpec {
        outputs: classes,
        weight_bits: q.bits,
        weight_codes: codes,
        requant,
        output: FcOutput::Logits,
        out_bits: 8,
    };
    Ok((spec, logit_scale))
}
