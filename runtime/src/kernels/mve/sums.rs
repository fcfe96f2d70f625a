//! The head of the CNNs on Helium: the global sum pool and the fully connected layer over its sums.
//!
//! - [`global_sum_pool`]: four channels a vector, each pixel's codes of the block one widening load
//!   (`VLDRB.U32`) and one `VADD`; the loop over blocks is tail-predicated, the loop over pixels inside it
//!   a plain one.
//! - [`fully_connected_sums`]: each output a dot product of the sums with its weight row, four products
//!   an instruction (`VMLADAVA.S32`: the products' sum wraps in 32 bits, exact wherever the true sum fits,
//!   as validation proves); the sum of the inputs that the odd-grid combine needs is one `VADDVA` pass.
//!
//! Sums are read and written as bytes (`VLDRB.U8`, `VSTRB.8`): the tensors in the arena need not be
//! word-aligned. Byte-stored codes and weights only; the callers take the reference kernels for others.
#![allow(unsafe_code)]

use core::arch::asm;

use crate::codes::{storage_bits, Codes};
use crate::kernels::Hwc;

/// [`crate::kernels::global_sum_pool`] for codes stored a byte each; returns `false` for others.
pub fn global_sum_pool(input: Codes<'_>, shape: Hwc, output: &mut [u8]) -> bool {
    if storage_bits(input.bits()) != 8 || shape.elems() == 0 {
        return false;
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
