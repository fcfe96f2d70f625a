//! 3x3 depthwise convolution (`groups == Cin == Cout`), the MobileNets' spatial filter.
//!
//! Channel by channel and output row by output row: the channel's nine weights are turned into their
//! signed odd-grid values (`2k - (2^bits - 1)`) once and kept in registers, so each output is nine loads and
//! nine multiply-accumulates with no code sum to form; two neighbouring outputs share their weight loads
//! and, at stride 1 or 2, some input columns.
//!
//! On DSP cores, channels go four at a time instead ([`super::dsp::depthwise_group`]): one word load
//! brings a tap's four codes, `UXTB16` splits them into 16-bit lanes, and four 16 x 16 multiply-accumulates
//! (`SMLABB`, `SMLATT`) meet the weights, prepared once per group as signed 16-bit lanes. 4-bit inputs are
//! read in place there, a tap's four codes one halfword.
//!
//! Padding costs nothing in the loop: a window row above or below the input reads a row of zeros (kept in
//! scratch), and a window that overhangs the left or right edge is moved inside the input with its weights
//! shifted to match, the taps that fell off weighted 0.
//!
//! Other packed inputs (below 8 bits) are unpacked into scratch a byte per code: for each output row, the
//! three window rows of just the channels being computed (one, or four on DSP cores).

use super::{to_code, ConvGeometry};
use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{ChannelRequant, RequantParams};
use crate::weights::{max_code, PackedWeights};

/// Bytes of scratch [`depthwise3x3`] needs: one input row of zeros, and when the input is packed three
/// rows of up to four channels unpacked.
pub(super) const fn scratch_bytes(geo: &ConvGeometry) -> usize {
    let unpacked = if crate::codes::codes_per_byte(geo.input_bits) > 1 { 3 * 4 * geo.input.w } else { 0 };
    geo.input.w * geo.input.c + unpacked
}

/// Bytes of scratch the Helium form ([`super::mve::depthwise`]) needs instead of [`scratch_bytes`], in
/// blocks of eight channels (two vectors of four 32-bit lanes, or one of eight 16-bit lanes): the
/// requantization laid out for vector lanes (32 words a block), the gather offsets of the three window
/// columns and a mask (16 words), the signed weights (nine taps of eight 16-bit lanes a block), then one
/// zero-padded window (at most `9 * Cin` bytes) for pixels at the border.
pub(super) const fn helium_scratch_bytes(geo: &ConvGeometry) -> usize {
    super::scratch::ALIGN_SLACK + 4 * helium_scratch_words(geo) + 9 * geo.input.c
}

/// Words at the start of [`helium_scratch_bytes`]: the requantization and the weights, laid out for the
/// lanes.
pub(super) const fn helium_scratch_words(geo: &ConvGeometry) -> usize {
    let blocks = geo.input.c.div_ceil(8);
    32 * blocks + 36 * blocks
}

