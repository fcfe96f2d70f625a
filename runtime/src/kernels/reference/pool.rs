//! Pooling: max, average and global sum.

use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{for_each_tap, Hwc, PoolGeometry};
use crate::requant::{requantize_to_code, RequantParams};

/// Folds each output element's window with `fold` (padding taps are skipped) and calls `emit(i, folded)`.
#[inline]
fn pool(
    input: Codes<'_>,
    geo: &PoolGeometry,
    init: i32,
    fold: impl Fn(i32, u8) -> i32,
    mut emit: impl FnMut(usize, i32),
) {
    let (inp, out) = (geo.input, geo.output);
    for oy in 0..out.h {
        for ox in 0..out.w {
            for c in 0..out.c {
                let mut acc = init;
                for_each_tap(&geo.window, inp, oy, ox, |iy, ix, _| {
                    acc = fold(acc, input.get((iy * inp.w + ix) * inp.c + c));
                });
                emit((oy * out.w + ox) * out.c + c, acc);
            }
        }
    }
}

/// Max over each window. Padding cells never win (codes are `>= 0`, the start value).
pub fn max_pool(input: Codes<'_>, geo: &PoolGeometry, mut output: CodesMut<'_>) {
    pool(input, geo, 0, |m, x| m.max(x as i32), |i, m| output.set(i, m as u8));
}

/// Window sum (padding counts as code 0) requantized by `requant`, which carries the `1 / (kh * kw)`.
pub fn avg_pool(
    input: Codes<'_>,
    geo: &PoolGeometry,
    requant: RequantParams,
    clamp: Clamp,
    mut output: CodesMut<'_>,
) {
    avg_pool_accumulate(input, geo, |i, s| {
        output.set(i, requantize_to_code(s, requant, clamp.min, clamp.max))
    });
}

/// The accumulators of [`avg_pool`] before requantization: calls `emit(i, window sum)`.
#[inline]
pub fn avg_pool_accumulate(input: Codes<'_>, geo: &PoolGeometry, emit: impl FnMut(usize, i32)) {
    pool(input, geo, 0, |s, x| s + x as i32, emit);
}

/// Sums each channel over all pixels: `out[c] = sum_{y,x} in[y][x][c]`, written as `i32` little-endian.
/// `output` holds `4 * input.c` bytes.
pub fn global_sum_pool(input: Codes<'_>, shape: Hwc, output: &mut [u8]) {
    for c in 0..shape.c {
        let s: i32 = (c..shape.elems()).step_by(shape.c).map(|i| input.get(i) as i32).sum();
        output[4 * c..4 * c + 4].copy_from_slice(&s.to_le_bytes());
    }
}
