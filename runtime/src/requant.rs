//! Requantization: the one place where an `i32` accumulator becomes an output code.
//!
//! Every kernel ends with [`requantize`] (or, for logits, [`logit`]), so the rounding rule is written exactly
//! once:
//!
//! ```text
//! requantize(acc, {offset, multiplier, shift})
//!     = saturate_i32(round((acc * multiplier + offset) / 2^(31 - shift)))
//! ```
//!
//! computed exactly in 64-bit, with ties rounded away from zero. `multiplier` is a Q31 fixed-point number
//! (any sign), `shift` in `[MIN_SHIFT, MAX_SHIFT]`, so the divisor is `2^1 ..= 2^62`. The constant term
//! `offset` is in product units (`2^(31 - shift)` of them make one output code), with `|offset| < 2^62`.
//! `docs/arithmetic.md` has worked examples.

use serde::{Deserialize, Serialize};

use crate::format::Clamp;

/// Smallest allowed shift (divide by `2^62`).
pub const MIN_SHIFT: i8 = -31;
/// Largest allowed shift (divide by `2^1`).
pub const MAX_SHIFT: i8 = 30;
/// Largest allowed `|offset|`: `2^62 - 1`. With `|acc * multiplier| <= 2^62`, the sum
/// `acc * multiplier + offset` always fits `i64`.
pub const MAX_OFFSET: i64 = (1 << 62) - 1;
/// Bytes of one encoded [`RequantParams`] in a [`ChannelRequant`] table.
pub const CHANNEL_RECORD_BYTES: usize = 13;

/// Constant term, fixed-point multiplier and shift of one output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequantParams {
    /// Added to the product `acc * multiplier`, in product units (`2^(31 - shift)` of them make one output
    /// code), so a fractional constant term is kept. For logits (`FcOutput::Logits`) it is added to the
    /// accumulator instead, in accumulator units.
    pub offset: i64,
    /// Q31 multiplier: the real scale is `multiplier / 2^31 * 2^shift`.
    pub multiplier: i32,
    /// Power-of-two exponent of the scale.
    pub shift: i8,
}

impl RequantParams {
    /// Whether the shift lies in the supported range.
    pub const fn is_valid(&self) -> bool {
        self.shift >= MIN_SHIFT && self.shift <= MAX_SHIFT
    }

    /// Whether `|offset| <= MAX_OFFSET`.
    pub const fn offset_in_range(&self) -> bool {
        self.offset >= -MAX_OFFSET && self.offset <= MAX_OFFSET
    }

    /// Encodes the params as a 13-byte little-endian record (`offset`, `multiplier`, `shift`).
    pub fn to_record(&self) -> [u8; CHANNEL_RECORD_BYTES] {
        let mut r = [0u8; CHANNEL_RECORD_BYTES];
        r[0..8].copy_from_slice(&self.offset.to_le_bytes());
        r[8..12].copy_from_slice(&self.multiplier.to_le_bytes());
        r[12] = self.shift as u8;
        r
    }

    /// Decodes the record at the start of `r` (at least 13 bytes), read in place.
    #[inline]
    pub fn from_slice(r: &[u8]) -> Self {
        let r = &r[..CHANNEL_RECORD_BYTES];
        let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        RequantParams {
            offset: (word(0) as u64 | (word(4) as u64) << 32) as i64,
            multiplier: word(8) as i32,
            shift: r[12] as i8,
        }
    }

    /// Decodes a 13-byte record written by [`to_record`](Self::to_record).
    pub fn from_record(r: &[u8; CHANNEL_RECORD_BYTES]) -> Self {
        RequantParams {
            offset: i64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]),
            multiplier: i32::from_le_bytes([r[8], r[9], r[10], r[11]]),
            shift: r[12] as i8,
        }
    }
}

