//! Convolution as a blocked matrix product.
//!
//! Output pixels are taken two at a time. Each pair's patches are gathered (im2col) into scratch as 16-bit
//! lanes in the order the weights unpack to ([`super::lanes`]), together with each patch's code sum. Then
//! output channels are taken two at a time: each pair's four dot products, so every weight word read serves
//! two pixels and every activation lane two channels. One `dot_2xn` call does every pair of a pixel pair;
//! it is the core-specific part: `MLA` in `asm!` on the Cortex-M3 (8-bit), `SMLAD` on DSP cores,
//! `VMLADAVA` on Helium, portable Rust elsewhere. On Helium the patches stay as stored
//! ([`LaneFormat::vector`], gathered by `gather_run`) instead of becoming lanes, and the usual layers run
//! in [`super::mve::conv`]'s leaner loop over the same scratch ([`Scratch`]).

use super::lanes::{le_word, LaneFormat};
use super::select::GemmPlan;
use super::{odd_grid_acc, scratch, to_code, ConvGeometry};
use crate::codes::{storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES};
use crate::weights::PackedWeights;

#[cfg(all(target_arch = "arm", qfd_dsp, not(qfd_mve)))]
use super::dsp::dot_2xn;
use super::lanes::dot_2x2;
#[cfg(not(all(target_arch = "arm", qfd_v7m)))]
use super::lanes::dot_2xn;
#[cfg(all(target_arch = "arm", qfd_v7m, not(qfd_dsp)))]
use super::mla::dot_2xn;
#[cfg(all(target_arch = "arm", qfd_mve))]
use super::mve::dot_2xn;

