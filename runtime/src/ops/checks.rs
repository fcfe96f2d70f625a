//! The load-time checks that several ops share.

use crate::error::LoadError;
use crate::format::{Clamp, ElemType, ValueDesc, Window};
use crate::requant::{ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES};
use crate::weights::{codes_per_byte, max_code, packed_len, PackedWeights};

use super::OpValues;

/// The largest accumulator any op may form.
pub(super) const I32_MAX: u64 = i32::MAX as u64;

/// Value `v` read as codes, with its largest code; `WrongInputType` for an `i32` value.
pub(super) fn codes_in<'v>(
    at: u16,
    values: &OpValues<'v>,
    v: u16,
) -> Result<(&'v ValueDesc, u64), LoadError> {
    let value = values.get(v);
    match value.elem {
        ElemType::Codes { bits } => Ok((value, max_code(bits) as u64)),
        ElemType::I32 => Err(LoadError::WrongInputType { op: at }),
    }
}

/// The output's code bit-width; `ShapeMismatch` for an `i32` output.
pub(super) fn out_codes(at: u16, values: &OpValues<'_>) -> Result<u8, LoadError> {
    match values.out().elem {
        ElemType::Codes { bits } => Ok(bits),
        ElemType::I32 => Err(LoadError::ShapeMismatch { op: at }),
    }
}

/// The largest code of a codes value, or the recorded bound of an i32 value.
pub(super) fn value_max(v: &ValueDesc, i32_bound: u64) -> u64 {
    match v.elem {
        ElemType::Codes { bits } => max_code(bits) as u64,
        ElemType::I32 => i32_bound,
    }
}

/// A pool's output is its window slid over the input, channel for channel.
pub(super) fn pool_shape(
    at: u16,
    window: &Window,
    inp: &ValueDesc,
    out: &ValueDesc,
) -> Result<(), LoadError> {
    let hw = window
        .output_hw(inp.shape[0] as usize, inp.shape[1] as usize)
        .ok_or(LoadError::BadGeometry { op: at })?;
    if hw != [out.shape[0] as usize, out.shape[1] as usize] || inp.shape[2] != out.shape[2] {
        return Err(LoadError::ShapeMismatch { op: at });
    }
    Ok(())
}

/// The output's code bit-width, with `clamp` inside its code range; `ShapeMismatch` for an `i32` output.
pub(super) fn clamped_out(at: u16, values: &OpValues<'_>, clamp: Clamp) -> Result<u8, LoadError> {
    let bits = out_codes(at, values)?;
    self::clamp(at, clamp.min, clamp.max, bits)?;
    Ok(bits)
}

/// `min <= max <= 2^bits - 1`.
pub(super) fn clamp(at: u16, min: u8, max: u8, bits: u8) -> Result<(), LoadError> {
    if min > max || max as i32 > max_code(bits) {
        return Err(LoadError::BadClamp { op: at });
    }
    Ok(())
}

/// `count` codes of 1-8 bits, packed, none above the code range.
pub(super) fn weights(at: u16, weights: &PackedWeights<'_>, count: u64) -> Result<(), LoadError> {
    if !(1..=8).contains(&weights.bits) {
        return Err(LoadError::WeightBits { op: at });
    }
    if weights.data.len() as u64 != (count as u128).div_ceil(codes_per_byte(weights.bits) as u128) as u64 {
        return Err(LoadError::WeightData { op: at });
    }
    debug_assert_eq!(weights.data.len(), packed_len(count as usize, weights.bits));
    // Byte-container widths below 8 could hold codes past 2^bits - 1, which would break the overflow proof.
    if codes_per_byte(weights.bits) == 1 && weights.bits < 8 {
        let max = max_code(weights.bits) as u8;
        if weights.data.iter().any(|&k| k > max) {
            return Err(LoadError::WeightData { op: at });
        }
    }
    Ok(())
}

/// Checks length, shifts and offsets; returns the largest `|offset|` (at most `MAX_OFFSET`).
pub(super) fn requant_table(
    at: u16,
    requant: &ChannelRequant<'_>,
    channels: usize,
) -> Result<u64, LoadError> {
    if requant.records.len() as u64 != channels as u64 * CHANNEL_RECORD_BYTES as u64 {
        return Err(LoadError::RequantLength { op: at });
    }
    let mut max_offset = 0u64;
    for p in requant.iter() {
        params(at, &p)?;
        max_offset = max_offset.max(p.offset.unsigned_abs());
    }
    Ok(max_offset)
}

/// The shift lies in `[MIN_SHIFT, MAX_SHIFT]` and `|offset| <= MAX_OFFSET`, so `requantize` cannot overflow.
pub(super) fn params(at: u16, p: &RequantParams) -> Result<(), LoadError> {
    if !p.is_valid() {
        Err(LoadError::ShiftOutOfRange { op: at })
    } else if !p.offset_in_range() {
        Err(LoadError::OffsetOutOfRange { op: at })
    } else {
        Ok(())
    }
}

/// Elements of a value, in `u64`.
pub(super) fn elems(v: &ValueDesc) -> u64 {
    v.shape.iter().map(|&d| d as u64).product()
}

/// Taps of a window.
pub(super) fn taps(w: &Window) -> u64 {
    w.kernel[0] as u64 * w.kernel[1] as u64
}
