//! Integer LayerNorm: each token's channels normalized to zero mean and unit variance, in integers.
//!
//! The input is the residual stream of a transformer, coded with power-of-two factors (PTF): channel `c`
//! has the scale `s * 2^shift[c]` and all channels share one zero point, so `(x - zero) << shift[c]` puts
//! every channel on the common scale `s`. Mean and variance are exact integer sums; the only roundings are
//! a floor square root and a fixed-point reciprocal, once per token, and the normalized value's rounding
//! to [`NORM_FRACTION_BITS`] fraction bits. The per-channel `gamma / s_out` and `beta / s_out + zero_out`
//! are an ordinary per-channel requantization of that value.

use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, ChannelRequant};

/// Fraction bits of the normalized value `(x - mean) / std` that requantization receives.
pub const NORM_FRACTION_BITS: u32 = 16;
/// Most channels one LayerNorm normalizes over: keeps every sum below inside its integer type.
pub const MAX_NORM_CHANNELS: usize = 1024;
/// Largest per-channel power-of-two factor (PTF uses 0 to 3).
pub const MAX_PTF_SHIFT: u8 = 7;

/// The input side of a LayerNorm: how codes become integers on one common scale.
#[derive(Debug, Clone, Copy)]
pub struct PtfInput<'a> {
    /// Zero point shared by every channel.
    pub zero: u8,
    /// Left shift of each channel (`channels` bytes, each at most [`MAX_PTF_SHIFT`]).
    pub shifts: &'a [u8],
}

impl PtfInput<'_> {
    /// Channel `c`'s code on the common scale: `(x - zero) << shift[c]` (a channel past a shorter table,
    /// which validation refuses, is not shifted).
    #[inline(always)]
    fn common(&self, x: u8, c: usize) -> i32 {
        (x as i32 - self.zero as i32) << self.shifts.get(c).copied().unwrap_or(0)
    }
}

/// `floor(sqrt(v))`, bit by bit (no floating point, no division).
pub fn isqrt(v: u64) -> u64 {
    let mut rem = v;
    let mut root = 0u64;
    // The highest power of four not above `v`.
    let mut bit = if v == 0 { 0 } else { 1u64 << ((63 - v.leading_zeros()) & !1) };
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `1 / sqrt(v)` as `inv / 2^shift`, for `v >= 1`: `v` is scaled by `4^e` so that its square root has
/// 31 significant bits, `inv = round(2^62 / isqrt(v * 4^e))` and `shift = 62 - e`.
#[inline]
pub fn inverse_sqrt(v: u64) -> (u64, u32) {
    let bits = 64 - v.leading_zeros();
    let e = 62u32.saturating_sub(bits) / 2;
    let root = isqrt(v << (2 * e));
    ((1u64 << 62).wrapping_add(root / 2) / root, 62 - e)
}

/// The normalized values of one token, `round_half_away((C * x_c - sum) * 2^16 / sqrt(V))` with
/// `V = C * sum(x^2) - sum^2`, passed to `emit(c, value)`. A token whose channels are all equal (`V = 0`)
/// normalizes to 0.
///
/// On the bounds (`channels <= MAX_NORM_CHANNELS`, shifts at most `MAX_PTF_SHIFT`): `|x| < 2^15`, so
/// `|sum| < 2^25`, `sum(x^2) < 2^40`, `V < 2^50`; `|C * x - sum| < 2^26`, times `inv <= 2^32` stays below
/// `2^58`; and `|(C * x - sum) / sqrt(V)| <= sqrt(C - 1)`, so the value fits in 22 bits.
#[inline]
pub fn normalize_token(
    x: Codes<'_>,
    first: usize,
    channels: usize,
    input: PtfInput<'_>,
    mut emit: impl FnMut(usize, i32),
) {
    // Two passes over the channels (sums, then values) recompute `x` rather than keep it: no buffer, so no
    // bound on the channels but validation's.
    let (mut sum, mut squares) = (0i64, 0i64);
    for c in 0..channels {
        let v = input.common(x.get(first + c), c) as i64;
        sum += v;
        squares += v * v;
    }
    let n = channels as i64;
    let variance = (n * squares - sum * sum) as u64;
    if variance == 0 {
        (0..channels).for_each(|c| emit(c, 0));
        return;
    }
    let (inv, shift) = inverse_sqrt(variance);
    // Rounds `t * inv / 2^(shift - 16)` half away from zero.
    let down = shift - NORM_FRACTION_BITS;
    let half = 1i64 << (down - 1);
    for c in 0..channels {
        let t = n * input.common(x.get(first + c), c) as i64 - sum;
        let p = t * inv as i64;
        let value = if p >= 0 { (p + half) >> down } else { -((-p + half) >> down) };
        emit(c, value as i32);
    }
}

/// LayerNorm over `tokens` tokens of `channels` channels: `out = clamp(requant_c(normalized))`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    x: Codes<'_>,
    tokens: usize,
    channels: usize,
    input: PtfInput<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    layer_norm_accumulate(x, tokens, channels, input, |i, value| {
        let code = requantize_to_code(value, requant.get(i % channels), clamp.min, clamp.max);
        out.set(i, code);
    });
}

/// The normalized values of [`layer_norm`] before requantization: `emit(token * channels + c, value)`.
pub fn layer_norm_accumulate(
    x: Codes<'_>,
    tokens: usize,
    channels: usize,
    input: PtfInput<'_>,
    mut emit: impl FnMut(usize, i32),
) {
    for t in 0..tokens {
        let first = t * channels;
        normalize_token(x, first, channels, input, |c, value| emit(first + c, value));
    }
}