/// [`super::conv2d`] for a `groups == 1` convolution that `plan` describes.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d(
    input: Codes<'_>,
    geo: &ConvGeometry,
    plan: &GemmPlan,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    mut output: CodesMut<'_>,
    scratch: &mut [u8],
) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if super::mve::conv::conv2d(input, geo, plan, weights, requant, clamp, &mut output, scratch) {
        return;
    }
    let Scratch { staging, patch, lanes, tails, sums, params } = Scratch::split(plan, scratch);
    let (pixels, channels) = (geo.output.h * geo.output.w, geo.output.c);
    let pairs = channels / 2;
    let row_bytes = plan.row_bytes();
    // Helium requantizes four channels an instruction where the layer allows (`None`: the scalar form).
    #[cfg(all(target_arch = "arm", qfd_mve))]
    let vector_clamp = match super::mve::to_code::whole_range_bits(clamp) {
        Some(bits)
            if plan.format.is_vector()
                && super::mve::to_code::channel_vectors(requant, 2 * pairs, params) =>
        {
            Some(bits)
        }
        _ => None,
    };
    #[cfg(not(all(target_arch = "arm", qfd_mve)))]
    let _ = params;

    let odd_row = (channels % 2 == 1).then(|| row(weights, row_bytes, channels - 1));
    for a in (0..pixels).step_by(2) {
        // An odd last pixel is gathered twice and its second result dropped.
        let b = if a + 1 < pixels { a + 1 } else { a };
        // Every pair of channels in one call per chunk of taps, adding to the sums; then each pair's tail
        // codes and requantization.
        let mut odd = [0i32; 4];
        let mut sum_x = [0i32; 2];
        let mut first_tap = 0;
        while first_tap < plan.taps() {
            let taps = first_tap..(first_tap + plan.chunk_taps).min(plan.taps());
            let (words, at) = if plan.direct {
                (taps.len() * plan.tap_words(), 4 * first_tap * plan.tap_words())
            } else {
                (plan.words, 0)
            };
            sum_x[0] += im2col(input, geo, plan, a, 0, taps.clone(), patch, lanes, tails) as i32;
            sum_x[1] += im2col(input, geo, plan, b, 1, taps, patch, lanes, tails) as i32;
            let lanes = &lanes[..2 * plan.format.lanes_per_word() * words];
            dot_2xn(lanes, &weights.data[at..], row_bytes, plan.format, words, sums, first_tap > 0);
            if let Some(r) = odd_row {
                let r = &r[at..(at + 4 * words).min(r.len())];
                let acc = dot_2x2(lanes, r, r, plan.format, words);
                odd.iter_mut().zip(acc).for_each(|(o, a)| *o = o.wrapping_add(a));
            }
            first_tap += plan.chunk_taps;
        }
        // Codes stored a byte each go straight to the output; packed ones wait in `staging` and are packed
        // a pixel at a time below. An odd last pixel's second result goes to `staging` and is dropped.
        let packed = output.is_packed();
        let (out_a, out_b) = if packed {
            staging.split_at_mut(channels)
        } else if b != a {
            output.bytes_mut()[a * channels..(a + 2) * channels].split_at_mut(channels)
        } else {
            (&mut output.bytes_mut()[a * channels..(a + 1) * channels], &mut staging[..channels])
        };
        let bits = weights.bits;
        // Vector formats (chosen on Helium only) keep each pixel's sums in one run and requantize here;
        // the loop below then has no pairs left.
        #[cfg(all(target_arch = "arm", qfd_mve))]
        let pairs = if plan.format.is_vector() {
            let (out_a, out_b) = (&mut out_a[..2 * pairs], &mut out_b[..2 * pairs]);
            helium_codes(sums, params, vector_clamp, requant, clamp, sum_x, bits, out_a, out_b);
            0
        } else {
            pairs
        };
        let pairs_of_rows = weights.data.chunks_exact(2 * row_bytes);
        let pairs_of_records = requant.records.chunks_exact(2 * CHANNEL_RECORD_BYTES);
        let pairs_of_outputs = out_a.chunks_exact_mut(2).zip(out_b.chunks_exact_mut(2));
        for (((s, rows), records), (oa, ob)) in
            sums[..4 * pairs].chunks_exact(4).zip(pairs_of_rows).zip(pairs_of_records).zip(pairs_of_outputs)
        {
            let mut acc = [s[0], s[1], s[2], s[3]];
            let (row0, row1) = rows.split_at(row_bytes);
            add_tail(&mut acc, plan, tails, row0, row1);
            let (r0, r1) = records.split_at(CHANNEL_RECORD_BYTES);
            let [a0, b0] = channel_codes(RequantParams::from_slice(r0), clamp, [acc[0], acc[1]], sum_x, bits);
            let [a1, b1] = channel_codes(RequantParams::from_slice(r1), clamp, [acc[2], acc[3]], sum_x, bits);
            (oa[0], ob[0], oa[1], ob[1]) = (a0, b0, a1, b1);
        }
        if let Some(r) = odd_row {
            add_tail(&mut odd, plan, tails, r, r);
            let [ca, cb] = channel_codes(requant.get(channels - 1), clamp, [odd[0], odd[1]], sum_x, bits);
            (out_a[channels - 1], out_b[channels - 1]) = (ca, cb);
        }
        if packed {
            output.set_run(a * channels, &staging[..channels]);
            if b != a {
                output.set_run(b * channels, &staging[channels..2 * channels]);
            }
        }
    }
}

/// The parts of a [`conv2d`]'s scratch.
pub(super) struct Scratch<'s> {
    /// A pixel pair's output codes, a byte each, waiting to be packed ([`GemmPlan::staging_bytes`]).
    pub staging: &'s mut [u8],
    /// One pixel's gathered patch, for formats that unpack it ([`GemmPlan::patch_bytes`]).
    pub patch: &'s mut [u8],
    /// The im2col lanes of two pixels ([`GemmPlan::lane_entries`]).
    pub lanes: &'s mut [u32],
    /// The two pixels' tail codes.
    pub tails: &'s mut [u32],
    /// The four sums of each pair of output channels (two per channel).
    pub sums: &'s mut [i32],
    /// The requantization laid out for vector lanes ([`GemmPlan::param_words`]).
    pub params: &'s mut [u32],
}

