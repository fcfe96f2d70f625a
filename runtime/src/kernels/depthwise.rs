//! 3x3 depthwise convolution (`groups == Cin == Cout`), the MobileNets' spatial filter.
//!
//! Channel by channel: the channel's nine weights are turned into their signed odd-grid values
//! (`2k - (2^bits - 1)`) once and kept in registers, then every output pixel is nine loads and nine
//! multiply-accumulates, with no code sum to form. Pixels whose window lies inside the input read three
//! rows of three taps directly; border pixels skip the padding taps.

use super::{for_each_tap, ConvGeometry};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, ChannelRequant};
use crate::weights::{max_code, PackedWeights};

/// [`super::conv2d`] for a 3x3 depthwise convolution.
pub(super) fn depthwise3x3(
    input: &[u8],
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: &mut [u8],
) {
    let (inp, out, win) = (geo.input, geo.output, &geo.window);
    let channels = inp.c;
    let [sy, sx] = [win.stride[0] as usize, win.stride[1] as usize];
    let [top, left] = [win.padding.top as usize, win.padding.left as usize];
    // Output rows and columns whose whole window lies inside the input.
    let inside = |o: usize, stride: usize, pad: usize, extent: usize| {
        o * stride >= pad && o * stride - pad + 3 <= extent
    };
    let row_stride = inp.w * channels;
    let offset = max_code(weights.bits);
    for c in 0..channels {
        let w: [i32; 9] = core::array::from_fn(|t| 2 * weights.code(c * 9 + t) as i32 - offset);
        let p = requant.get(c);
        for oy in 0..out.h {
            let rows_inside = inside(oy, sy, top, inp.h);
            for ox in 0..out.w {
                let acc = if rows_inside && inside(ox, sx, left, inp.w) {
                    let base = ((oy * sy - top) * inp.w + (ox * sx - left)) * channels + c;
                    let tap_row = |ky: usize, w: &[i32]| {
                        let row = &input[base + ky * row_stride..][..2 * channels + 1];
                        row[0] as i32 * w[0] + row[channels] as i32 * w[1] + row[2 * channels] as i32 * w[2]
                    };
                    tap_row(0, &w[0..3]) + tap_row(1, &w[3..6]) + tap_row(2, &w[6..9])
                } else {
                    let mut acc = 0i32;
                    for_each_tap(win, inp, oy, ox, |iy, ix, tap| {
                        acc += input[(iy * inp.w + ix) * channels + c] as i32 * w[tap];
                    });
                    acc
                };
                output[(oy * out.w + ox) * channels + c] = requantize_to_code(acc, p, clamp.min, clamp.max);
            }
        }
    }
}
