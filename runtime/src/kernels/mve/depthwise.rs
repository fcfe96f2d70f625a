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

use core::arch::asm;

use super::to_code::{channel_vectors, whole_range_bits};
use crate::codes::{storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{scratch, ConvGeometry};
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

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
    let blocks = ch.div_ceil(4);
    let bytes = [input.bits(), weights.bits, output.bits()].iter().all(|&b| storage_bits(b) == 8);
    let Some(clamp_bits) = whole_range_bits(clamp).filter(|_| bytes) else {
        return false;
    };
    let (words, window) = scratch.split_at_mut(scratch.len() - 9 * ch);
    let words = scratch::words(words, 16 * blocks + 12 + 18 * blocks);
    let (params, rest) = words.split_at_mut(16 * blocks);
    let (offsets, signed) = rest.split_at_mut(12);
    if !channel_vectors(requant, ch, params) {
        return false;
    }
    // Gather offsets of window column `kx`, lane `j`: `kx * Cin + j`.
    for (i, o) in offsets.iter_mut().enumerate() {
        *o = ((i / 4) * ch + i % 4) as u32;
    }
    // Signed weights, block by block: tap `t`, lane `j` at `(block * 9 + t) * 4 + j` (0 past the last
    // channel).
    let signed = scratch::halves_mut(signed);
    let top = max_code(weights.bits);
    for (i, w) in signed.iter_mut().enumerate() {
        let (block, t, j) = (i / 36, i / 4 % 9, i % 4);
        let c = 4 * block + j;
        *w = if c < ch { (2 * weights.code(c * 9 + t) as i32 - top) as i16 as u16 } else { 0 };
    }
    let (inp, out, win) = (geo.input, geo.output, &geo.window);
    let row_len = inp.w * ch;
    let codes = input.bytes();
    let out_bytes = output.bytes_mut();
    for oy in 0..out.h {
        let iy0 = (oy * win.stride[0] as usize) as isize - win.padding.top as isize;
        for ox in 0..out.w {
            let ix0 = (ox * win.stride[1] as usize) as isize - win.padding.left as isize;
            let inside = iy0 >= 0 && iy0 + 3 <= inp.h as isize && ix0 >= 0 && ix0 + 3 <= inp.w as isize;
            // The window's three rows, `3 * Cin` codes each, as slices of the input or of the padded copy.
            let rows: [&[u8]; 3] = if inside {
                let start = (iy0 as usize * inp.w + ix0 as usize) * ch;
                core::array::from_fn(|ky| &codes[start + ky * row_len..start + ky * row_len + 3 * ch])
            } else {
                for (t, dst) in window.chunks_exact_mut(ch).enumerate() {
                    let (iy, ix) = (iy0 + (t / 3) as isize, ix0 + (t % 3) as isize);
                    if iy >= 0 && iy < inp.h as isize && ix >= 0 && ix < inp.w as isize {
                        let at = (iy as usize * inp.w + ix as usize) * ch;
                        super::copy(&codes[at..at + ch], dst);
                    } else {
                        dst.fill(0);
                    }
                }
                let window = &*window;
                core::array::from_fn(|ky| &window[3 * ky * ch..3 * (ky + 1) * ch])
            };
            let at = (oy * out.w + ox) * ch;
            let pixel = &mut out_bytes[at..at + ch];
            match clamp_bits {
                1 => pixel_loop::<31>(rows, signed, params, offsets, pixel),
                2 => pixel_loop::<30>(rows, signed, params, offsets, pixel),
                4 => pixel_loop::<28>(rows, signed, params, offsets, pixel),
                _ => pixel_loop::<24>(rows, signed, params, offsets, pixel),
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
fn pixel_loop<const SAT: u32>(
    rows: [&[u8]; 3],
    signed: &[u16],
    params: &[u32],
    offsets: &[u32],
    pixel: &mut [u8],
) {
    let ch = pixel.len();
    let blocks = ch.div_ceil(4);
    assert!(rows.iter().all(|r| r.len() == 3 * ch) && offsets.len() == 12);
    assert!(signed.len() >= 36 * blocks && params.len() >= 16 * blocks);
    // SAFETY: the tail-predicated loop runs over `ch` lanes, four channels a pass: the gathers read codes
    // `kx * ch + c` of each row (`c < ch`, `kx < 3`: inside the row, as asserted); the weight and parameter
    // loads read a block's 36 halfwords and 16 words (inside `signed` and `params`); `offsets` is read
    // whole; the store writes `ch` bytes of `pixel`. It also writes the pointers it advances (copies),
    // `lr` and `q0`-`q7`, all declared.
    unsafe {
        asm!(
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
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            out("d4") _,
            out("d5") _,
            out("d6") _,
            out("d7") _,
            out("d8") _,
            out("d9") _,
            out("d10") _,
            out("d11") _,
            out("d12") _,
            out("d13") _,
            out("d14") _,
            out("d15") _,
            options(nostack),
        );
    }
}
