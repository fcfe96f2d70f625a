//! The builder's transformer ops: LayerNorm, the per-channel add, the attention products, the softmax and
//! the table lookup. Deeper checks (accumulator bounds, softmax constants) are the runtime's, at encoding.

use qfd_runtime::format::{
    AttentionScoresDesc, AttentionValuesDesc, ChannelAddDesc, Clamp, ElemType, LayerNormDesc, LookupDesc,
    OpDesc, SoftmaxDesc,
};
use qfd_runtime::kernels::{ExpParams, ProbCodes};
use qfd_runtime::requant::{ChannelRequant, RequantParams};
use qfd_runtime::weights::max_code;

use super::{check_clamp, dim, invalid, records, Graph, GraphError, ValueId, ValueInfo};

/// A LayerNorm to add.
#[derive(Debug, Clone)]
pub struct LayerNormSpec {
    /// The input's zero point.
    pub zero: u8,
    /// The input's power-of-two factor per channel.
    pub shifts: Vec<u8>,
    /// One entry per channel: `gamma / (s_out * 2^16)` and `beta / s_out + zero_out`.
    pub requant: Vec<RequantParams>,
    /// Output code range.
    pub clamp: Clamp,
    /// Output bit-width.
    pub out_bits: u8,
}

/// The requantized output of an attention product.
#[derive(Debug, Clone, Copy)]
pub struct AttentionSpec {
    /// Number of heads (divides the channels).
    pub heads: usize,
    /// Requantization of the products.
    pub requant: RequantParams,
    /// Output code range.
    pub clamp: Clamp,
    /// Output bit-width.
    pub out_bits: u8,
}

impl Graph {
    /// Tokens and channels of a token tensor split into `heads` heads.
    fn heads_of(&self, name: &str, x: ValueId, heads: usize) -> Result<([usize; 3], usize), GraphError> {
        let (shape, _) = self.codes_input(name, x)?;
        if heads == 0 || !shape[2].is_multiple_of(heads) {
            return Err(invalid(name, format!("{heads} heads do not divide {} channels", shape[2])));
        }
        Ok((shape, shape[0] * shape[1]))
    }

    /// Adds a LayerNorm over each token's channels; returns its output.
    pub fn layer_norm(
        &mut self,
        name: &str,
        input: ValueId,
        spec: LayerNormSpec,
    ) -> Result<ValueId, GraphError> {
        let (shape, _) = self.codes_input(name, input)?;
        if spec.shifts.len() != shape[2] {
            return Err(invalid(name, format!("{} shifts given, {} channels", spec.shifts.len(), shape[2])));
        }
        let requant = records(name, &spec.requant, shape[2])?;
        check_clamp(name, spec.clamp, spec.out_bits)?;
        let op = OpDesc::LayerNorm(LayerNormDesc {
            input: dim(name, input.0)?,
            zero: spec.zero,
            shifts: &[],
            requant: ChannelRequant { records: &[] },
            clamp: spec.clamp,
        });
        let out = ValueInfo { shape, elem: ElemType::Codes { bits: spec.out_bits } };
        Ok(self.push(name, op, vec![spec.shifts, requant], out))
    }

    /// Adds `clamp(requant_c((a << shifts[0][c]) * w[0] + (b << shifts[1][c]) * w[1]))`; an empty shift
    /// table means no shifts. Returns its output.
    pub fn channel_add(
        &mut self,
        name: &str,
        inputs: [ValueId; 2],
        input_weights: [i32; 2],
        shifts: [Vec<u8>; 2],
        requant: &[RequantParams],
        clamp_bits: (Clamp, u8),
    ) -> Result<ValueId, GraphError> {
        let (a, _) = self.codes_input(name, inputs[0])?;
        let (b, _) = self.codes_input(name, inputs[1])?;
        if a != b {
            return Err(invalid(name, format!("shapes {a:?} and {b:?} differ")));
        }
        if shifts.iter().any(|s| !s.is_empty() && s.len() != a[2]) {
            return Err(invalid(name, format!("a shift table must be empty or have {} entries", a[2])));
        }
        let requant = records(name, requant, a[2])?;
        let (clamp, out_bits) = clamp_bits;
        check_clamp(name, clamp, out_bits)?;
        let op = OpDesc::ChannelAdd(ChannelAddDesc {
            inputs: [dim(name, inputs[0].0)?, dim(name, inputs[1].0)?],
            input_weights,
            shifts_a: &[],
            shifts_b: &[],
            requant: ChannelRequant { records: &[] },
            clamp,
        });
        let [sa, sb] = shifts;
        let out = ValueInfo { shape: a, elem: ElemType::Codes { bits: out_bits } };
        Ok(self.push(name, op, vec![sa, sb, requant], out))
    }