/// [`super::conv2d`] for a 3x3 depthwise convolution of an input at least 3 columns wide; four channels at
/// a time when `four_channels` (which `select` sets only on DSP cores).
#[allow(clippy::too_many_arguments)]
pub(super) fn depthwise3x3(
    input: Codes<'_>,
    geo: &ConvGeometry,
    four_channels: bool,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    mut output: CodesMut<'_>,
    scratch: &mut [u8],
) {
    let (inp, out, win) = (geo.input, geo.output, &geo.window);
    let ch = inp.c;
    let row_len = inp.w * ch;
    let (zeros, unpacked) = scratch.split_at_mut(row_len);
    zeros.fill(0);
    let zeros = &*zeros;
    let [sy, sx] = [win.stride[0] as usize, win.stride[1] as usize];
    let [top, left] = [win.padding.top as isize, win.padding.left as isize];
    // Output columns whose three taps are all inside the input: `ox_lo..ox_hi`.
    let inside = |ox: usize| {
        let ix0 = (ox * sx) as isize - left;
        ix0 >= 0 && ix0 + 3 <= inp.w as isize
    };
    let ox_lo = (0..out.w).find(|&ox| inside(ox)).unwrap_or(out.w);
    let ox_hi = (ox_lo..out.w).find(|&ox| !inside(ox)).unwrap_or(out.w);
    let offset = max_code(weights.bits);
    // Where the input row under window row `ky` of output row `oy` starts, `None` in the padding.
    let row_start = |oy: usize, ky: usize| {
        let iy = (oy * sy) as isize - top + ky as isize;
        (iy >= 0 && iy < inp.h as isize).then(|| iy as usize * row_len)
    };
    let mut window = Rows { input, unpacked, zeros, width: inp.w, ch, held: [None; 3] };
    // Where output column `ox`'s window starts once moved inside the input, and by how much it moved
    // (`d` in -2..=2, returned as `d + 2`).
    let column = |ox: usize| {
        let ix0 = (ox * sx) as isize - left;
        let base = ix0.clamp(0, inp.w as isize - 3);
        (base as usize, (base - ix0 + 2) as usize)
    };
    if four_channels {
        #[cfg(all(target_arch = "arm", qfd_dsp))]
        {
            let packed = output.is_packed();
            let nibbles = input.is_packed() && crate::codes::storage_bits(input.bits()) == 4;
            for g in 0..ch / 4 {
                // The group's weight lanes for each window shift `d` in -2..=2 (index `d + 2`).
                let weight = |j: usize, t: usize| 2 * weights.code((4 * g + j) * 9 + t) as i32 - offset;
                let sets: [[u32; 18]; 5] = core::array::from_fn(|s| {
                    core::array::from_fn(|i| {
                        let (t, odd) = (i / 2, i % 2);
                        let kx = (t % 3) as isize + s as isize - 2;
                        let w = |j: usize| {
                            if (0..3).contains(&kx) {
                                weight(j, t / 3 * 3 + kx as usize) as u16 as u32
                            } else {
                                0
                            }
                        };
                        w(odd) | w(odd + 2) << 16
                    })
                });
                let p: [RequantParams; 4] = core::array::from_fn(|j| requant.get(4 * g + j));
                for oy in 0..out.h {
                    // 4-bit inputs are read in place, a tap's four codes a halfword (`ch` a multiple of 4:
                    // whole bytes); others a byte per code, unpacked first when packed.
                    let (rows, stride, first) = if nibbles {
                        let rows = core::array::from_fn(|ky| match row_start(oy, ky) {
                            Some(s) => &input.bytes()[s / 2..(s + row_len) / 2],
                            None => zeros,
                        });
                        (rows, ch / 2, 2 * g)
                    } else {
                        window.get(|ky| row_start(oy, ky), 4 * g, 4)
                    };
                    for ox in 0..out.w {
                        let (base, set) = column(ox);
                        let sums = super::dsp::depthwise_group(
                            rows,
                            base * stride + first,
                            stride,
                            &sets[set],
                            nibbles,
                        );
                        let at = (oy * out.w + ox) * ch + 4 * g;
                        let codes: [u8; 4] = core::array::from_fn(|j| code(p[j], clamp, sums[j]));
                        if packed {
                            output.set_run(at, &codes);
                        } else {
                            output.bytes_mut()[at..at + 4].copy_from_slice(&codes);
                        }
                    }
                }
            }
            return;
        }
    }
    for c in 0..ch {
        let w: [i32; 9] = core::array::from_fn(|t| 2 * weights.code(c * 9 + t) as i32 - offset);
        let p = requant.get(c);
        for oy in 0..out.h {
            // `stride` between the codes of neighbouring pixels, the channel's code at `first` of a row.
            let (rows, stride, first) = window.get(|ky| row_start(oy, ky), c, 1);
            let out_row = oy * out.w * ch;
            // Border columns: the window moved inside the input, its weights shifted the other way.
            for ox in (0..ox_lo).chain(ox_hi..out.w) {
                let (base, moved) = column(ox);
                let shifted: [i32; 9] = core::array::from_fn(|t| {
                    let kx = (t % 3 + moved) as isize - 2;
                    if (0..3).contains(&kx) {
                        w[t / 3 * 3 + kx as usize]
                    } else {
                        0
                    }
                });
                output.set(
                    out_row + ox * ch + c,
                    code(p, clamp, one(rows, &shifted, base * stride + first, stride)),
                );
            }
            let mut ox = ox_lo;
            while ox + 1 < ox_hi {
                let i = ((ox * sx) as isize - left) as usize * stride + first;
                let [a, b] = match sx {
                    1 => pair::<1>(rows, &w, i, stride),
                    2 => pair::<2>(rows, &w, i, stride),
                    _ => [one(rows, &w, i, stride), one(rows, &w, i + sx * stride, stride)],
                };
                let [a, b] = to_code::codes(p, clamp, [a, b]);
                output.set(out_row + ox * ch + c, a);
                output.set(out_row + (ox + 1) * ch + c, b);
                ox += 2;
            }
            if ox < ox_hi {
                let i = ((ox * sx) as isize - left) as usize * stride + first;
                output.set(out_row + ox * ch + c, code(p, clamp, one(rows, &w, i, stride)));
            }
        }
    }
}

