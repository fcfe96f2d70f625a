//! 2-D convolution, reference: any kernel, stride, padding and grouping (depthwise and pointwise included).

use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{for_each_tap, odd_grid_acc, ConvGeometry};
use crate::requant::{requantize_to_code, ChannelRequant};
use crate::weights::PackedWeights;

/// `output[oy][ox][o] = clamp(requant_o(sum over taps and the group's input channels of x * w))`.
///
/// - `input`: `geo.input.elems()` codes; `output`: `geo.output.elems()` codes (any storage width).
/// - `weights`: `[Cout][kh][kw][Cin / groups]` codes of 1-8 bits.
/// - `requant`: one entry per output channel. Padding reads code 0.
pub fn conv2d(
    input: Codes<'_>,
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    mut output: CodesMut<'_>,
) {
    conv2d_accumulate(input, geo, weights, |i, channel, acc| {
        output.set(i, requantize_to_code(acc, requant.get(channel), clamp.min, clamp.max));
    });
}

/// The accumulators of [`conv2d`] before requantization: calls `emit(i, channel, acc)` for every output
/// element `i` (in `H x W x C` order) with its channel and its `i32` sum of `x * w`. `qfd-host trace` uses
/// it to show them.
#[inline]
pub fn conv2d_accumulate(
    input: Codes<'_>,
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    mut emit: impl FnMut(usize, usize, i32),
) {
    let (inp, out) = (geo.input, geo.output);
    let cin_g = inp.c / geo.groups;
    let cout_g = out.c / geo.groups;
    let taps = geo.window.kernel[0] as usize * geo.window.kernel[1] as usize;
    let filter_len = taps * cin_g;
    for oy in 0..out.h {
        for ox in 0..out.w {
            let out_px = (oy * out.w + ox) * out.c;
            for g in 0..geo.groups {
                let group_in = g * cin_g;
                // sum(x) over the patch is shared by every output channel of the group.
                let mut sum_x = 0i32;
                for_each_tap(&geo.window, inp, oy, ox, |iy, ix, _| {
                    let first = (iy * inp.w + ix) * inp.c + group_in;
                    for_each_run(input, first, cin_g, |run, _| {
                        sum_x += run.iter().map(|&c| c as i32).sum::<i32>()
                    });
                });
                for o in g * cout_g..(g + 1) * cout_g {
                    let mut sum_xk = 0i32;
                    for_each_tap(&geo.window, inp, oy, ox, |iy, ix, tap| {
                        let first = (iy * inp.w + ix) * inp.c + group_in;
                        let k = o * filter_len + tap * cin_g;
                        for_each_run(input, first, cin_g, |run, j| sum_xk += weights.dot_codes(run, k + j));
                    });
                    emit(out_px + o, o, odd_grid_acc(sum_xk, sum_x, weights.bits));
                }
            }
        }
    }
}

/// Calls `f(codes, j)` for codes `first..first + len` of `input` in runs, `j` being the run's start within
/// them: the bytes themselves when codes are stored a byte each, otherwise unpacked into a small stack buffer.
#[inline]
pub(crate) fn for_each_run(input: Codes<'_>, first: usize, len: usize, mut f: impl FnMut(&[u8], usize)) {
    if !input.is_packed() {
        return f(&input.bytes()[first..first + len], 0);
    }
    let mut buf = [0u8; 64];
    for j in (0..len).step_by(buf.len()) {
        let run = &mut buf[..(len - j).min(64)];
        input.unpack(first + j, run);
        f(run, j);
    }
}
