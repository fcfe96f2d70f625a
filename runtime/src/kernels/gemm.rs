//! Convolution as a blocked matrix product.
//!
//! Output pixels are taken two at a time. Each pair's patches are gathered (im2col) into scratch as 16-bit
//! lanes in the order the weights unpack to ([`super::lanes`]), together with each patch's code sum. Then
//! output channels are taken two at a time: each pair's four dot products, so every weight word read serves
//! two pixels and every activation lane two channels. One `dot_2xn` call does every pair of a pixel pair;
//! it is the only core-specific part: `SMLAD` in `asm!` on DSP cores, portable Rust elsewhere.

use super::lanes::{le_word, LaneFormat};
use super::select::GemmPlan;
use super::{odd_grid_acc, scratch, ConvGeometry};
use crate::format::Clamp;
use crate::requant::{ChannelRequant, RequantParams, ToCode, CHANNEL_RECORD_BYTES};
use crate::weights::PackedWeights;

#[cfg(all(target_arch = "arm", qfd_dsp))]
use super::dsp::dot_2xn;
use super::lanes::dot_2x2;
#[cfg(not(all(target_arch = "arm", qfd_dsp)))]
use super::lanes::dot_2xn;

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
    let words = scratch::words(rest, plan.scratch_words());
    let (lanes, rest) = words.split_at_mut(plan.lane_entries());
    let (tails, sums) = rest.split_at_mut(2 * plan.tail);
    let (pixels, channels) = (geo.output.h * geo.output.w, geo.output.c);
    let pairs = channels / 2;
    // Four `i32` sums per pair of channels; the words are only storage for them.
    let sums = scratch::as_i32(&mut sums[..4 * pairs]);
    let row_bytes = plan.row_bytes();

    for a in (0..pixels).step_by(2) {
        // An odd last pixel is gathered twice and its second result dropped.
        let b = if a + 1 < pixels { a + 1 } else { a };
        let sum_x = [
            im2col(input, geo, plan, a, 0, patch, lanes, tails) as i32,
            im2col(input, geo, plan, b, 1, patch, lanes, tails) as i32,
        ];
        let mut out = Emit { output: &mut *output, pixels: [a, b], channels, sum_x, bits: weights.bits };
        // Every pair of channels in one call, then each pair's tail codes and requantization.
        dot_2xn(lanes, weights.data, row_bytes, plan.format, plan.words, sums);
        let pairs_of_rows = weights.data.chunks_exact(2 * row_bytes);
        let pairs_of_records = requant.records.chunks_exact(2 * CHANNEL_RECORD_BYTES);
        for (q, ((s, rows), records)) in
            sums.chunks_exact(4).zip(pairs_of_rows).zip(pairs_of_records).enumerate()
        {
            let mut acc = [s[0], s[1], s[2], s[3]];
            let (row0, row1) = rows.split_at(row_bytes);
            add_tail(&mut acc, plan, tails, row0, row1);
            let (r0, r1) = records.split_at(CHANNEL_RECORD_BYTES);
            out.put(2 * q, ToCode::new(RequantParams::from_slice(r0), clamp), [acc[0], acc[1]]);
            out.put(2 * q + 1, ToCode::new(RequantParams::from_slice(r1), clamp), [acc[2], acc[3]]);
        }
        if channels % 2 == 1 {
            let (o, r) = (channels - 1, row(weights, row_bytes, channels - 1));
            let mut acc = dot_2x2(lanes, &r[..4 * plan.words], &r[..4 * plan.words], plan.format, plan.words);
            add_tail(&mut acc, plan, tails, r, r);
            out.put(o, ToCode::new(requant.get(o), clamp), [acc[0], acc[1]]);
        }
    }
}

/// Where a pixel pair's outputs go.
struct Emit<'o> {
    output: &'o mut [u8],
    /// The two pixels (equal for an odd last pixel, whose second result is dropped).
    pixels: [usize; 2],
    channels: usize,
    /// Each pixel's patch code sum.
    sum_x: [i32; 2],
    bits: u8,
}