/// One output whose window starts at index `i` of each of the three input rows (taps `ch` apart).
#[inline(always)]
fn one(rows: [&[u8]; 3], w: &[i32; 9], i: usize, ch: usize) -> i32 {
    let mut acc = 0;
    for (ky, r) in rows.into_iter().enumerate() {
        let r = &r[i..i + 2 * ch + 1];
        acc += r[0] as i32 * w[3 * ky] + r[ch] as i32 * w[3 * ky + 1] + r[2 * ch] as i32 * w[3 * ky + 2];
    }
    acc
}

/// Two horizontally adjacent outputs at stride `SX`, the first window starting at index `i`: the columns
/// they share are loaded once.
#[inline(always)]
fn pair<const SX: usize>(rows: [&[u8]; 3], w: &[i32; 9], i: usize, ch: usize) -> [i32; 2] {
    let [mut a, mut b] = [0i32; 2];
    for (ky, r) in rows.into_iter().enumerate() {
        let r = &r[i..i + (SX + 2) * ch + 1];
        let x: [i32; 5] = core::array::from_fn(|j| if j <= SX + 2 { r[j * ch] as i32 } else { 0 });
        let w = &w[3 * ky..3 * ky + 3];
        a += x[0] * w[0] + x[1] * w[1] + x[2] * w[2];
        b += x[SX] * w[0] + x[SX + 1] * w[1] + x[SX + 2] * w[2];
    }
    [a, b]
}

/// The input rows under one output row's window, a byte per code.
struct Rows<'a, 'b> {
    input: Codes<'a>,
    /// Room for three rows of up to four channels (used when the input is packed).
    unpacked: &'b mut [u8],
    /// A row of zeros, for window rows in the padding.
    zeros: &'b [u8],
    width: usize,
    ch: usize,
    /// What each of the three unpacked rows holds: `(row start, first channel)`. A row that stays under the
    /// window from one output row to the next is unpacked once.
    held: [Option<(usize, usize)>; 3],
}

impl Rows<'_, '_> {
    /// The three rows whose starts `start(ky)` gives (`None`: in the padding), for channels
    /// `first..first + n`: `(rows, stride, at)`, where a pixel's codes are `stride` apart and channel
    /// `first`'s code of pixel 0 is at `at`. Stored a byte per code, that is the input itself (stride `ch`,
    /// at `first`); packed, the `n` channels are unpacked (stride `n`, at 0).
    fn get(
        &mut self,
        start: impl Fn(usize) -> Option<usize>,
        first: usize,
        n: usize,
    ) -> ([&[u8]; 3], usize, usize) {
        let (input, row_len) = (self.input, self.width * self.ch);
        if !input.is_packed() {
            let rows = core::array::from_fn(|ky| match start(ky) {
                Some(s) => &input.bytes()[s..s + row_len],
                None => self.zeros,
            });
            return (rows, self.ch, first);
        }
        let len = self.width * n;
        let wanted: [Option<(usize, usize)>; 3] = core::array::from_fn(|ky| start(ky).map(|s| (s, first)));
        // Which buffer serves each window row: one that holds it already, else one no window row takes.
        let mut slot_of = [usize::MAX; 3];
        for (ky, w) in wanted.iter().enumerate() {
            if w.is_some() {
                if let Some(slot) = self.held.iter().position(|h| h == w) {
                    slot_of[ky] = slot;
                }
            }
        }
        for (ky, &w) in wanted.iter().enumerate() {
            let Some((s, _)) = w else { continue };
            if slot_of[ky] != usize::MAX {
                continue;
            }
            // A slot holding a wanted row was taken above, so any slot not taken yet is free.
            let slot = (0..3).find(|slot| !slot_of.contains(slot)).unwrap_or(ky);
            let buf = &mut self.unpacked[slot * len..(slot + 1) * len];
            input.unpack_strided(s + first, self.ch, n, buf);
            (self.held[slot], slot_of[ky]) = (w, slot);
        }
        let (unpacked, zeros) = (&*self.unpacked, self.zeros);
        let rows = core::array::from_fn(|ky| match wanted[ky] {
            Some(_) => &unpacked[slot_of[ky] * len..(slot_of[ky] + 1) * len],
            None => zeros,
        });
        (rows, n, 0)
    }
}

/// The output code of one accumulator.
#[inline(always)]
fn code(p: RequantParams, clamp: Clamp, acc: i32) -> u8 {
    to_code::codes(p, clamp, [acc])[0]
}
