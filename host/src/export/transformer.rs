//! The folds of a vision transformer's ops (`docs/arithmetic.md`, "Transformer ops"): the residual adds
//! onto the stream with power-of-two factors, LayerNorm, the attention products and softmax, and the GELU
//! table. Each computes what the fake-quantized network computes, up to the rounding of fixed-point
//! constants and exact ties (the softmax is the same integer arithmetic on both sides).

use qfd_codegen::graph::{AttentionSpec, LayerNormSpec};
use qfd_runtime::format::Clamp;
use qfd_runtime::kernels::{ExpParams, ProbCodes};
use qfd_runtime::requant::RequantParams;

use super::fold::{values, Grid, ADD_FRACTION_BITS};
use super::ExportError;
use crate::train::models::vit::ptf::PtfQuant;
use crate::train::models::vit::{softmax, LayerNormQ};
use crate::train::quant::ActQuant;

/// Fraction bits of LayerNorm's normalized values (`docs/arithmetic.md`).
const LAYER_NORM_FRACTION: i32 = 16;

/// The grid of the residual stream: `value = step * 2^shift[c] * (code - zero)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamGrid {
    /// The base step `s`.
    pub step: f64,
    /// The zero point (a whole code).
    pub zero: u8,
    /// Each channel's power-of-two factor.
    pub shifts: Vec<u8>,
    /// Bit-width.
    pub bits: u8,
}

impl StreamGrid {
    /// The grid of a calibrated stream quantizer; refused when its step is not positive or its zero point
    /// is not a code.
    pub fn of(layer: &str, q: &PtfQuant) -> Result<StreamGrid, ExportError> {
        let (step, zero, shifts) = q.grid();
        let levels = ((1u32 << q.bits) - 1) as f64;
        if !(step.is_finite() && step > 0.0 && (0.0..=levels).contains(&zero)) || zero.fract() != 0.0 {
            return Err(unsupported(
                layer,
                format!("its stream grid (step {step}, zero point {zero}) is not calibrated"),
            ));
        }
        Ok(StreamGrid { step, zero: zero as u8, shifts, bits: q.bits })
    }

    fn levels(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }
}

fn unsupported(layer: &str, reason: String) -> ExportError {
    ExportError::Unsupported { layer: layer.into(), reason }
}

/// What the first input of a residual add onto the stream is.
#[derive(Debug, Clone)]
pub enum StreamInput {
    /// The patch embedding, on an ordinary grid.
    Grid(Grid),
    /// The stream itself.
    Stream(StreamGrid),
}

/// A residual add onto the stream, folded: `requant_c((a << shift_a[c]) * wa + b * wb)`.
#[derive(Debug)]
pub struct FoldedStreamAdd {
    /// `[wa, wb]`.
    pub input_weights: [i32; 2],
    /// `[shift_a, shift_b]` (empty: no shifts).
    pub shifts: [Vec<u8>; 2],
    /// One record per channel.
    pub requant: Vec<RequantParams>,
    /// Output clamp.
    pub clamp: Clamp,
    /// The output stream.
    pub out: StreamGrid,
}

