//! Element-wise ops.

use crate::format::Clamp;
use crate::requant::{requantize_to_code, RequantParams};

/// Residual add: `out[i] = clamp(requant(a[i] * weights[0] + b[i] * weights[1]))`.
///
/// Each branch keeps its own scale through its integer weight; both constant terms live in `requant.offset`.
/// `a`, `b` and `out` have the same length.
pub fn add(a: &[u8], b: &[u8], weights: [i32; 2], requant: RequantParams, clamp: Clamp, out: &mut [u8]) {
    add_accumulate(a, b, weights, |i, acc| out[i] = requantize_to_code(acc, requant, clamp.min, clamp.max));
}

/// The accumulators of [`add`] before requantization: calls `emit(i, a[i] * weights[0] + b[i] * weights[1])`.
#[inline]
pub fn add_accumulate(a: &[u8], b: &[u8], weights: [i32; 2], mut emit: impl FnMut(usize, i32)) {
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        emit(i, x as i32 * weights[0] + y as i32 * weights[1]);
    }
}