impl Emit<'_> {
    /// Requantizes channel `o`'s two sums of `x * k` and stores them.
    #[inline(always)]
    fn put(&mut self, o: usize, p: ToCode, sums: [i32; 2]) {
        let [a, b] = self.pixels;
        self.output[a * self.channels + o] = p.apply(odd_grid_acc(sums[0], self.sum_x[0], self.bits));
        if b != a {
            self.output[b * self.channels + o] = p.apply(odd_grid_acc(sums[1], self.sum_x[1], self.bits));
        }
    }
}

/// Channel `o`'s weight row.
fn row<'w>(weights: PackedWeights<'w>, row_bytes: usize, o: usize) -> &'w [u8] {
    &weights.data[o * row_bytes..(o + 1) * row_bytes]
}

/// Adds the tail codes' products to `acc` (`[row0 . A, row0 . B, row1 . A, row1 . B]`). The tail codes are
/// the top `tail * bits` bits of each row's last word.
#[inline(always)]
fn add_tail(acc: &mut [i32; 4], plan: &GemmPlan, tails: &[u32], row0: &[u8], row1: &[u8]) {
    let tail = plan.tail;
    if tail == 0 {
        return;
    }
    let bits = plan.format.bits();
    let first = 32 - tail as u32 * bits;
    let (last0, last1) = (le_word(row0, row0.len() - 4), le_word(row1, row1.len() - 4));
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

/// Gathers output pixel `pixel`'s patch into slot `slot` (0 or 1) of the interleaved lanes and the tails;
/// returns the sum of its codes. Padding reads code 0.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
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
    if plan.direct {
        // Lane entries of two pixels per tap: one per code, or ten per 16 codes at two codes per lane.
        let per_tap = if plan.format.is_dot2() { cin / 16 * 10 } else { cin };
        // Every tap is whole words of the lane format: unpack them straight from the input, no copy of the
        // patch. A tap of `cin` codes fills `cin` lane entries (`cin / 2` pairs for each of two pixels).
        for ky in 0..kh {
            for kx in 0..kw {
                let first = (ky * kw + kx) * per_tap;
                let dst = &mut lanes[first..first + per_tap];
                match tap(ky, kx) {
                    Some(src) => to_lanes(src, plan.format, slot, dst, &mut sum),
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
#[inline(always)]
fn to_lanes(codes: &[u8], format: LaneFormat, slot: usize, lanes: &mut [u32], sum: &mut LaneSum) {
    let n = format.codes_per_word();
    if format.is_dot2() {
        // Five entries per 16 codes, two codes per lane (`lanes` module docs): activation `a` in the low
        // 10 bits meets weight `a`'s partner in the weight lane's high field, and the reverse.
        for (d, c) in lanes.chunks_exact_mut(10).zip(codes.chunks_exact(16)) {
            let c: [u32; 16] = core::array::from_fn(|i| c[i] as u32);
            let lane = |lo: u32, hi: u32| lo | hi << 16;
            d[slot] = lane(c[5] | c[0] << 10, c[13] | c[8] << 10);
            d[2 + slot] = lane(c[6] | c[1] << 10, c[14] | c[9] << 10);
            d[4 + slot] = lane(c[7] | c[2] << 10, c[15] | c[10] << 10);
            d[6 + slot] = lane(c[3], c[11]);
            d[8 + slot] = lane(c[4], c[12]);
            sum.add(c.iter().sum());
        }
        sum.fold();
        return;
    }
    if n == 4 {
        // Pairs (c0, c2) and (c1, c3) of each word.
        for (chunk, codes) in lanes.chunks_mut(4 * FOLD_EVERY).zip(codes.chunks(4 * FOLD_EVERY)) {
            for (d, word) in chunk.chunks_exact_mut(4).zip(codes.chunks_exact(4)) {
                let (even, odd) = split_bytes(le_word(word, 0));
                d[slot] = even;
                d[2 + slot] = odd;
                sum.add(even.wrapping_add(odd));
            }
            sum.fold();
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
