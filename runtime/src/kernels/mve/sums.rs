//! The head of the CNNs on Helium: the global sum pool and the fully connected layer over its sums.
//!
//! - [`global_sum_pool`]: four channels a vector, each pixel's codes of the block one widening load
//!   (`VLDRB.U32`) and one `VADD` (packed codes: a gather, a shift and a mask more); the loop over blocks
//!   is tail-predicated, the loop over pixels inside it a plain one.
//! - [`fully_connected_sums`]: each output a dot product of the sums with its weight row, four products
//!   an instruction (`VMLADAVA.S32`: the products' sum wraps in 32 bits, exact wherever the true sum fits,
//!   as validation proves); the sum of the inputs that the odd-grid combine needs is one `VADDVA` pass.
//!
//! Sums are read and written as bytes (`VLDRB.U8`, `VSTRB.8`): the tensors in the arena need not be
//! word-aligned. Byte-stored weights, and codes a byte each or packed 4 or 2 to a byte, only; the callers
//! take the reference kernels for others.
#![allow(unsafe_code)]

use core::arch::asm;

use crate::codes::{storage_bits, Codes};
use crate::kernels::Hwc;

/// [`crate::kernels::global_sum_pool`] for codes stored a byte each, or packed 4 or 2 bits to a byte with
/// whole bytes per pixel; returns `false` for others.
pub fn global_sum_pool(input: Codes<'_>, shape: Hwc, output: &mut [u8]) -> bool {
    if shape.elems() == 0 {
        return false;
    }
    match storage_bits(input.bits()) {
        8 => {}
        bits @ (4 | 2) if (shape.c * bits as usize).is_multiple_of(8) => {
            packed_sum_pool(input.bytes(), bits, shape, output);
            return true;
        }
        _ => return false,
    }
    let (codes, pixels, ch) = (&input.bytes()[..shape.elems()], shape.h * shape.w, shape.c);
    let output = &mut output[..4 * ch];
    // SAFETY: the tail-predicated loop runs over `ch` lanes, four channels a pass; for each pass the inner
    // loop reads one predicated block of four codes from each of the `pixels` pixels (`c < ch`, inside
    // `codes`, which holds `pixels * ch`), and the pass writes its four sums' bytes to `output` (`4 * ch`
    // bytes). It also writes the pointers and count it advances (copies), `lr` and `q0`-`q1`, all declared.
    unsafe {
        asm!(
            "dlstp.32 lr, {ch}",
            "2:",
            "vmov.i32 q0, #0",
            "mov r0, {block}",
            "mov {k}, {pixels}",
            "3:",
            "vldrb.u32 q1, [r0]",
            "vadd.i32 q0, q0, q1",
            "add r0, {ch}",
            "subs {k}, #1",
            "bne 3b",
            "vstrb.8 q0, [{o}], #16",
            "adds {block}, #4",
            "letp lr, 2b",
            ch = in(reg) ch,
            pixels = in(reg) pixels,
            // (Widening loads take a low register as their base: `r0` walks the pixels.)
            out("r0") _,
            block = inout(reg) codes.as_ptr() => _,
            k = out(reg) _,
            o = inout(reg) output.as_mut_ptr() => _,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            options(nostack),
        );
    }
    true
}