    /// Adds the attention logits of `Q` and `K` (`heads x T x T`); returns them.
    pub fn attention_scores(
        &mut self,
        name: &str,
        qk: [ValueId; 2],
        zeros: [u8; 2],
        spec: AttentionSpec,
    ) -> Result<ValueId, GraphError> {
        let (shape, tokens) = self.heads_of(name, qk[0], spec.heads)?;
        if self.codes_input(name, qk[1])?.0 != shape {
            return Err(invalid(name, "Q and K differ in shape"));
        }
        check_clamp(name, spec.clamp, spec.out_bits)?;
        let op = OpDesc::AttentionScores(AttentionScoresDesc {
            inputs: [dim(name, qk[0].0)?, dim(name, qk[1].0)?],
            heads: dim(name, spec.heads)?,
            zeros,
            requant: spec.requant,
            clamp: spec.clamp,
        });
        let out =
            ValueInfo { shape: [spec.heads, tokens, tokens], elem: ElemType::Codes { bits: spec.out_bits } };
        Ok(self.push(name, op, Vec::new(), out))
    }

    /// Adds the softmax of each row of logit codes; returns the probability codes.
    pub fn softmax(
        &mut self,
        name: &str,
        input: ValueId,
        exp: ExpParams,
        probs: ProbCodes,
    ) -> Result<ValueId, GraphError> {
        let (shape, _) = self.codes_input(name, input)?;
        let op = OpDesc::Softmax(SoftmaxDesc { input: dim(name, input.0)?, exp, probs });
        Ok(self.push(name, op, Vec::new(), ValueInfo { shape, elem: ElemType::Codes { bits: probs.bits() } }))
    }

    /// Adds probabilities times `V` (`[probabilities, V]`); returns the output, `V`'s shape.
    pub fn attention_values(
        &mut self,
        name: &str,
        pv: [ValueId; 2],
        probs: ProbCodes,
        zero: u8,
        spec: AttentionSpec,
    ) -> Result<ValueId, GraphError> {
        let (shape, tokens) = self.heads_of(name, pv[1], spec.heads)?;
        let (p, p_bits) = self.codes_input(name, pv[0])?;
        if p != [spec.heads, tokens, tokens] || p_bits != probs.bits() {
            return Err(invalid(name, format!("probabilities {p:?} of {p_bits} bits do not fit {shape:?}")));
        }
        check_clamp(name, spec.clamp, spec.out_bits)?;
        let op = OpDesc::AttentionValues(AttentionValuesDesc {
            inputs: [dim(name, pv[0].0)?, dim(name, pv[1].0)?],
            heads: dim(name, spec.heads)?,
            probs,
            zero,
            requant: spec.requant,
            clamp: spec.clamp,
        });
        Ok(self.push(
            name,
            op,
            Vec::new(),
            ValueInfo { shape, elem: ElemType::Codes { bits: spec.out_bits } },
        ))
    }

    /// Adds a table lookup (`out = table[x]`); returns its output.
    pub fn lookup(
        &mut self,
        name: &str,
        input: ValueId,
        table: Vec<u8>,
        out_bits: u8,
    ) -> Result<ValueId, GraphError> {
        let (shape, bits) = self.codes_input(name, input)?;
        if table.len() != max_code(bits) as usize + 1 {
            return Err(invalid(name, format!("{} table entries for {bits}-bit codes", table.len())));
        }
        if table.iter().any(|&k| k as i32 > max_code(out_bits)) {
            return Err(invalid(name, format!("a table entry exceeds {out_bits} bits")));
        }
        let op = OpDesc::Lookup(LookupDesc { input: dim(name, input.0)?, table: &[] });
        Ok(self.push(name, op, vec![table], ValueInfo { shape, elem: ElemType::Codes { bits: out_bits } }))
    }
}