impl<'s> Scratch<'s> {
    /// `scratch` (at least [`GemmPlan::scratch_bytes`]) split for `plan`.
    pub fn split(plan: &GemmPlan, scratch: &'s mut [u8]) -> Self {
        let (staging, rest) = scratch.split_at_mut(plan.staging_bytes());
        let (patch, rest) = rest.split_at_mut(plan.patch_bytes());
        let words = scratch::words(rest, plan.scratch_words());
        let (lanes, rest) = words.split_at_mut(plan.lane_entries());
        let (tails, rest) = rest.split_at_mut(2 * plan.tail);
        let (sums, params) = rest.split_at_mut(rest.len() - plan.param_words());
        // Four `i32` sums per pair of channels; the words are only storage for them.
        let sums = scratch::as_i32(&mut sums[..4 * (plan.channels / 2)]);
        Scratch { staging, patch, lanes, tails, sums, params }
    }
}

/// The codes of a pixel pair's even channels from their sums as [`super::mve::dot_2xn`] lays them out
/// (each channel's at pixel A, then each at pixel B): four channels an instruction when the layer allows
/// (`vector_clamp`, with `params` laid out), else one at a time.
#[cfg(all(target_arch = "arm", qfd_mve))]
#[allow(clippy::too_many_arguments)]
fn helium_codes(
    sums: &[i32],
    params: &[u32],
    vector_clamp: Option<u32>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    sum_x: [i32; 2],
    bits: u8,
    out_a: &mut [u8],
    out_b: &mut [u8],
) {
    if let Some(clamp_bits) = vector_clamp {
        let grid = sum_x.map(|x| crate::weights::max_code(bits).wrapping_mul(x));
        return super::mve::to_code::codes_2px(sums, params, grid, clamp_bits, out_a, out_b);
    }
    let (at_a, at_b) = sums.split_at(out_a.len());
    for (c, (oa, ob)) in out_a.iter_mut().zip(out_b).enumerate() {
        [*oa, *ob] = channel_codes(requant.get(c), clamp, [at_a[c], at_b[c]], sum_x, bits);
    }
}

/// One channel's codes at the two pixels, from its two sums of `x * k` and the pixels' code sums.
#[inline(always)]
fn channel_codes(p: RequantParams, clamp: Clamp, sums: [i32; 2], sum_x: [i32; 2], bits: u8) -> [u8; 2] {
    to_code::codes(p, clamp, [odd_grid_acc(sums[0], sum_x[0], bits), odd_grid_acc(sums[1], sum_x[1], bits)])
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
    // Each row's tail codes, the next one lowest; shifted along code by code. (This form, with a shift
    // carried from one code to the next, is also the one that stays scalar: the Cortex-M55 build vectorized
    // the earlier per-code shifts with Helium, and under QEMU that loop gave wrong sums.)
    let (mut k0s, mut k1s) = (le_word(row0, row0.len() - 4) >> first, le_word(row1, row1.len() - 4) >> first);
    let mask = (1u32 << bits) - 1;
    for (&xa, &xb) in tails[..tail].iter().zip(&tails[tail..2 * tail]) {
        let (k0, k1) = ((k0s & mask) as i32, (k1s & mask) as i32);
        (k0s, k1s) = (k0s >> bits, k1s >> bits);
        let (xa, xb) = (xa as i32, xb as i32);
        acc[0] = acc[0].wrapping_add(xa * k0);
        acc[1] = acc[1].wrapping_add(xb * k0);
        acc[2] = acc[2].wrapping_add(xa * k1);
        acc[3] = acc[3].wrapping_add(xb * k1);
    }
}