/// [`global_sum_pool`] for codes packed `bits` (4 or 2) to a byte, whole bytes per pixel: four channels a
/// vector as for bytes, each pixel's block of codes a gather that brings every lane the byte holding its
/// code (`VLDRB.U32` at offsets 0, 0, 1, 1 at 4 bits, all 0 at 2), a shift by the lane's place in the byte
/// (`VSHL` by a negative amount per lane) and a mask.
fn packed_sum_pool(bytes: &[u8], bits: u32, shape: Hwc, output: &mut [u8]) {
    let (pixels, ch) = (shape.h * shape.w, shape.c);
    let pixel_bytes = ch * bits as usize / 8;
    let bytes = &bytes[..pixels * pixel_bytes];
    let output = &mut output[..4 * ch];
    // Per width: the gather offsets, the shifts (negative: to the right) and the mask, a vector each.
    static LANES_4: [i32; 12] = [0, 0, 1, 1, 0, -4, 0, -4, 15, 15, 15, 15];
    static LANES_2: [i32; 12] = [0, 0, 0, 0, 0, -2, -4, -6, 3, 3, 3, 3];
    let (lanes, block_bytes) = if bits == 4 { (&LANES_4, 2) } else { (&LANES_2, 1) };
    // SAFETY: the tail-predicated loop runs over `ch` lanes, four channels a pass (the pass's block
    // `block_bytes` further on); for each pass the inner loop gathers, from each of the `pixels` pixels
    // (`pixel_bytes` apart), the bytes holding the active lanes' codes (`c < ch`: byte `c * bits / 8` of the
    // pixel, inside `bytes`, which holds `pixels * pixel_bytes`), and the pass writes its four sums' bytes
    // to `output` (`4 * ch` bytes). `lanes` is read whole. It also writes the pointers and count it
    // advances (copies), `lr` and `q0`-`q3`, `q5`-`q7` (`d0`-`d15`), all declared.
    unsafe {
        asm_all_q!({
            "vldrw.u32 q5, [{lanes}]",
            "vldrw.u32 q6, [{lanes}, #16]",
            "vldrw.u32 q7, [{lanes}, #32]",
            "dlstp.32 lr, {ch}",
            "2:",
            "vmov.i32 q0, #0",
            "mov {x}, {block}",
            "mov {k}, {pixels}",
            "3:",
            "vldrb.u32 q1, [{x}, q5]",
            "vshl.u32 q1, q1, q6",
            "vand q1, q1, q7",
            "vadd.i32 q0, q0, q1",
            "add {x}, {pixel_bytes}",
            "subs {k}, #1",
            "bne 3b",
            "vstrb.8 q0, [{o}], #16",
            "add {block}, {block_bytes}",
            "letp lr, 2b",
            ch = in(reg) ch,
            pixels = in(reg) pixels,
            pixel_bytes = in(reg) pixel_bytes,
            block_bytes = in(reg) block_bytes,
            lanes = in(reg) lanes.as_ptr(),
            x = out(reg) _,
            block = inout(reg) bytes.as_ptr() => _,
            k = out(reg) _,
            o = inout(reg) output.as_mut_ptr() => _,
            out("lr") _,
        } options(nostack));
    }
}

/// The odd-grid halves of a fully connected layer over `i32` sums (little-endian bytes): `sum(x)` and
/// `sum(x * k_o)` for each of the `outputs` rows of byte-stored weights, passed to `emit(o, sum_xk,
/// sum_x)`; returns `false` for weights stored otherwise.
pub fn fully_connected_sums(
    sums: &[u8],
    weights: &[u8],
    weight_bits: u8,
    outputs: usize,
    mut emit: impl FnMut(usize, i32, i32),
) -> bool {
    let n = sums.len() / 4;
    if storage_bits(weight_bits) != 8 || n == 0 {
        return false;
    }
    assert!(weights.len() >= outputs * n);
    let mut sum_x = 0i32;
    // SAFETY: the tail-predicated loop reads the `4 * n` bytes of `sums` as `n` words (`VLDRB.U8` with a
    // 32-bit tail predicate covers whole words); it writes the sum, the pointer it advances (a copy), `lr`
    // and `q0`, all declared.
    unsafe {
        asm!(
            "dlstp.32 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{x}], #16",
            "vaddva.s32 r0, q0",
            "letp lr, 2b",
            n = in(reg) n,
            x = inout(reg) sums.as_ptr() => _,
            // (Across-vector sums go to even registers.)
            inout("r0") sum_x,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(readonly, nostack),
        );
    }
    for (o, row) in weights.chunks_exact(n).take(outputs).enumerate() {
        let mut sum_xk = 0i32;
        // SAFETY: the tail-predicated loop reads `n` words of `sums` (as bytes, see above) and `n` bytes of
        // `row` (`VLDRB.U32`, its length by `chunks_exact`); it writes the sum, the pointers it advances
        // (copies), `lr` and `q0`-`q1`, all declared.
        unsafe {
            asm!(
                "dlstp.32 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{x}], #16",
                "vldrb.u32 q1, [r1], #4",
                "vmladava.s32 r0, q0, q1",
                "letp lr, 2b",
                n = in(reg) n,
                x = inout(reg) sums.as_ptr() => _,
                // (Widening loads take a low register as their base; across-vector sums go to even ones.)
                inout("r1") row.as_ptr() => _,
                inout("r0") sum_xk,
                out("lr") _,
                out("d0") _,
                out("d1") _,
                out("d2") _,
                out("d3") _,
                options(readonly, nostack),
            );
        }
        emit(o, sum_xk, sum_x);
    }
    true
}
