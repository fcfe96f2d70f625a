//! Element-wise ops.

use crate::format::Clamp;
use crate::requant::{requantize_to_code, RequantParams};

/// Residual add: `out[i] = clamp(requant(a[i] * weights[0] + b[i] * weights[1]))`.
///
/// Each branch keeps its own scale through its integer weight; both constant terms live in `requant.offset`.
/// `a`, `b` and `out` have the same length.
pub fn add(a: &[u8], b: &[u8], weights: [i32; 2], requant: RequantParams, clamp: Clamp, out: &mut [u8]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let acc = x as i32 * weights[0] + y as i32 * weights[1];
        *o = requantize_to_code(acc, requant, clamp.min, clamp.max);
    }
}
