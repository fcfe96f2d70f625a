//! The attention softmax as the integer runtime computes it (`docs/arithmetic.md`, "Softmax"), in 64-bit
//! integer tensors: the exponential on a grid `2^P` finer than the logits, then log2 codes (Log-Int-Softmax)
//! or linear codes. The fake-quantized network uses it in the forward pass, so its probability codes are
//! the device's, bit for bit; the gradient is the float softmax's (straight-through).

use qfd_codegen::fixed_point::exp_params_for;
use qfd_runtime::kernels::{ExpParams, ProbCodes};
use tch::{Kind, Tensor};

/// The largest log2 code, which stands for probability 0.
const LOG2_ZERO: i64 = 15;

/// Why the softmax of a logit grid cannot be computed in integers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("attention logits with step {step:e} over {tokens} tokens have no integer exponential")]
pub struct SoftmaxError {
    /// The logits' step.
    pub step: f64,
    /// Tokens per row.
    pub tokens: usize,
}

/// The exponential's constants for logits of step `step` in rows of `tokens`.
pub fn exp_params(step: f64, tokens: usize) -> Result<ExpParams, SoftmaxError> {
    exp_params_for(step, tokens).ok_or(SoftmaxError { step, tokens })
}

/// The exponential terms `e_j` of each row (last dimension) of logit codes `codes` (`Int64`).
fn terms(codes: &Tensor, exp: ExpParams) -> Tensor {
    let n = exp.shift as i64;
    let x0 = exp.x0 as i64;
    let d = (codes - codes.amax(&[-1i64][..], true)) * (1i64 << exp.fraction);
    let d = d.clamp_min(n * x0);
    let q = d.divide_scalar_mode(x0, "trunc");
    let r = &d - &q * x0;
    let z = (&r * (&r + exp.b) + exp.c).clamp_min(0);
    z.bitwise_left_shift(&(-q + n))
}

/// Probability codes of each row of logit codes `codes` (whole numbers in any float or integer kind), as
/// the runtime's softmax writes them; returned as `Int64`.
pub fn prob_codes(codes: &Tensor, exp: ExpParams, probs: ProbCodes) -> Tensor {
    let e = terms(&codes.to_kind(Kind::Int64), exp);
    let sum = e.sum_dim_intlist(&[-1i64][..], true, Kind::Int64);
    match probs {
        ProbCodes::Log2 => {
            // `k` = the number of `i >= 0` with `3 e 2^i <= 2 S`, i.e. with `3 e <= floor(2 S / 2^i)`.
            let (three_e, two_sum) = (&e * 3, &sum * 2);
            let mut k = e.zeros_like();
            for i in 0..LOG2_ZERO {
                k += three_e.le_tensor(&two_sum.bitwise_right_shift_tensor_scalar(i)).to_kind(Kind::Int64);
            }
            k.masked_fill(&e.eq(0), LOG2_ZERO)
        }
        ProbCodes::Linear { bits } => {
            let levels = (1i64 << bits) - 1;
            // `drop = max(bit_length(S) - 31, 0)`: the number of `j` in `31..=62` with `S >= 2^j`.
            let mut drop = sum.zeros_like();
            for j in 31..63 {
                drop += sum.ge(1i64 << j).to_kind(Kind::Int64);
            }
            let (e, sum) = (e.bitwise_right_shift(&drop), sum.bitwise_right_shift(&drop));
            (e * (2 * levels) + &sum).floor_divide(&(sum * 2))
        }
    }
}

/// The probabilities that codes stand for: `2^-k` (0 for code 15), or `code / (2^bits - 1)`.
pub fn prob_values(codes: &Tensor, probs: ProbCodes) -> Tensor {
    let codes = codes.to_kind(Kind::Float);
    match probs {
        ProbCodes::Log2 => (-&codes).exp2().masked_fill(&codes.eq(LOG2_ZERO), 0.0),
        ProbCodes::Linear { bits } => codes / ((1u32 << bits) - 1) as f64,
    }
}
