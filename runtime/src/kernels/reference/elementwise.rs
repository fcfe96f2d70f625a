//! Element-wise ops.

use crate::codes::{CodeWriter, Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, RequantParams};

/// Residual add: `out[i] = clamp(requant(a[i] * weights[0] + b[i] * weights[1]))`.
///
/// Each branch keeps its own scale through its integer weight; both constant terms live in `requant.offset`.
/// `a`, `b` and `out` hold `len` codes each (of their own bit-widths).
pub fn add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    let mut w = CodeWriter::new(&out, 0);
    add_accumulate(a, b, len, weights, |_, acc| {
        w.push(&mut out, requantize_to_code(acc, requant, clamp.min, clamp.max))
    });
    w.finish(&mut out);
}

/// The accumulators of [`add`] before requantization: calls `emit(i, a[i] * weights[0] + b[i] * weights[1])`.
#[inline]
pub fn add_accumulate(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    mut emit: impl FnMut(usize, i32),
) {
    for (i, (x, y)) in a.iter_from(0).zip(b.iter_from(0)).take(len).enumerate() {
        emit(i, x as i32 * weights[0] + y as i32 * weights[1]);
    }
}
