//! 3x3 depthwise convolution on Helium: four channels across the lanes of a vector, one output pixel at a
//! time. Per block of four channels and tap, a gather load brings the tap's four codes (`VLDRB.U32` at
//! per-lane offsets from the window row), a widening load the four channels' signed odd-grid weights
//! (`2k - (2^bits - 1)`, laid out once per layer in scratch as 16-bit lanes), and `VMUL`/`VADD` add the
//! products; the block's accumulators are then requantized as [`super::to_code`] does, four codes an
//! instruction, and stored with a narrowing store. The loop over blocks is tail-predicated (`DLSTP.32`),
//! so any channel count works.
//!
//! A window inside the input is read in place; one that overhangs the border is first copied into a
//! zero-padded `3 x 3 x Cin` window in scratch.
//!
//! The byte-stored form only: 8-bit storage for inputs, weights and outputs, a whole-range clamp and the
//! usual requantization ([`super::to_code::channel_vectors`]); [`depthwise3x3`] returns `false` for other
//! layers, which take the DSP form.
#![allow(unsafe_code)]

use super::to_code::{channel_vectors, channel_vectors_by, whole_range_bits};
use crate::codes::{storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{scratch, ConvGeometry};
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

/// How a layer's codes are stored, as this module runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A byte per code throughout: four channels a block, 32-bit lanes.
    Bytes,
    /// 4-bit inputs and outputs, weights of at most 4 bits: eight channels a block in 16-bit lanes,
    /// where nine products of at most `15 * 15` (the odd channels' at 16 times that, see
    /// [`pixel_nibbles`]) cannot overflow.
    Nibbles,
}

