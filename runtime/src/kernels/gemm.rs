//! Convolution as a blocked matrix product.
//!
//! Output pixels are taken two at a time. Each pair's patches are gathered (im2col) into scratch as 16-bit
//! lanes in the order the weights unpack to ([`super::lanes`]), together with each patch's code sum. Then
//! output channels are taken two at a time: one `dot_2x2` call gives the four dot products, so every
//! weight word read serves two pixels and every activation lane two channels. The `dot_2x2` is the only
//! core-specific part: `SMLAD` on DSP cores, portable Rust elsewhere.

use super::lanes::{le_word, LaneFormat};
use super::select::GemmPlan;
use super::{odd_grid_acc, scratch, ConvGeometry};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, ChannelRequant};
use crate::weights::PackedWeights;

#[cfg(all(target_arch = "arm", qfd_dsp))]
use super::dsp::dot_2x2;
#[cfg(not(all(target_arch = "arm", qfd_dsp)))]
use super::lanes::dot_2x2;

/// [`super::conv2d`] for a `groups == 1` convolution that `plan` describes.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d(
    input: &[u8],
    geo: &ConvGeometry,
    plan: &GemmPlan,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: &mut [u8],
    scratch: &mut [u8],
) {
    let (patch, rest) = scratch.split_at_mut(plan.patch_bytes());
    let words = scratch::words(rest, plan.lane_entries() + 2 * plan.tail);
    let (lanes, tails) = words.split_at_mut(plan.lane_entries());
    let (pixels, channels) = (geo.output.h * geo.output.w, geo.output.c);
    let (row_bytes, full_bytes) = (plan.row_bytes(), 4 * plan.words);
    let tail = plan.tail;

    for a in (0..pixels).step_by(2) {
        // An odd last pixel is gathered twice and its second result dropped.
        let b = if a + 1 < pixels { a + 1 } else { a };
        let sum_x = [
            im2col(input, geo, plan, a, 0, patch, lanes, tails) as i32,
            im2col(input, geo, plan, b, 1, patch, lanes, tails) as i32,
        ];
        for o0 in (0..channels).step_by(2) {
            let o1 = if o0 + 1 < channels { o0 + 1 } else { o0 };
            let row = |o: usize| &weights.data[o * row_bytes..(o + 1) * row_bytes];
            let (row0, row1) = (row(o0), row(o1));
            let mut acc = dot_2x2(lanes, &row0[..full_bytes], &row1[..full_bytes], plan.format, plan.words);
            if tail > 0 {
                // The tail codes are the top `tail * bits` bits of each row's last word.
                let bits = plan.format.bits();
                let first = 32 - tail as u32 * bits;
                let (last0, last1) = (le_word(row0, row_bytes - 4), le_word(row1, row_bytes - 4));
                let mask = (1u32 << bits) - 1;
                for t in 0..tail {
                    let at = first + t as u32 * bits;
                    let (k0, k1) = (((last0 >> at) & mask) as i32, ((last1 >> at) & mask) as i32);
                    let (xa, xb) = (tails[t] as i32, tails[tail + t] as i32);
                    acc[0] = acc[0].wrapping_add(xa * k0);
                    acc[1] = acc[1].wrapping_add(xb * k0);
                    acc[2] = acc[2].wrapping_add(xa * k1);
                    acc[3] = acc[3].wrapping_add(xb * k1);
                }
            }
            let (p0, p1) = (requant.get(o0), requant.get(o1));
            let mut emit = |pixel: usize, o: usize, p, sum_xk: i32, sum_x: i32| {
                let acc = odd_grid_acc(sum_xk, sum_x, weights.bits);
                output[pixel * channels + o] = requantize_to_code(acc, p, clamp.min, clamp.max);
            };
            emit(a, o0, p0, acc[0], sum_x[0]);
            if b != a {
                emit(b, o0, p0, acc[1], sum_x[1]);
            }
            if o1 != o0 {
                emit(a, o1, p1, acc[2], sum_x[0]);
                if b != a {
                    emit(b, o1, p1, acc[3], sum_x[1]);
                }
            }
        }
    }
}

