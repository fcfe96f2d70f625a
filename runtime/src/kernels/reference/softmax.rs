//! Integer softmax over each row of attention logits, to log2 codes (Log-Int-Softmax) or linear codes.
//!
//! The logits are codes on one scale `s`; subtracting the row's largest code removes the zero point. The
//! exponential is I-BERT's integer form: `exp(d s) = 2^-q exp(r s)` with `d = q x0 + r` and `x0 s` close
//! to `-ln 2`, and `exp(r s)` from the second-degree polynomial `0.35815 (r s)^2 + 0.9696 r s + 1`, which in
//! integers is `z = r (r + b) + c` with the constants worked out for `s` at export ([`ExpParams`]). Unlike
//! I-BERT, the differences are first put on a grid `2^P` times finer than `s`, so that `x0`, a whole number
//! of grid steps, is within `2^-P` of a step of `-ln 2` (with `x0 = floor(-ln 2 / s)` itself, the error
//! compounds with every halving: 7% after ten at `s = 0.02`). Each term is `e = z << (n - q)` in 64 bits.

use crate::codes::{max_code, Codes, CodesMut};

/// The log2 code that stands for probability 0 (codes `0..=14` stand for `2^-code`).
pub const LOG2_ZERO_CODE: u8 = 15;
/// Bits of a log2 code.
pub const LOG2_CODE_BITS: u8 = 4;

/// The integer exponential's constants for one logit scale `s`, on a grid `2^fraction` times finer than
/// the logits (so that `x0`, a whole number of grid steps, is close to `-ln 2`): export works them out;
/// validation checks `x0 < 0`, `b >= 0`, `c >= 1` and that a row's sum fits ([`ExpParams::term_bound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpParams {
    /// Fraction bits `P` of the grid: a logit difference `d` is `d << P` on it.
    pub fraction: u8,
    /// `floor(-ln 2 * 2^P / s)`: the step that halves the exponential (negative).
    pub x0: i32,
    /// `floor(2.7073 * 2^P / s)` (`0.9696 / 0.35815`), the polynomial's linear term.
    pub b: i64,
    /// `floor(2^(2P) / (0.35815 s^2))`, its constant term.
    pub c: i64,
    /// `n`: the largest term is `c << n`, and logits more than `n` halvings below the row's largest code
    /// count as `n` halvings below it.
    pub shift: u8,
}

impl ExpParams {
    /// A bound on every term `e`: `(x0^2 + b |x0| + c) << n` (the polynomial's largest magnitude on
    /// `x0 < r <= 0`, times the largest power of two). Saturates rather than overflowing.
    pub fn term_bound(&self) -> u128 {
        let x0 = self.x0.unsigned_abs() as u128;
        let (b, c) = (self.b.max(0) as u128, self.c.max(0) as u128);
        (x0 * x0 + b * x0 + c).saturating_mul(1u128 << self.shift.min(64))
    }

    /// `e` for `d = x - max <= 0`: on the grid `D = d << P`, raised to `n x0` at the lowest and split as
    /// `D = q x0 + r` with `0 <= q <= n`, `x0 < r <= 0`; then `e = max(r (r + b) + c, 0) << (n - q)`.
    #[inline]
    pub fn exp(&self, d: i32) -> u64 {
        let n = self.shift as i32;
        let d = (d << self.fraction).max(n.saturating_mul(self.x0));
        // `d <= 0` and `x0 < 0`: the quotient is positive, so truncation is the floor.
        let q = d / self.x0;
        let r = (d - q * self.x0) as i64;
        let z = r * (r + self.b) + self.c;
        (z.max(0) as u64) << (n - q) as u32
    }
}

/// How probabilities are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProbCodes {
    /// 4-bit log2 codes: `k` for `2^-k`, `k` in `0..=14`, and [`LOG2_ZERO_CODE`] for 0 (Log-Int-Softmax).
    Log2,
    /// Linear codes of `bits` bits: `round(p * (2^bits - 1))`.
    Linear {
        /// Bit-width of the codes.
        bits: u8,
    },
}

impl ProbCodes {
    /// Bit-width of the stored codes.
    pub const fn bits(self) -> u8 {
        match self {
            ProbCodes::Log2 => LOG2_CODE_BITS,
            ProbCodes::Linear { bits } => bits,
        }
    }
}

/// The log2 code of the term `e` in a row whose terms sum to `sum`: the `k` for which `2^-k` is nearest
/// `e / sum` with midpoints at `1.5 * 2^-k`, i.e. the number of `i >= 0` with `3 e 2^i <= 2 sum`. Terms
/// below `2^-14.5` of the sum (and `e = 0`) give [`LOG2_ZERO_CODE`]. Needs `e <= sum < 2^63`.
#[inline]
pub fn log2_code(e: u64, sum: u64) -> u8 {
    let (a, two_sum) = (3 * e, 2 * sum);
    if e == 0 {
        return LOG2_ZERO_CODE;
    }
    if a > two_sum {
        return 0;
    }
    // The largest `i` with `a << i <= 2 sum`: `a << i` has at most as many bits as `2 sum`, never more.
    let mut i = a.leading_zeros() - two_sum.leading_zeros();
    if a << i > two_sum {
        i -= 1;
    }
    (i + 1).min(LOG2_ZERO_CODE as u32) as u8
}

/// The linear code of `e`: `round_half_up(e * (2^bits - 1) / sum)`, with `e` and `sum` first shifted
/// right until `sum` fits 31 bits (so the product fits 64). Needs `1 <= sum`, `e <= sum`.
#[inline]
pub fn linear_code(e: u64, sum: u64, bits: u8) -> u8 {
    let drop = (64 - sum.leading_zeros()).saturating_sub(31);
    let (e, sum) = (e >> drop, sum >> drop);
    ((2 * e * max_code(bits) as u64 + sum) / (2 * sum)) as u8
}

/// Softmax of `rows` rows of `n` logit codes each: `out` gets one probability code per logit.
pub fn softmax(x: Codes<'_>, rows: usize, n: usize, exp: ExpParams, probs: ProbCodes, mut out: CodesMut<'_>) {
    for row in 0..rows {
        let first = row * n;
        let max = (0..n).map(|j| x.get(first + j)).max().unwrap_or(0) as i32;
        // Each term is computed twice (for the sum, then for its code) rather than kept: no row buffer.
        let term = |j: usize| exp.exp(x.get(first + j) as i32 - max);
        let sum: u64 = (0..n).map(term).sum();
        for j in 0..n {
            let code = match probs {
                ProbCodes::Log2 => log2_code(term(j), sum),
                ProbCodes::Linear { bits } => linear_code(term(j), sum, bits),
            };
            out.set(first + j, code);
        }
    }
}
