//! Requantization: the one place where an `i32` accumulator becomes an output code.
//!
//! Every kernel ends with [`requantize`], so the rounding rule is written exactly once:
//!
//! ```text
//! requantize(acc, {bias, multiplier, shift}) = saturate_i32(round((acc + bias) * multiplier / 2^(31 - shift)))
//! ```
//!
//! computed exactly in 64-bit, with ties rounded away from zero. `multiplier` is a Q31 fixed-point number
//! (any sign), `shift` in `[MIN_SHIFT, MAX_SHIFT]`, so the divisor is `2^1 ..= 2^62`. `docs/arithmetic.md`
//! has a worked example.

use serde::{Deserialize, Serialize};

/// Smallest allowed shift (divide by `2^62`).
pub const MIN_SHIFT: i8 = -31;
/// Largest allowed shift (divide by `2^1`).
pub const MAX_SHIFT: i8 = 30;
/// Bytes of one encoded [`RequantParams`] in a [`ChannelRequant`] table.
pub const CHANNEL_RECORD_BYTES: usize = 9;

/// Bias, fixed-point multiplier and shift of one output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequantParams {
    /// Added to the accumulator first, in accumulator units.
    pub bias: i32,
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

    /// Encodes the params as a 9-byte little-endian record (`bias`, `multiplier`, `shift`).
    pub fn to_record(&self) -> [u8; CHANNEL_RECORD_BYTES] {
        let mut r = [0u8; CHANNEL_RECORD_BYTES];
        r[0..4].copy_from_slice(&self.bias.to_le_bytes());
        r[4..8].copy_from_slice(&self.multiplier.to_le_bytes());
        r[8] = self.shift as u8;
        r
    }

    /// Decodes a 9-byte record written by [`to_record`](Self::to_record).
    pub fn from_record(r: &[u8; CHANNEL_RECORD_BYTES]) -> Self {
        RequantParams {
            bias: i32::from_le_bytes([r[0], r[1], r[2], r[3]]),
            multiplier: i32::from_le_bytes([r[4], r[5], r[6], r[7]]),
            shift: r[8] as i8,
        }
    }
}

/// Scales `acc` by the params, exactly as the module documentation states.
///
/// `acc + bias` is formed in 64-bit and saturated to `i32` (load-time validation proves that saturation never
/// happens in a valid model), so `|product| <= 2^62` and nothing here can overflow.
#[inline]
pub fn requantize(acc: i32, p: RequantParams) -> i32 {
    let n = (31 - p.shift as i32).clamp(1, 62) as u32;
    let x = (acc as i64 + p.bias as i64).clamp(i32::MIN as i64, i32::MAX as i64);
    let prod = x * p.multiplier as i64;
    // Adding half of the divisor then flooring rounds ties up; the `- 1` for negative products turns that
    // into ties away from zero.
    let q = (prod + (1i64 << (n - 1)) - (prod < 0) as i64) >> n;
    q.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// [`requantize`] followed by a clamp to the output code range.
#[inline]
pub fn requantize_to_code(acc: i32, p: RequantParams, min: u8, max: u8) -> u8 {
    requantize(acc, p).clamp(min as i32, max as i32) as u8
}

/// A per-channel table of [`RequantParams`], borrowed from the model file as 9-byte records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRequant<'a> {
    /// `channels * 9` bytes: each `bias: i32 LE, multiplier: i32 LE, shift: i8`.
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
        let mut r = [0u8; CHANNEL_RECORD_BYTES];
        r.copy_from_slice(&self.records[start..start + CHANNEL_RECORD_BYTES]);
        RequantParams::from_record(&r)
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
