//! Self-attention's activation-by-activation products: the logits `Q K^T` of each head, and the
//! probabilities times `V`.

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{code_bits, room, store, Inputs, Op, OpInputs, OpValues};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::{Clamp, ValueDesc};
use crate::kernels;
use crate::kernels::reference::{AttentionShape, ProbCodes, LOG2_WEIGHT_SHIFT};
use crate::requant::RequantParams;
use crate::weights::max_code;

/// The logits of every head: `clamp(requant(sum_c (q - zq)(k - zk)))` over the head's channels, for
/// each query and key token; the output is `heads x T x T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionScoresDesc {
    /// `Q` and `K` (codes of one shape, `H x W x heads * d`).
    pub inputs: [u16; 2],
    /// Number of heads.
    pub heads: u16,
    /// Zero points of `Q` and `K`.
    pub zeros: [u8; 2],
    /// Requantization of the logits (one for the tensor).
    pub requant: RequantParams,
    /// Output code range.
    pub clamp: Clamp,
}

/// Probabilities times `V`: `clamp(requant(sum_j w(p_ij) (v_j - zv)))` for each token and channel, with
/// `w` the integer weight of a probability code; the output has `V`'s shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionValuesDesc {
    /// The probabilities (`heads x T x T`) and `V` (`H x W x heads * d`).
    pub inputs: [u16; 2],
    /// Number of heads.
    pub heads: u16,
    /// How the probabilities are coded.
    pub probs: ProbCodes,
    /// Zero point of `V`.
    pub zero: u8,
    /// Requantization of the output (one for the tensor).
    pub requant: RequantParams,
    /// Output code range.
    pub clamp: Clamp,
}

/// The attention layout of a token tensor split into `heads` heads, if it splits.
fn shape_of(tokens: &ValueDesc, heads: u16) -> Option<AttentionShape> {
    let [h, w, c] = tokens.shape.map(|d| d as usize);
    let heads = heads as usize;
    (heads > 0 && c.is_multiple_of(heads)).then_some(AttentionShape {
        tokens: h * w,
        heads,
        head_dim: c / heads,
    })
}

/// The largest `|x - zero|` of codes up to `max`; `BadParams` if the zero point is not a code.
fn centred_max(at: u16, zero: u8, max: u64) -> Result<u64, LoadError> {
    if zero as u64 > max {
        return Err(LoadError::BadParams { op: at });
    }
    Ok((zero as u64).max(max - zero as u64))
}

/// [`shape_of`] for an op that validation accepted (an empty layout otherwise, which no kernel reads).
fn checked_shape(tokens: &ValueDesc, heads: u16) -> AttentionShape {
    shape_of(tokens, heads).unwrap_or(AttentionShape { tokens: 0, heads: 0, head_dim: 0 })
}

/// The `heads x T x T` shape of logits or probabilities.
fn scores_shape(shape: AttentionShape) -> [usize; 3] {
    [shape.heads, shape.tokens, shape.tokens]
}

impl AttentionScoresDesc {
    fn shape(&self, values: OpValues<'_>) -> AttentionShape {
        checked_shape(values.get(self.inputs[0]), self.heads)
    }
}

impl Op<'_> for AttentionScoresDesc {
    const KIND: &'static str = "attention_scores";

    fn inputs(&self) -> Inputs {
        Inputs::from_slice(&self.inputs).unwrap_or_default()
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (q, q_max) = checks::codes_in(at, &values, self.inputs[0])?;
        let (k, k_max) = checks::codes_in(at, &values, self.inputs[1])?;
        let shape = shape_of(q, self.heads).ok_or(LoadError::BadGeometry { op: at })?;
        if q.shape != k.shape || values.out().shape.map(|d| d as usize) != scores_shape(shape) {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        checks::params(at, &self.requant)?;
        let (q_dev, k_dev) = (centred_max(at, self.zeros[0], q_max)?, centred_max(at, self.zeros[1], k_max)?);
        if shape.head_dim as u64 * q_dev * k_dev > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        self.macs(values)
    }

    fn macs(&self, values: OpValues<'_>) -> u64 {
        self.shape(values).products() as u64
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let (q, k) = (inputs.codes(self.inputs[0]), inputs.codes(self.inputs[1]));
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        let shape = self.shape(inputs.values);
        kernels::attention_scores(q, k, shape, self.zeros, self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let shape = self.shape(values);
        room(out, shape.scores())?;
        let (q, k) = (read(self.inputs[0])?, read(self.inputs[1])?);
        kernels::attention_scores_accumulate(q, k, shape, self.zeros, store(out));
        Ok(shape.scores())
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        let shape = checked_shape(cx.value(self.inputs[0]), self.heads);
        emit::call(
            "qfd_runtime::kernels::attention_scores",
            &[
                cx.input(self.inputs[0]),
                cx.input(self.inputs[1]),
                emit::attention_shape(shape),
                format!("{:?}", self.zeros),
                emit::requant(self.requant),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}

impl AttentionValuesDesc {
    fn shape(&self, values: OpValues<'_>) -> AttentionShape {
        checked_shape(values.get(self.inputs[1]), self.heads)
    }
}

impl Op<'_> for AttentionValuesDesc {
    const KIND: &'static str = "attention_values";

    fn inputs(&self) -> Inputs {
        Inputs::from_slice(&self.inputs).unwrap_or_default()
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (p, p_max) = checks::codes_in(at, &values, self.inputs[0])?;
        let (v, v_max) = checks::codes_in(at, &values, self.inputs[1])?;
        let shape = shape_of(v, self.heads).ok_or(LoadError::BadGeometry { op: at })?;
        if p.shape.map(|d| d as usize) != scores_shape(shape) || v.shape != values.out().shape {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let weight_max = match self.probs {
            ProbCodes::Log2 => 1u64 << LOG2_WEIGHT_SHIFT,
            ProbCodes::Linear { bits } => max_code(bits) as u64,
        };
        if !(1..=8).contains(&self.probs.bits()) || p_max != max_code(self.probs.bits()) as u64 {
            return Err(LoadError::BadParams { op: at });
        }
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        checks::params(at, &self.requant)?;
        let v_dev = centred_max(at, self.zero, v_max)?;
        if shape.tokens as u64 * weight_max * v_dev > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        self.macs(values)
    }

    fn macs(&self, values: OpValues<'_>) -> u64 {
        self.shape(values).products() as u64
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let (p, v) = (inputs.codes(self.inputs[0]), inputs.codes(self.inputs[1]));
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        let shape = self.shape(inputs.values);
        kernels::attention_values(p, v, shape, self.probs, self.zero, self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let shape = self.shape(values);
        let count = shape.tokens * shape.channels();
        room(out, count)?;
        let (p, v) = (read(self.inputs[0])?, read(self.inputs[1])?);
        kernels::attention_values_accumulate(p, v, shape, self.probs, self.zero, store(out));
        Ok(count)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::string::ToString;
        let shape = checked_shape(cx.value(self.inputs[1]), self.heads);
        emit::call(
            "qfd_runtime::kernels::attention_values",
            &[
                cx.input(self.inputs[0]),
                cx.input(self.inputs[1]),
                emit::attention_shape(shape),
                emit::prob_codes(self.probs),
                self.zero.to_string(),
                emit::requant(self.requant),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}
