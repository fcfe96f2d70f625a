//! Integer kernels on activation codes.
//!
//! Every kernel reads `u8` codes in `H x W x C` order (the fully connected layer also reads `i32` sums),
//! accumulates in `i32`, and produces codes through [`requantize_to_code`](crate::requant::requantize_to_code),
//! the single rounding routine. Shapes are given as [`Hwc`]; the caller guarantees that slices have the
//! lengths the shapes imply (the interpreter's load-time validation does, and so does generated code).
//!
//! Accumulators are formed as `2 * sum(x * k) - (2^bits - 1) * sum(x)` (see [`crate::weights`]); the combine
//! uses wrapping arithmetic, which is exact whenever the true result fits `i32`, as validation proves.

mod conv;
mod elementwise;
mod fully_connected;
mod pool;

pub use conv::{conv2d, conv2d_accumulate, ConvGeometry};
pub use elementwise::{add, add_accumulate};
pub use fully_connected::{fully_connected, fully_connected_accumulate, FcInput};
pub use pool::{avg_pool, avg_pool_accumulate, global_sum_pool, max_pool, PoolGeometry};

/// A tensor shape: height, width, channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hwc {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Hwc {
    /// Builds a shape from `[H, W, C]`.
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Hwc { h, w, c }
    }
    /// Number of elements.
    pub const fn elems(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// Combines the two halves of a dot product against odd-grid weights: `2 * sum(x*k) - (2^bits - 1) * sum(x)`.
#[inline]
pub(crate) fn odd_grid_acc(sum_xk: i32, sum_x: i32, bits: u8) -> i32 {
    sum_xk.wrapping_mul(2).wrapping_sub(crate::weights::max_code(bits).wrapping_mul(sum_x))
}

/// Visits the valid taps of a window placed at output pixel `(oy, ox)`: calls `f(iy, ix)` for each tap inside
/// the input. Padding taps are skipped, which is the same as reading code 0 for every kernel here.
#[inline]
pub(crate) fn for_each_tap(
    window: &crate::format::Window,
    input: Hwc,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let [kh, kw] = [window.kernel[0] as usize, window.kernel[1] as usize];
    let y0 = (oy * window.stride[0] as usize) as isize - window.padding.top as isize;
    let x0 = (ox * window.stride[1] as usize) as isize - window.padding.left as isize;
    for ky in 0..kh {
        let iy = y0 + ky as isize;
        if iy < 0 || iy >= input.h as isize {
            continue;
        }
        for kx in 0..kw {
            let ix = x0 + kx as isize;
            if ix < 0 || ix >= input.w as isize {
                continue;
            }
            f(iy as usize, ix as usize, ky * kw + kx);
        }
    }
}