/// Gathers taps `taps` of output pixel `pixel`'s patch into slot `slot` (0 or 1) of the interleaved lanes
/// (and the tails); returns the sum of their codes. Padding reads code 0. Only a direct im2col gathers a
/// part of the taps; the others always gather all.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn im2col(
    input: Codes<'_>,
    geo: &ConvGeometry,
    plan: &GemmPlan,
    pixel: usize,
    slot: usize,
    taps: core::ops::Range<usize>,
    patch: &mut [u8],
    lanes: &mut [u32],
    tails: &mut [u32],
) -> u32 {
    let (inp, win) = (geo.input, &geo.window);
    let kw = win.kernel[1] as usize;
    let [y0, x0] = window_origin(geo, pixel);
    let cin = inp.c;
    // Where tap (ky, kx)'s codes start in the input, or `None` in the padding.
    let tap = |ky: usize, kx: usize| {
        let (iy, ix) = (y0 + ky as isize, x0 + kx as isize);
        let inside = iy >= 0 && iy < inp.h as isize && ix >= 0 && ix < inp.w as isize;
        inside.then(|| (iy as usize * inp.w + ix as usize) * cin)
    };

    if plan.format.is_vector() {
        return gather_run(input, geo, plan, pixel, slot, lanes);
    }
    let mut sum = LaneSum::default();
    if plan.direct {
        // Lane entries of two pixels per tap: one per code, or ten per 16 codes at two codes per lane.
        let per_tap = if plan.format.is_dot2() { cin / 16 * 10 } else { cin };
        // Every tap is whole words of the lane format: unpack them straight from the input, no copy of the
        // patch. A tap of `cin` codes fills `cin` lane entries (`cin / 2` pairs for each of two pixels).
        for t in taps.clone() {
            let (ky, kx) = (t / kw, t % kw);
            let first = (t - taps.start) * per_tap;
            let dst = &mut lanes[first..first + per_tap];
            match tap(ky, kx) {
                // `select` plans a direct im2col only for inputs stored a byte per code or packed as the
                // weights are; a tap is then whole words.
                Some(start) if input.is_packed() => {
                    let bits = storage_bits(input.bits()) as usize;
                    let words = &input.bytes()[start * bits / 8..(start + cin) * bits / 8];
                    packed_to_lanes(words, plan.format, slot, dst, &mut sum)
                }
                Some(start) => to_lanes(&input.bytes()[start..start + cin], plan.format, slot, dst, &mut sum),
                None => dst.chunks_exact_mut(2).for_each(|d| d[slot] = 0),
            }
        }
        return sum.total();
    }

    gather::<0>(input, geo, pixel, patch);
    let (full, tail) = (plan.full(), plan.tail);
    for t in 0..tail {
        let code = patch[full + t] as u32;
        tails[slot * tail + t] = code;
        sum.add(code);
    }
    to_lanes(&patch[..full], plan.format, slot, lanes, &mut sum);
    sum.total()
}

/// [`im2col`] for [`LaneFormat::vector`] (Helium): the patch is gathered straight into the pixel's run of
/// lanes, whole words (a patch that ends inside its last word is padded with 0), as bytes or, at 4 and 2
/// bits, as the input stores its codes; returns its code sum. Out of line, so that it leaves the other forms' code
/// as it was.
#[inline(never)]
pub(super) fn gather_run(
    input: Codes<'_>,
    geo: &ConvGeometry,
    plan: &GemmPlan,
    pixel: usize,
    slot: usize,
    lanes: &mut [u32],
) -> u32 {
    let run = scratch::bytes_mut(&mut lanes[slot * plan.words..(slot + 1) * plan.words]);
    // A window inside an input stored as the format reads it: its rows copied as they are, one loop, which
    // also sums their bytes.
    #[cfg(all(target_arch = "arm", qfd_mve))]
    let byte_sum = match storage_bits(input.bits()) == plan.format.bits() {
        true => window_rows(input, geo, pixel, run),
        false => None,
    };
    #[cfg(not(all(target_arch = "arm", qfd_mve)))]
    let byte_sum: Option<u32> = None;
    // Codes per byte, as a shift: 8-bit codes a byte each, 4 and 2-bit ones packed as the input stores them.
    match plan.format.bits() {
        _ if byte_sum.is_some() => {}
        4 => gather::<1>(input, geo, pixel, run),
        2 => gather::<2>(input, geo, pixel, run),
        _ => gather::<0>(input, geo, pixel, run),
    }
    let used = plan.patch >> (3 - plan.format.bits().trailing_zeros());
    // At most three bytes: a loop, not `fill` (a `memset` call costs dozens of instructions).
    run[used..].iter_mut().for_each(|b| *b = 0);
    #[cfg(all(target_arch = "arm", qfd_mve))]
    return match (plan.format.bits(), byte_sum) {
        (4, _) => super::mve::code_sum::<4>(&run[..used]),
        (2, _) => super::mve::code_sum::<2>(&run[..used]),
        (_, Some(sum)) => sum,
        _ => super::mve::code_sum::<8>(&run[..used]),
    };
    // (Never reached: vector formats are chosen on Helium builds only.)
    #[cfg(not(all(target_arch = "arm", qfd_mve)))]
    Codes::new(&run[..used], plan.format.bits() as u8).iter_from(0).take(plan.patch).map(u32::from).sum()
}

