//! Softmax over each row of attention logits, to log2 or linear probability codes.

use serde::{Deserialize, Serialize};

use super::checks;
use super::{code_bits, one_input, Inputs, Op, OpInputs, OpValues};
use crate::codes::CodesMut;
use crate::error::LoadError;
use crate::kernels;
use crate::kernels::reference::{ExpParams, ProbCodes};
use crate::weights::max_code;

/// Largest fraction bits of the exponential's grid (a logit difference of 255 codes, shifted, fits 24 bits).
pub const MAX_EXP_FRACTION: u8 = 16;

/// Softmax of each row (the last axis) of logit codes; the output has the input's shape, with probability
/// codes of [`ProbCodes::bits`] bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxDesc {
    /// Input value (logit codes of at most 8 bits).
    pub input: u16,
    /// The integer exponential's constants for the input's scale.
    pub exp: ExpParams,
    /// How the probabilities are coded.
    pub probs: ProbCodes,
}

/// Rows and row length of a value.
fn rows(values: OpValues<'_>) -> (usize, usize) {
    let [a, b, n] = values.out().shape.map(|d| d as usize);
    (a * b, n)
}

impl Op<'_> for SoftmaxDesc {
    const KIND: &'static str = "softmax";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, _) = checks::codes_in(at, &values, self.input)?;
        let bits = checks::out_codes(at, &values)?;
        if inp.shape != values.out().shape || bits != self.probs.bits() {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let e = self.exp;
        let n = inp.shape[2] as u128;
        if !(1..=8).contains(&bits)
            || e.x0 >= 0
            || e.b < 0
            || e.c < 1
            || e.fraction > MAX_EXP_FRACTION
            || e.shift > 62
            || n * e.term_bound() > 1 << 62
        {
            return Err(LoadError::BadParams { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        // Three passes over each row: the largest code, the sum, the codes.
        let (rows, n) = rows(values);
        (3 * rows * n) as u64
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let (rows, n) = rows(inputs.values);
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        kernels::softmax(inputs.codes(self.input), rows, n, self.exp, self.probs, out);
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        use std::string::ToString;
        let [a, b, n] = cx.out().shape;
        let e = self.exp;
        emit::call(
            "qfd_runtime::kernels::softmax",
            &[
                cx.input(self.input),
                (a as usize * b as usize).to_string(),
                n.to_string(),
                format!(
                    "qfd_runtime::kernels::ExpParams {{ fraction: {}, x0: {}, b: {}, c: {}, shift: {} }}",
                    e.fraction, e.x0, e.b, e.c, e.shift
                ),
                emit::prob_codes(self.probs),
                cx.out_codes(),
            ],
        )
    }
}