/// Folds `quant(a + b)`: both inputs' steps become integer weights on a common unit `u` (the stream's
/// per-channel factors are the shifts), the zero points and lower bounds go into each channel's offset.
pub fn fold_stream_add(
    name: &str,
    a: &StreamInput,
    b: Grid,
    quant: &PtfQuant,
) -> Result<FoldedStreamAdd, ExportError> {
    let out = StreamGrid::of(name, quant)?;
    let channels = out.shifts.len();
    let (a_step, a_shifts, a_offset): (f64, Vec<u8>, Vec<f64>) = match a {
        StreamInput::Grid(g) => (g.step(), Vec::new(), vec![g.lower; channels]),
        StreamInput::Stream(s) => (
            s.step,
            s.shifts.clone(),
            s.shifts.iter().map(|&k| -s.step * 2f64.powi(k as i32) * s.zero as f64).collect(),
        ),
    };
    // As many fraction bits as keep the accumulator within 2^30: the stream's codes are shifted up to
    // `2^max_shift`, so the weights' precision sets how often a code moves against the float sum.
    let largest_a = ((1u64 << out.bits) - 1) << a_shifts.iter().copied().max().unwrap_or(0);
    let headroom = (1u64 << 30) as f64 / (largest_a + (1u64 << out.bits)) as f64;
    let fraction_bits = headroom.log2().floor().max(ADD_FRACTION_BITS as f64) as i32;
    let u = a_step.max(b.step()) / 2f64.powi(fraction_bits);
    let input_weights = [(a_step / u).round() as i32, (b.step() / u).round() as i32];
    let requant = (0..channels)
        .map(|c| {
            let step = out.step * 2f64.powi(out.shifts[c] as i32);
            let offset = (a_offset[c] + b.lower) / step + out.zero as f64;
            qfd_codegen::fixed_point::requant_for(u / step, offset).ok_or_else(|| ExportError::Overflow {
                layer: name.into(),
                reason: format!(
                    "channel {c}'s requantization (scale {:e}) does not fit the fixed-point format",
                    u / step
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let clamp = Clamp { min: 0, max: out.levels() as u8 };
    Ok(FoldedStreamAdd { input_weights, shifts: [a_shifts, Vec::new()], requant, clamp, out })
}

/// A LayerNorm of the stream: the kernel normalizes with 16 fraction bits, each channel's record applies
/// `gamma` and `beta` and the output quantizer.
pub fn fold_layer_norm(
    name: &str,
    input: &StreamGrid,
    norm: &LayerNormQ,
) -> Result<(LayerNormSpec, Grid), ExportError> {
    let out = Grid::of(name, &norm.q)?;
    let (gamma, beta) = (values(&norm.gamma), values(&norm.beta));
    let requant = gamma
        .iter()
        .zip(&beta)
        .map(|(&g, &b)| out.requant(name, g / 2f64.powi(LAYER_NORM_FRACTION), b))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = LayerNormSpec {
        zero: input.zero,
        shifts: input.shifts.clone(),
        requant,
        clamp: out.clamp(false),
        out_bits: out.bits,
    };
    Ok((spec, out))
}

/// The whole zero point of a grid that attention multiplies (`-lower / step`), or why there is none.
pub fn whole_zero(name: &str, g: Grid) -> Result<u8, ExportError> {
    let zero = -g.lower / g.step();
    let rounded = zero.round();
    if (zero - rounded).abs() > 1e-3 || !(0.0..=g.levels()).contains(&rounded) {
        return Err(unsupported(
            name,
            format!("an input of the attention product has zero point {zero:.4}, not a whole code; quantize the model with `qfd-host quantize`"),
        ));
    }
    Ok(rounded as u8)
}

/// The attention logits `Q K^T / sqrt(d)` of `heads` heads onto `quant`'s grid.
pub fn fold_attention_scores(
    name: &str,
    [q, k]: [Grid; 2],
    heads: usize,
    channels: usize,
    quant: &ActQuant,
) -> Result<([u8; 2], AttentionSpec, Grid), ExportError> {
    let zeros = [whole_zero(name, q)?, whole_zero(name, k)?];
    let out = Grid::of(name, quant)?;
    let d = (channels / heads.max(1)) as f64;
    let requant = out.requant(name, q.step() * k.step() / d.sqrt(), 0.0)?;
    Ok((zeros, AttentionSpec { heads, requant, clamp: out.clamp(false), out_bits: out.bits }, out))
}

/// The softmax's exponential constants for logits on `logits` over rows of `tokens`.
pub fn fold_softmax(name: &str, logits: Grid, tokens: usize) -> Result<ExpParams, ExportError> {
    softmax::exp_params(logits.step(), tokens).map_err(|e| unsupported(name, e.to_string()))
}

/// Probabilities times `V` onto `quant`'s grid: the products are on the scale `s_v 2^-14` (log2 codes)
/// or `s_v / (2^b - 1)` (linear codes).
pub fn fold_attention_values(
    name: &str,
    v: Grid,
    heads: usize,
    probs: ProbCodes,
    quant: &ActQuant,
) -> Result<(u8, AttentionSpec, Grid), ExportError> {
    let zero = whole_zero(name, v)?;
    let out = Grid::of(name, quant)?;
    let unit = match probs {
        ProbCodes::Log2 => 2f64.powi(-14),
        ProbCodes::Linear { bits } => 1.0 / ((1u32 << bits) - 1) as f64,
    };
    let requant = out.requant(name, v.step() * unit, 0.0)?;
    Ok((zero, AttentionSpec { heads, requant, clamp: out.clamp(false), out_bits: out.bits }, out))
}

/// The table of `quant(function(value))` over every code of `input`.
pub fn fold_lookup(
    name: &str,
    input: Grid,
    function: fn(f64) -> f64,
    quant: &ActQuant,
) -> Result<(Vec<u8>, Grid), ExportError> {
    let out = Grid::of(name, quant)?;
    let table = (0..=input.levels() as u32)
        .map(|k| out.code_of(function(input.lower + input.step() * k as f64)))
        .collect();
    Ok((table, out))
}