/// Copies output pixel `pixel`'s patch into `target` if its window lies wholly inside the input, which
/// stores its codes as they are to be read ([`LaneFormat::vector`]); returns the sum of the bytes copied
/// if it did.
#[cfg(all(target_arch = "arm", qfd_mve))]
#[inline(always)]
fn window_rows(input: Codes<'_>, geo: &ConvGeometry, pixel: usize, target: &mut [u8]) -> Option<u32> {
    let (inp, win) = (geo.input, &geo.window);
    let [kh, kw] = [win.kernel[0] as usize, win.kernel[1] as usize];
    let [y0, x0] = window_origin(geo, pixel);
    if y0 < 0 || x0 < 0 || y0 as usize + kh > inp.h || x0 as usize + kw > inp.w {
        return None;
    }
    // Codes per byte, as a shift (whole bytes per tap, as `select` plans vector formats).
    let shift = 3 - storage_bits(input.bits()).trailing_zeros();
    let (row_len, stride) = ((kw * inp.c) >> shift, (inp.w * inp.c) >> shift);
    let start = ((y0 as usize * inp.w + x0 as usize) * inp.c) >> shift;
    let src = &input.bytes()[start..start + (kh - 1) * stride + row_len];
    Some(super::mve::copy_rows(src, stride, kh, row_len, &mut target[..kh * row_len]))
}

/// Where output pixel `pixel`'s window starts in the input, as `[row, column]` (negative in the padding).
#[inline(always)]
fn window_origin(geo: &ConvGeometry, pixel: usize) -> [isize; 2] {
    let win = &geo.window;
    let (oy, ox) = (pixel / geo.output.w, pixel % geo.output.w);
    let y0 = (oy * win.stride[0] as usize) as isize - win.padding.top as isize;
    let x0 = (ox * win.stride[1] as usize) as isize - win.padding.left as isize;
    [y0, x0]
}