/// The layer in `scratch` (at least [`crate::kernels::depthwise::helium_scratch_bytes`] bytes); returns
/// whether it ran (see the module documentation).
#[allow(clippy::too_many_arguments)]
pub fn depthwise3x3(
    input: Codes<'_>,
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: &mut CodesMut<'_>,
    scratch: &mut [u8],
) -> bool {
    let ch = geo.input.c;
    let form = match [input.bits(), weights.bits, output.bits()].map(storage_bits) {
        [8, 8, 8] => Form::Bytes,
        [4, w, 4] if w <= 4 && ch % 2 == 0 => Form::Nibbles,
        _ => return false,
    };
    let Some(clamp_bits) = whole_range_bits(clamp) else {
        return false;
    };
    let (words, window) = scratch.split_at_mut(scratch.len() - 9 * ch);
    let blocks = ch.div_ceil(8);
    let words = scratch::words(words, crate::kernels::depthwise::helium_scratch_words(geo));
    let (params, rest) = words.split_at_mut(32 * blocks);
    let (offsets, signed) = rest.split_at_mut(16);
    let signed = scratch::halves_mut(signed);
    let top = max_code(weights.bits);
    let weight = |c: usize, t: usize| (2 * weights.code(c * 9 + t) as i32 - top) as i16 as u16;
    // Per form: the requantization, the gather offsets (and mask) and the signed weights, laid out for the
    // lanes; the bytes of a pixel's codes.
    let pixel_bytes = match form {
        Form::Bytes => {
            if !channel_vectors(requant, ch, params) {
                return false;
            }
            // Window column `kx`, lane `j`: byte `kx * Cin + j`.
            for (i, o) in offsets[..12].iter_mut().enumerate() {
                *o = ((i / 4) * ch + i % 4) as u32;
            }
            // Block `b`, tap `t`, lane `j` at `(b * 9 + t) * 4 + j` (0 past the last channel).
            for (i, w) in signed[..36 * ch.div_ceil(4)].iter_mut().enumerate() {
                let c = 4 * (i / 36) + i % 4;
                *w = if c < ch { weight(c, i / 4 % 9) } else { 0 };
            }
            ch
        }
        Form::Nibbles => {
            // Block `b`'s even channels in one vector, its odd ones in the next.
            let order = |slot: usize| 8 * (slot / 8) + 2 * (slot % 4) + slot / 4 % 2;
            if clamp_bits != 4 || !channel_vectors_by(requant, ch, 8 * blocks, params, order) {
                return false;
            }
            // Window column `kx`, 16-bit lane `j`: byte `kx * Cin / 2 + j / 2`; then the mask of lane `j`'s
            // code in its byte.
            let halves = scratch::halves_mut(offsets);
            for (i, o) in halves[..24].iter_mut().enumerate() {
                *o = ((i / 8) * ch / 2 + i % 8 / 2) as u16;
            }
            for (j, m) in halves[24..].iter_mut().enumerate() {
                *m = if j % 2 == 0 { 0x0f } else { 0xf0 };
            }
            // Block `b`, tap `t`, lane `j` at `(b * 9 + t) * 8 + j`.
            for (i, w) in signed[..72 * blocks].iter_mut().enumerate() {
                let c = 8 * (i / 72) + i % 8;
                *w = if c < ch { weight(c, i / 8 % 9) } else { 0 };
            }
            ch / 2
        }
    };
    let (inp, out, win) = (geo.input, geo.output, &geo.window);
    let row_len = inp.w * pixel_bytes;
    let codes = input.bytes();
    let out_bytes = output.bytes_mut();
    let window = &mut window[..9 * pixel_bytes];
    for oy in 0..out.h {
        let iy0 = (oy * win.stride[0] as usize) as isize - win.padding.top as isize;
        for ox in 0..out.w {
            let ix0 = (ox * win.stride[1] as usize) as isize - win.padding.left as isize;
            let inside = iy0 >= 0 && iy0 + 3 <= inp.h as isize && ix0 >= 0 && ix0 + 3 <= inp.w as isize;
            // The window's three rows, three pixels each, as slices of the input or of the padded copy.
            let rows: [&[u8]; 3] = if inside {
                let start = (iy0 as usize * inp.w + ix0 as usize) * pixel_bytes;
                core::array::from_fn(|ky| {
                    &codes[start + ky * row_len..start + ky * row_len + 3 * pixel_bytes]
                })
            } else {
                for (t, dst) in window.chunks_exact_mut(pixel_bytes).enumerate() {
                    let (iy, ix) = (iy0 + (t / 3) as isize, ix0 + (t % 3) as isize);
                    if iy >= 0 && iy < inp.h as isize && ix >= 0 && ix < inp.w as isize {
                        let at = (iy as usize * inp.w + ix as usize) * pixel_bytes;
                        super::copy(&codes[at..at + pixel_bytes], dst);
                    } else {
                        dst.fill(0);
                    }
                }
                let window = &*window;
                core::array::from_fn(|ky| &window[3 * ky * pixel_bytes..3 * (ky + 1) * pixel_bytes])
            };
            let at = (oy * out.w + ox) * pixel_bytes;
            let pixel = &mut out_bytes[at..at + pixel_bytes];
            match (form, clamp_bits) {
                (Form::Nibbles, _) => pixel_nibbles(rows, signed, params, offsets, pixel),
                (_, 1) => pixel_bytes_loop::<31>(rows, signed, params, offsets, pixel),
                (_, 2) => pixel_bytes_loop::<30>(rows, signed, params, offsets, pixel),
                (_, 4) => pixel_bytes_loop::<28>(rows, signed, params, offsets, pixel),
                _ => pixel_bytes_loop::<24>(rows, signed, params, offsets, pixel),
            }
        }
    }
    true
}

