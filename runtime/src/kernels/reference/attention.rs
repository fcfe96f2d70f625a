//! Self-attention's two activation-by-activation products: the logits `Q K^T` of each head, and the
//! probabilities times `V`.
//!
//! Tokens are the pixels of an `H x W x C` value (`T = H * W` of them, channel fastest); head `h` owns
//! channels `h * d .. (h + 1) * d` of `Q`, `K` and `V`. Logits and probabilities are laid out
//! `heads x T x T` (a value of shape `[heads, T, T]`): each row of one query's logits is contiguous, for the
//! softmax. Both operands of a product are activation codes with an integer zero point, subtracted before
//! multiplying, so the accumulator is the exact product of the two real tensors on the product of scales.

use super::softmax::{ProbCodes, LOG2_ZERO_CODE};
use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, RequantParams};

/// The layout of one attention: tokens, heads and channels per head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Tokens `T`.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Channels per head `d` (`heads * d` channels in all).
    pub head_dim: usize,
}

impl AttentionShape {
    /// Channels of `Q`, `K`, `V` and the output: `heads * d`.
    pub const fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Logits or probabilities: `heads * T * T`.
    pub const fn scores(&self) -> usize {
        self.heads * self.tokens * self.tokens
    }

    /// Multiply-accumulates of either product (`Q K^T`, or probabilities times `V`): `heads * T * T * d`.
    pub const fn products(&self) -> usize {
        self.scores() * self.head_dim
    }
}

/// Shift that turns the log2 code `k` into the integer weight `2^(14 - k)`: probabilities times `V` are
/// summed on the scale `2^-14`.
pub const LOG2_WEIGHT_SHIFT: u32 = 14;

/// The integer weight of one probability code (the product with `V` uses it).
#[inline(always)]
pub fn prob_weight(code: u8, probs: ProbCodes) -> i32 {
    match probs {
        ProbCodes::Log2 if code >= LOG2_ZERO_CODE => 0,
        ProbCodes::Log2 => 1 << (LOG2_WEIGHT_SHIFT - code as u32),
        ProbCodes::Linear { .. } => code as i32,
    }
}

/// The accumulators of [`attention_scores`]: `emit((h * T + i) * T + j, sum_k (q - zq)(k - zk))` over the
/// `d` channels of head `h`, query token `i`, key token `j`.
pub fn attention_scores_accumulate(
    q: Codes<'_>,
    k: Codes<'_>,
    shape: AttentionShape,
    zeros: [u8; 2],
    mut emit: impl FnMut(usize, i32),
) {
    let (t, d, ch) = (shape.tokens, shape.head_dim, shape.channels());
    let (zq, zk) = (zeros[0] as i32, zeros[1] as i32);
    for h in 0..shape.heads {
        for i in 0..t {
            for j in 0..t {
                let mut acc = 0i32;
                for c in h * d..(h + 1) * d {
                    acc += (q.get(i * ch + c) as i32 - zq) * (k.get(j * ch + c) as i32 - zk);
                }
                emit((h * t + i) * t + j, acc);
            }
        }
    }
}

/// The attention logits: `out = clamp(requant(sum_k (q - zq)(k - zk)))`, one requantization for the
/// tensor (its scale carries `1 / sqrt(d)`).
pub fn attention_scores(
    q: Codes<'_>,
    k: Codes<'_>,
    shape: AttentionShape,
    zeros: [u8; 2],
    requant: RequantParams,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    attention_scores_accumulate(q, k, shape, zeros, |i, acc| {
        out.set(i, requantize_to_code(acc, requant, clamp.min, clamp.max));
    });
}

/// The accumulators of [`attention_values`]: `emit(i * C + h * d + c, sum_j weight(p[h, i, j]) (v[j] -
/// zv))`, with the weight of [`prob_weight`].
pub fn attention_values_accumulate(
    p: Codes<'_>,
    v: Codes<'_>,
    shape: AttentionShape,
    probs: ProbCodes,
    zero: u8,
    mut emit: impl FnMut(usize, i32),
) {
    let (t, d, ch) = (shape.tokens, shape.head_dim, shape.channels());
    for i in 0..t {
        for h in 0..shape.heads {
            for c in h * d..(h + 1) * d {
                let mut acc = 0i32;
                for j in 0..t {
                    let weight = prob_weight(p.get((h * t + i) * t + j), probs);
                    acc += weight * (v.get(j * ch + c) as i32 - zero as i32);
                }
                emit(i * ch + c, acc);
            }
        }
    }
}

/// The attention output: `out = clamp(requant(sum_j weight(p) (v - zv)))` for every token and channel.
#[allow(clippy::too_many_arguments)]
pub fn attention_values(
    p: Codes<'_>,
    v: Codes<'_>,
    shape: AttentionShape,
    probs: ProbCodes,
    zero: u8,
    requant: RequantParams,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    attention_values_accumulate(p, v, shape, probs, zero, |i, acc| {
        out.set(i, requantize_to_code(acc, requant, clamp.min, clamp.max));
    });
}
