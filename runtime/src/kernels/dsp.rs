//! The `2 x 2` dot product of [`super::gemm`] with the DSP extension (Armv7E-M, Armv8-M Mainline): each
//! `SMLAD` multiplies two pairs of 16-bit lanes and adds both products, so one instruction does two
//! multiply-accumulates. Weight lanes come out of each loaded word with one `UXTB16` (8-bit codes) or one
//! shifted `AND` (1, 2 and 4-bit codes); activation lanes were laid out by the im2col in the same order.
//!
//! Stable Rust has no DSP intrinsics, hence `asm!`. Each block uses 13 or 14 registers: the compiler
//! allocates the operands, and `r7`, which it reserves (the Thumb frame pointer) and cannot hand out as an
//! operand, is saved and restored inside the block and used for the unpacked weight lanes.
//!
//! Tested against the reference on every DSP board under QEMU (`qfd-host kernel-test`), since this code never
//! runs on the host.
#![allow(unsafe_code)]

use core::arch::asm;

use super::lanes::LaneFormat;

/// 1, 2 and 4-bit codes: lane pair `j` is `(word >> (j * bits)) & mask`, one `AND` with a shifted operand
/// (`mask` holds the code mask in both halves). Expands to one `asm!` block whose loop body does every pair of a word.
macro_rules! dot_packed {
    ($x:expr, $p0:expr, $p1:expr, $words:expr, $code_mask:literal, [0 $(, $shift:literal)+]) => {{
        let [mut a0, mut b0, mut a1, mut b1] = [0i32; 4];
        asm!(
            "push {{r7}}",
            "2:",
            "ldr {w0}, [{p0}], #4",
            "ldr {w1}, [{p1}], #4",
            "ldrd {xa}, {xb}, [{x}], #8",
            "and r7, {mask}, {w0}",
            "smlad {a0}, {xa}, r7, {a0}",
            "smlad {b0}, {xb}, r7, {b0}",
            "and r7, {mask}, {w1}",
            "smlad {a1}, {xa}, r7, {a1}",
            "smlad {b1}, {xb}, r7, {b1}",
            $(
                "ldrd {xa}, {xb}, [{x}], #8",
                concat!("and r7, {mask}, {w0}, lsr #", $shift),
                "smlad {a0}, {xa}, r7, {a0}",
                "smlad {b0}, {xb}, r7, {b0}",
                concat!("and r7, {mask}, {w1}, lsr #", $shift),
                "smlad {a1}, {xa}, r7, {a1}",
                "smlad {b1}, {xb}, r7, {b1}",
            )+
            "subs {n}, {n}, #1",
            "bne 2b",
            "pop {{r7}}",
            x = inout(reg) $x => _,
            p0 = inout(reg) $p0 => _,
            p1 = inout(reg) $p1 => _,
            n = inout(reg) $words => _,
            a0 = inout(reg) a0,
            b0 = inout(reg) b0,
            a1 = inout(reg) a1,
            b1 = inout(reg) b1,
            w0 = out(reg) _,
            w1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            mask = in(reg) $code_mask * 0x0001_0001u32,
            options(readonly),
        );
        [a0, b0, a1, b1]
    }};
}

/// Same contract as [`super::lanes::dot_2x2`].
#[inline]
pub fn dot_2x2(x: &[u32], row0: &[u8], row1: &[u8], format: LaneFormat, words: usize) -> [i32; 4] {
    // The asm reads exactly these ranges; checking them here keeps the blocks below sound for any caller.
    let lanes = 2 * words * format.pairs_per_word();
    assert!(words > 0 && x.len() >= lanes && row0.len() >= 4 * words && row1.len() >= 4 * words);
    let (xp, p0, p1) = (x.as_ptr(), row0.as_ptr(), row1.as_ptr());
    // SAFETY: the assert above bounds every load: each loop iteration reads one word of each row (`LDR`,
    // any alignment, which Armv7-M and Armv8-M Mainline allow for normal memory) and `2 * pairs` aligned
    // words of `x`, for `words` iterations. Nothing is written to memory but the
    // stack slot that saves r7, which is restored, as is sp.
    unsafe {
        match format.bits() {
            8 => dot_bytes(xp, p0, p1, words),
            4 => dot_packed!(xp, p0, p1, words, 0xf, [0, 4, 8, 12]),
            2 => dot_packed!(xp, p0, p1, words, 0x3, [0, 2, 4, 6, 8, 10, 12, 14]),
            _ => dot_packed!(xp, p0, p1, words, 0x1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
        }
    }
}

/// One word of each 8-bit row: lane pairs are bytes (0, 2) and (1, 3), `UXTB16` and `UXTB16 ROR #8`.
macro_rules! bytes_word {
    () => {
        concat!(
            "ldr {w0}, [{p0}], #4\n",
            "ldr {w1}, [{p1}], #4\n",
            "ldrd {xa}, {xb}, [{x}], #8\n",
            "uxtb16 r7, {w0}\n",
            "smlad {a0}, {xa}, r7, {a0}\n",
            "smlad {b0}, {xb}, r7, {b0}\n",
            "uxtb16 r7, {w1}\n",
            "smlad {a1}, {xa}, r7, {a1}\n",
            "smlad {b1}, {xb}, r7, {b1}\n",
            "ldrd {xa}, {xb}, [{x}], #8\n",
            "uxtb16 r7, {w0}, ror #8\n",
            "smlad {a0}, {xa}, r7, {a0}\n",
            "smlad {b0}, {xb}, r7, {b0}\n",
            "uxtb16 r7, {w1}, ror #8\n",
            "smlad {a1}, {xa}, r7, {a1}\n",
            "smlad {b1}, {xb}, r7, {b1}\n",
        )
    };
}

/// The 8-bit loop: `$iterations` passes over `$body` (one or two words of each row).
macro_rules! dot_bytes_loop {
    ($x:expr, $p0:expr, $p1:expr, $iterations:expr, $($body:expr),+) => {{
        let [mut a0, mut b0, mut a1, mut b1] = [0i32; 4];
        asm!(
            "push {{r7}}",
            "2:",
            $($body,)+
            "subs {n}, {n}, #1",
            "bne 2b",
            "pop {{r7}}",
            x = inout(reg) $x => _,
            p0 = inout(reg) $p0 => _,
            p1 = inout(reg) $p1 => _,
            n = inout(reg) $iterations => _,
            a0 = inout(reg) a0,
            b0 = inout(reg) b0,
            a1 = inout(reg) a1,
            b1 = inout(reg) b1,
            w0 = out(reg) _,
            w1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            options(readonly),
        );
        [a0, b0, a1, b1]
    }};
}

/// 8-bit codes, two words per loop pass when the count is even: the loop's own two instructions then
/// cost one per word instead of two (of eighteen).
///
/// # Safety
/// `x` must point to `4 * words` readable aligned `u32`, `p0` and `p1` to `4 * words` readable bytes each,
/// and `words > 0`.
#[inline(always)]
unsafe fn dot_bytes(x: *const u32, p0: *const u8, p1: *const u8, words: usize) -> [i32; 4] {
    // SAFETY: the caller's contract bounds the reads; r7 is saved and restored around its use.
    unsafe {
        if words.is_multiple_of(2) {
            dot_bytes_loop!(x, p0, p1, words / 2, bytes_word!(), bytes_word!())
        } else {
            dot_bytes_loop!(x, p0, p1, words, bytes_word!())
        }
    }
}