/// One window row's three taps for a block: each tap's codes gathered from `$x` at the offsets in `q5`,
/// `q6`, `q7`, times the next weights of `r1`, added to `q0` (set by the first tap when `$first`).
macro_rules! window_row {
    ($x:literal, $first:literal) => {
        concat!(
            "vldrb.u32 q1, [",
            $x,
            ", q5]\n",
            "vldrh.s32 q2, [r1], #8\n",
            $first,
            "vldrb.u32 q1, [",
            $x,
            ", q6]\n",
            "vldrh.s32 q2, [r1], #8\n",
            "vmul.i32 q1, q1, q2\n",
            "vadd.i32 q0, q0, q1\n",
            "vldrb.u32 q1, [",
            $x,
            ", q7]\n",
            "vldrh.s32 q2, [r1], #8\n",
            "vmul.i32 q1, q1, q2\n",
            "vadd.i32 q0, q0, q1\n",
            "adds ",
            $x,
            ", #4\n",
        )
    };
}

/// The codes of one output pixel's `pixel.len()` channels, with the clamp as `SAT = 32 - b`: `rows` the
/// window's rows (`3 * Cin` codes each), `signed` and `params` the layer's weights and requantization,
/// `offsets` the gather offsets, as [`depthwise3x3`] lays them out.
fn pixel_bytes_loop<const SAT: u32>(
    rows: [&[u8]; 3],
    signed: &[u16],
    params: &[u32],
    offsets: &[u32],
    pixel: &mut [u8],
) {
    let ch = pixel.len();
    let blocks = ch.div_ceil(4);
    assert!(rows.iter().all(|r| r.len() == 3 * ch) && offsets.len() >= 12);
    assert!(signed.len() >= 36 * blocks && params.len() >= 16 * blocks);
    // SAFETY: the tail-predicated loop runs over `ch` lanes, four channels a pass: the gathers read codes
    // `kx * ch + c` of each row (`c < ch`, `kx < 3`: inside the row, as asserted); the weight and parameter
    // loads read a block's 36 halfwords and 16 words (inside `signed` and `params`); `offsets` is read
    // whole; the store writes `ch` bytes of `pixel`. It also writes the pointers it advances (copies),
    // `lr` and `q0`-`q7`, all declared.
    unsafe {
        asm_all_q!({
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q5, [{off}]",
            "vldrw.u32 q6, [{off}, #16]",
            "vldrw.u32 q7, [{off}, #32]",
            window_row!("{x0}", "vmul.i32 q0, q1, q2\n"),
            window_row!("{x1}", "vmul.i32 q1, q1, q2\nvadd.i32 q0, q0, q1\n"),
            window_row!("{x2}", "vmul.i32 q1, q1, q2\nvadd.i32 q0, q0, q1\n"),
            "vldrw.u32 q2, [{p}], #16",
            "vldrw.u32 q3, [{p}], #16",
            "vldrw.u32 q4, [{p}], #16",
            "vldrw.u32 q5, [{p}], #16",
            requant_vector!("q0", "r0"),
            "letp lr, 2b",
            n = in(reg) ch,
            x0 = inout(reg) rows[0].as_ptr() => _,
            x1 = inout(reg) rows[1].as_ptr() => _,
            x2 = inout(reg) rows[2].as_ptr() => _,
            off = in(reg) offsets.as_ptr(),
            p = inout(reg) params.as_ptr() => _,
            // (Widening loads and narrowing stores take a low register as their base.)
            inout("r0") pixel.as_mut_ptr() => _,
            inout("r1") signed.as_ptr() => _,
            one = in(reg) 1u32,
            sat = const SAT,
            out("lr") _,
        } options(nostack));
    }
}

/// One window row's three taps for a block of eight 4-bit channels: each tap's bytes gathered from `$x` at
/// the 16-bit offsets in `q5`, `q6`, `q7`, each lane's code masked out of its byte by `q3` (even channels
/// low, odd channels high, so at 16 times their value), times the next weights of `r1`, added to `q0`
/// (set by the first tap when `$first`).
macro_rules! window_row_nibbles {
    ($x:literal, $first:literal) => {
        concat!(
            "vldrb.u16 q1, [",
            $x,
            ", q5]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            $first,
            "vldrb.u16 q1, [",
            $x,
            ", q6]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            "vmul.i16 q1, q1, q2\n",
            "vadd.i16 q0, q0, q1\n",
            "vldrb.u16 q1, [",
            $x,
            ", q7]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            "vmul.i16 q1, q1, q2\n",
            "vadd.i16 q0, q0, q1\n",
            "adds ",
            $x,
            ", #4\n",
        )
    };
}