/// Scales `acc` by the params, exactly as the module documentation states.
///
/// `acc * multiplier` is exact in `i64` (`|.| <= 2^62`), and with `|offset| <= MAX_OFFSET` (load-time
/// validation refuses any other record) so is the sum. The rounding never forms `sum + 2^(n-1)`, which
/// could overflow: it shifts by `n - 1` and adds the last bit shifted out. An offset outside the range gives
/// an unspecified result, never a panic.
#[inline]
pub fn requantize(acc: i32, p: RequantParams) -> i32 {
    rounded(acc, p).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `round((acc * multiplier + offset) / 2^(31 - shift))`, ties away from zero, before any saturation.
#[inline(always)]
fn rounded(acc: i32, p: RequantParams) -> i64 {
    let n = divisor_bits(p);
    let t = biased(acc, p);
    if n > 32 {
        high_round(t, n - 33) as i64
    } else {
        wide_round(t, n)
    }
}

/// `n` of the divisor `2^n = 2^(31 - shift)`, within `1..=62` (a shift outside the valid range is
/// clamped to it, so even an unvalidated record gives a shift the rounding can use).
#[inline(always)]
pub fn divisor_bits(p: RequantParams) -> u32 {
    (31 - p.shift as i32).clamp(1, 62) as u32
}

/// `t = acc * multiplier + offset - [sum < 0]`.
///
/// round_half_away(sum / 2^n) = floor((sum + 2^(n-1) - [sum < 0]) / 2^n): adding half the divisor then
/// flooring rounds ties up, the `- 1` for negative sums makes them round away from zero. With
/// `u = t >> (n - 1)`, that floor is `(u >> 1) + (u & 1)`; the rounding never forms `sum + 2^(n-1)`.
#[inline(always)]
fn biased(acc: i32, p: RequantParams) -> i64 {
    let sum = (acc as i64 * p.multiplier as i64).wrapping_add(p.offset);
    sum.wrapping_sub((sum < 0) as i64)
}

/// The rounding for `n > 32` (scales below 2^-1, the usual case), given `sh = n - 33`: `u` fits 32 bits
/// and arithmetic shifts compose (`t >> (n - 1) = (t >> 32) >> (n - 33)`), so a 32-bit core shifts only
/// `t`'s high word.
#[inline(always)]
fn high_round(t: i64, sh: u32) -> i32 {
    let u = ((t >> 32) as i32) >> sh;
    (u >> 1) + (u & 1)
}

/// The rounding for `n <= 32`.
#[inline(always)]
fn wide_round(t: i64, n: u32) -> i64 {
    let u = t >> (n - 1);
    (u >> 1) + (u & 1)
}

/// The logit of a [`FcOutput::Logits`](crate::format::FcOutput::Logits) layer:
/// `saturate_i32(acc + offset)`, with `offset` in accumulator units (multiplier and shift are not used).
#[inline]
pub fn logit(acc: i32, p: RequantParams) -> i32 {
    (acc as i64).saturating_add(p.offset).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// [`requantize`] followed by a clamp to the output code range. (The code range lies inside `i32`, so
/// clamping the unsaturated value to it gives the same code and skips the `i32` saturation.)
#[inline]
pub fn requantize_to_code(acc: i32, p: RequantParams, min: u8, max: u8) -> u8 {
    ToCode::new(p, Clamp { min, max }).apply(acc)
}

/// [`requantize_to_code`] with everything that depends only on the channel worked out once, for kernels
/// that requantize many accumulators of one channel: the same arithmetic, bit for bit, in fewer
/// instructions per output.
#[derive(Debug, Clone, Copy)]
pub struct ToCode {
    params: RequantParams,
    /// `n - 33` when the divisor `2^n` exceeds `2^32` (the usual case), else `None`.
    high_shift: Option<u32>,
    min: i32,
    max: i32,
}

impl ToCode {
    /// Prepares the requantization of one channel to codes in `clamp`.
    #[inline]
    pub fn new(params: RequantParams, clamp: Clamp) -> Self {
        // `n - 33` with `n = divisor_bits(params)`, i.e. `31 - shift` at most 62: `-2 - shift`, at most 29.
        let sh = -2 - params.shift as i32;
        let high_shift = (sh >= 0).then(|| sh.min(29) as u32);
        ToCode { params, high_shift, min: clamp.min as i32, max: clamp.max as i32 }
    }

    /// The output code of `acc`.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> u8 {
        let t = biased(acc, self.params);
        match self.high_shift {
            // Both bounds and the value are `i32` here: a 32-bit clamp.
            Some(sh) => high_round(t, sh).clamp(self.min, self.max) as u8,
            None => wide_round(t, divisor_bits(self.params)).clamp(self.min as i64, self.max as i64) as u8,
        }
    }
}

/// A per-channel table of [`RequantParams`], borrowed from the model file as 13-byte records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRequant<'a> {
    /// `channels * 13` bytes: each `offset: i64 LE, multiplier: i32 LE, shift: i8`.
    pub records: &'a [u8],
}

impl<'a> ChannelRequant<'a> {
    /// Number of channels the table covers.
    pub fn len(&self) -> usize {
        self.records.len() / CHANNEL_RECORD_BYTES
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Params of channel `c`. Panics if `c >= len()`; validated models never ask for that.
    #[inline]
    pub fn get(&self, c: usize) -> RequantParams {
        let start = c * CHANNEL_RECORD_BYTES;
        RequantParams::from_slice(&self.records[start..start + CHANNEL_RECORD_BYTES])
    }

    /// All params, in channel order.
    pub fn iter(&self) -> impl Iterator<Item = RequantParams> + 'a {
        self.records.chunks_exact(CHANNEL_RECORD_BYTES).map(|r| {
            let mut a = [0u8; CHANNEL_RECORD_BYTES];
            a.copy_from_slice(r);
            RequantParams::from_record(&a)
        })
    }
}