/// Gathers output pixel `pixel`'s patch into `target`: every row of the window as one run when it lies
/// inside the input, else tap by tap (padding reads code 0). A byte per code (`SHIFT` 0), or the 4-bit or
/// 2-bit codes as the input stores them, `1 << SHIFT` to a byte (`Cin` a multiple of that, so that every tap
/// starts on a byte).
#[inline(always)]
fn gather<const SHIFT: usize>(input: Codes<'_>, geo: &ConvGeometry, pixel: usize, target: &mut [u8]) {
    let (inp, win) = (geo.input, &geo.window);
    let [kh, kw] = [win.kernel[0] as usize, win.kernel[1] as usize];
    let [y0, x0] = window_origin(geo, pixel);
    let cin = inp.c;
    // Codes `start..start + dst.len()` (or their bytes) into `dst`.
    let copy = |start: usize, dst: &mut [u8]| {
        if SHIFT > 0 {
            copy_bytes(&input.bytes()[start >> SHIFT..(start >> SHIFT) + dst.len()], dst);
        } else {
            copy_codes(input, start, dst);
        }
    };
    let shift = SHIFT;
    for ky in 0..kh {
        let dst = &mut target[(ky * kw * cin) >> shift..((ky + 1) * kw * cin) >> shift];
        let iy = y0 + ky as isize;
        let row_in = iy >= 0 && iy < inp.h as isize;
        if row_in && x0 >= 0 && x0 + kw as isize <= inp.w as isize {
            // The window's row lies inside the input: its taps are one contiguous run of `kw * cin` codes.
            copy((iy as usize * inp.w + x0 as usize) * cin, dst);
            continue;
        }
        for (kx, dst) in dst.chunks_exact_mut(cin >> shift).enumerate() {
            let ix = x0 + kx as isize;
            if row_in && ix >= 0 && ix < inp.w as isize {
                copy((iy as usize * inp.w + ix as usize) * cin, dst);
            } else {
                dst.fill(0);
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, with Helium's vector copy where there is one (`memcpy` does short,
/// misaligned runs a byte or a word at a time).
#[inline(always)]
fn copy_bytes(src: &[u8], dst: &mut [u8]) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    super::mve::copy(src, dst);
    #[cfg(not(all(target_arch = "arm", qfd_mve)))]
    dst.copy_from_slice(src);
}

/// Copies codes `start..start + dst.len()` of `input` into `dst`, one per byte.
#[inline(always)]
fn copy_codes(input: Codes<'_>, start: usize, dst: &mut [u8]) {
    if input.is_packed() {
        input.unpack(start, dst);
    } else if cfg!(all(target_arch = "arm", qfd_mve)) {
        copy_bytes(&input.bytes()[start..start + dst.len()], dst);
    } else {
        // A loop, not `copy_from_slice`: runs are a few bytes (the 3-channel stem), too short for memcpy.
        let src = &input.bytes()[start..start + dst.len()];
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
    }
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

/// [`to_lanes`] for codes packed as the weights are (`format.bits()` per code, or 2 bits in the
/// two-codes-per-lane format): each word splits into lanes the way a weight word does, with shifts and masks.
#[inline(always)]
fn packed_to_lanes(words: &[u8], format: LaneFormat, slot: usize, lanes: &mut [u32], sum: &mut LaneSum) {
    if format.is_dot2() {
        // 16 codes per word, five entries (see `to_lanes`): activation code `a` low and its partner `a - 5`
        // (or `a - 8`) 10 bits up, in each half.
        const LOW: u32 = 0x0003_0003;
        const HIGH: u32 = 0x0c00_0c00;
        for (d, w) in lanes.chunks_exact_mut(10).zip(words.chunks_exact(4)) {
            let w = le_word(w, 0);
            d[slot] = (w >> 10) & LOW | (w << 10) & HIGH;
            d[2 + slot] = (w >> 12) & LOW | (w << 8) & HIGH;
            d[4 + slot] = (w >> 14) & LOW | (w << 6) & HIGH;
            d[6 + slot] = (w >> 6) & LOW;
            d[8 + slot] = (w >> 8) & LOW;
            // The sum of the 16 codes: pairs, then nibbles, then bytes into two 16-bit lanes.
            let pairs = (w & 0x3333_3333) + ((w >> 2) & 0x3333_3333);
            let nibbles = (pairs & 0x0f0f_0f0f) + ((pairs >> 4) & 0x0f0f_0f0f);
            sum.add(split_bytes(nibbles).0.wrapping_add(split_bytes(nibbles).1));
        }
        sum.fold();
        return;
    }
    match format.bits() {
        4 => packed_words_to_lanes::<4>(words, slot, lanes, sum),
        2 => packed_words_to_lanes::<2>(words, slot, lanes, sum),
        _ => packed_words_to_lanes::<1>(words, slot, lanes, sum),
    }
}

/// [`packed_to_lanes`] at `BITS` bits a code: lane pair `j` of a word is `(word >> (j * BITS)) & mask`,
/// exactly as for a weight word.
#[inline(always)]
fn packed_words_to_lanes<const BITS: u32>(words: &[u8], slot: usize, lanes: &mut [u32], sum: &mut LaneSum) {
    let per_word = (16 / BITS) as usize;
    let mask = ((1u32 << BITS) - 1) * 0x0001_0001;
    let lanes = &mut lanes[..2 * per_word * (words.len() / 4)];
    for (d, w) in lanes.chunks_exact_mut(2 * per_word).zip(words.chunks_exact(4)) {
        let w = le_word(w, 0);
        let mut pairs = 0;
        for j in 0..per_word {
            let pair = (w >> (j as u32 * BITS)) & mask;
            d[2 * j + slot] = pair;
            pairs += pair;
        }
        // At most 16 codes of at most 15 per lane: no lane overflows.
        sum.add(pairs);
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