/// The codes of one output pixel's channels (`2 * pixel.len()`, packed two to a byte) for
/// [`Form::Nibbles`]: sums in 16-bit lanes (an odd channel's at 16 times its value: its code is masked in
/// place, high in its byte, and shifted down once, after the nine taps), then widened into the even
/// channels' and the odd channels' 32-bit lanes, requantized, and packed back into bytes.
fn pixel_nibbles(rows: [&[u8]; 3], signed: &[u16], params: &[u32], offsets: &[u32], pixel: &mut [u8]) {
    let ch = 2 * pixel.len();
    let blocks = ch.div_ceil(8);
    assert!(rows.iter().all(|r| r.len() == 3 * ch / 2) && offsets.len() >= 16);
    assert!(signed.len() >= 72 * blocks && params.len() >= 32 * blocks);
    // SAFETY: the tail-predicated loop runs over `ch` 16-bit lanes, eight channels a pass: the gathers read
    // bytes `kx * ch / 2 + j / 2` of each row (`j < ch` active lanes, `kx < 3`: inside the row, as
    // asserted); the weight and parameter loads read a block's 72 halfwords and 32 words (inside `signed`
    // and `params`); `offsets` is read whole; the store writes `ch / 2` bytes of `pixel`. It also writes
    // the pointers it advances (copies), `lr` and `q0`-`q7`, all declared.
    unsafe {
        asm_all_q!({
            "dlstp.16 lr, {n}",
            "2:",
            "vldrw.u32 q3, [{off}, #48]",
            "vldrw.u32 q5, [{off}]",
            "vldrw.u32 q6, [{off}, #16]",
            "vldrw.u32 q7, [{off}, #32]",
            window_row_nibbles!("{x0}", "vmul.i16 q0, q1, q2\n"),
            window_row_nibbles!("{x1}", "vmul.i16 q1, q1, q2\nvadd.i16 q0, q0, q1\n"),
            window_row_nibbles!("{x2}", "vmul.i16 q1, q1, q2\nvadd.i16 q0, q0, q1\n"),
            "vmovlt.s16 q1, q0",
            "vmovlb.s16 q0, q0",
            "vshr.s32 q1, q1, #4",
            "vldrw.u32 q2, [{p}], #16",
            "vldrw.u32 q3, [{p}], #16",
            "vldrw.u32 q4, [{p}], #16",
            "vldrw.u32 q5, [{p}], #16",
            requant_vector!("q0"),
            "vldrw.u32 q2, [{p}], #16",
            "vldrw.u32 q3, [{p}], #16",
            "vldrw.u32 q4, [{p}], #16",
            "vldrw.u32 q5, [{p}], #16",
            requant_vector!("q1"),
            "vshl.i32 q1, q1, #4",
            "vorr q0, q0, q1",
            "vstrb.32 q0, [r0], #4",
            "letp lr, 2b",
            n = in(reg) ch,
            x0 = inout(reg) rows[0].as_ptr() => _,
            x1 = inout(reg) rows[1].as_ptr() => _,
            x2 = inout(reg) rows[2].as_ptr() => _,
            off = in(reg) offsets.as_ptr(),
            p = inout(reg) params.as_ptr() => _,
            // (Narrowing stores take a low register as their base.)
            inout("r0") pixel.as_mut_ptr() => _,
            inout("r1") signed.as_ptr() => _,
            one = in(reg) 1u32,
            sat = const 28,
            out("lr") _,
        } options(nostack));
    }
}