/// Gathers output pixel `pixel`'s patch into slot `slot` (0 or 1) of the interleaved lanes and the tails;
/// returns the sum of its codes. Padding reads code 0.
#[allow(clippy::too_many_arguments)]
fn im2col(
    input: &[u8],
    geo: &ConvGeometry,
    plan: &GemmPlan,
    pixel: usize,
    slot: usize,
    patch: &mut [u8],
    lanes: &mut [u32],
    tails: &mut [u32],
) -> u32 {
    let (inp, win) = (geo.input, &geo.window);
    let (oy, ox) = (pixel / geo.output.w, pixel % geo.output.w);
    let [kh, kw] = [win.kernel[0] as usize, win.kernel[1] as usize];
    let y0 = (oy * win.stride[0] as usize) as isize - win.padding.top as isize;
    let x0 = (ox * win.stride[1] as usize) as isize - win.padding.left as isize;
    let cin = inp.c;
    // The source of tap (ky, kx): the input pixel's codes, or `None` in the padding.
    let tap = |ky: usize, kx: usize| {
        let (iy, ix) = (y0 + ky as isize, x0 + kx as isize);
        let inside = iy >= 0 && iy < inp.h as isize && ix >= 0 && ix < inp.w as isize;
        inside.then(|| {
            let start = (iy as usize * inp.w + ix as usize) * cin;
            &input[start..start + cin]
        })
    };

    let mut sum = LaneSum::default();
    if plan.format.bits() == 8 && cin.is_multiple_of(4) {
        // Every tap is whole words: unpack them straight from the input, with no copy of the patch.
        for ky in 0..kh {
            for kx in 0..kw {
                let first = (ky * kw + kx) * cin / 4;
                let dst = &mut lanes[4 * first..4 * (first + cin / 4)];
                match tap(ky, kx) {
                    Some(src) => {
                        for (chunk, src) in dst.chunks_mut(4 * FOLD_EVERY).zip(src.chunks(4 * FOLD_EVERY)) {
                            for (d, word) in chunk.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                                let (even, odd) = split_bytes(le_word(word, 0));
                                d[slot] = even;
                                d[2 + slot] = odd;
                                sum.add(even.wrapping_add(odd));
                            }
                            sum.fold();
                        }
                    }
                    None => dst.chunks_exact_mut(2).for_each(|d| d[slot] = 0),
                }
            }
        }
        return sum.total();
    }

    let row_inside = |ky: usize| {
        let iy = y0 + ky as isize;
        iy >= 0 && iy < inp.h as isize && x0 >= 0 && x0 + kw as isize <= inp.w as isize
    };
    for ky in 0..kh {
        let dst = &mut patch[ky * kw * cin..(ky + 1) * kw * cin];
        if row_inside(ky) {
            // The window's row lies inside the input: its taps are one contiguous run of `kw * cin` codes.
            // A loop, not `copy_from_slice`: runs are a few bytes (the 3-channel stem), too short for memcpy.
            let start = ((y0 + ky as isize) as usize * inp.w + x0 as usize) * cin;
            dst.iter_mut().zip(&input[start..start + kw * cin]).for_each(|(d, &s)| *d = s);
            continue;
        }
        for (kx, dst) in dst.chunks_exact_mut(cin).enumerate() {
            match tap(ky, kx) {
                Some(src) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s),
                None => dst.fill(0),
            }
        }
    }
    let (full, tail) = (plan.full(), plan.tail);
    for t in 0..tail {
        let code = patch[full + t] as u32;
        tails[slot * tail + t] = code;
        sum.add(code);
    }
    to_lanes(&patch[..full], plan.format, slot, lanes, &mut sum);
    sum.total()
}

/// Writes the lanes of `codes` (whole words of the format) into slot `slot` of `lanes`.
fn to_lanes(codes: &[u8], format: LaneFormat, slot: usize, lanes: &mut [u32], sum: &mut LaneSum) {
    let n = format.codes_per_word();
    if n == 4 {
        // Pairs (c0, c2) and (c1, c3) of each word.
        for (m, d) in lanes.chunks_exact_mut(4).enumerate() {
            let (even, odd) = split_bytes(le_word(codes, 4 * m));
            d[slot] = even;
            d[2 + slot] = odd;
            sum.add(even.wrapping_add(odd));
            if m % FOLD_EVERY == FOLD_EVERY - 1 {
                sum.fold();
            }
        }
        return;
    }
    // Pairs (c_j, c_{j + n/2}): bytes `j` of the word's first and second halves, four pairs per word of each.
    for (m, word) in codes.chunks_exact(n).enumerate() {
        for q in 0..n / 8 {
            let (u_even, u_odd) = split_bytes(le_word(word, 4 * q));
            let (v_even, v_odd) = split_bytes(le_word(word, n / 2 + 4 * q));
            let first = 2 * (m * n / 2 + 4 * q);
            let d = &mut lanes[first..first + 8];
            d[slot] = (u_even & 0xffff) | (v_even << 16);
            d[2 + slot] = (u_odd & 0xffff) | (v_odd << 16);
            d[4 + slot] = (u_even >> 16) | (v_even & 0xffff_0000);
            d[6 + slot] = (u_odd >> 16) | (v_odd & 0xffff_0000);
            sum.add(u_even.wrapping_add(u_odd));
            sum.add(v_even.wrapping_add(v_odd));
        }
        // At most 8 adds per word of codes: fold after each.
        sum.fold();
    }
}

/// Bytes 0 and 2, and bytes 1 and 3, of a word, each pair as two 16-bit lanes (`UXTB16`).
#[inline(always)]
fn split_bytes(word: u32) -> (u32, u32) {
    (word & 0x00ff_00ff, (word >> 8) & 0x00ff_00ff)
}

/// Adds into a [`LaneSum`] between folds: each add brings at most `2 * 255` per 16-bit lane, so 128 adds
/// stay below `2^16`.
const FOLD_EVERY: usize = 128;

/// A sum of codes kept as two 16-bit lanes (two adds per word of codes), folded into the total at least
/// every [`FOLD_EVERY`] adds, before a lane can overflow.
#[derive(Default)]
struct LaneSum {
    lanes: u32,
    total: u32,
}

impl LaneSum {
    #[inline(always)]
    fn add(&mut self, pair: u32) {
        self.lanes = self.lanes.wrapping_add(pair);
    }

    #[inline(always)]
    fn fold(&mut self) {
        self.total += (self.lanes & 0xffff) + (self.lanes >> 16);
        self.lanes = 0;
    }

    fn total(mut self) -> u32 {
        self.fold();
        self.total
    }
}
