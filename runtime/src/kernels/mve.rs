//! The inner product of [`super::gemm`] with Helium (Armv8.1-M MVE, the Cortex-M55) for 8-bit weights
//! ([`LaneFormat::bytes`]): each `VMLADAVA.U8` multiplies sixteen pairs of bytes and adds them all to a
//! scalar, so a row pair against two pixels is four 16-byte loads and four of those per 16 codes, 64
//! multiply-accumulates in nine instructions. The loop is tail-predicated (`DLSTP`/`LETP`): its last pass
//! loads and multiplies only the codes that remain, so no row is read past its end. Other formats take the
//! DSP kernels ([`super::dsp`]).
//!
//! Stable Rust has no MVE intrinsics, hence `asm!`; the vector registers it uses (`q0`-`q3`, which are
//! `d0`-`d7`) are declared clobbered, and `VMLADAVA` wants even-numbered accumulators, hence the fixed
//! registers. Tested against the reference on the Cortex-M55 under QEMU (`qfd-host kernel-test`).
#![allow(unsafe_code)]

use core::arch::asm;

use super::lanes::LaneFormat;

/// Same contract as [`super::lanes::dot_2xn`].
pub fn dot_2xn(
    x: &[u32],
    rows: &[u8],
    row_bytes: usize,
    format: LaneFormat,
    words: usize,
    acc: &mut [i32],
    accumulate: bool,
) {
    if !format.is_bytes() {
        return super::dsp::dot_2xn(x, rows, row_bytes, format, words, acc, accumulate);
    }
    let pairs = acc.len() / 4;
    if pairs == 0 {
        return;
    }
    // Each pixel's run of `words` words; each row's codes (the patch, which may end inside its last word).
    let codes = (4 * words).min(row_bytes);
    assert!(codes > 0 && x.len() >= 2 * words);
    assert!(rows.len() >= (2 * pairs - 1) * row_bytes + codes);
    let (a, b) = (x.as_ptr(), x[words..].as_ptr());
    for (q, sums) in acc.chunks_exact_mut(4).enumerate() {
        let (p0, p1) = (rows[2 * q * row_bytes..].as_ptr(), rows[(2 * q + 1) * row_bytes..].as_ptr());
        let [mut a0, mut b0, mut a1, mut b1] = [0i32; 4];
        // SAFETY: the asserts bound every access: the tail-predicated loop reads `codes` bytes from each of
        // rows 2q and 2q + 1 and from each pixel's run (`VLDRB`, any alignment), and writes only registers:
        // the four sums, the pointers it advances (copies), `lr` and `q0`-`q3`, all declared.
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{xa}], #16",
                "vldrb.u8 q1, [{xb}], #16",
                "vldrb.u8 q2, [{p0}], #16",
                "vldrb.u8 q3, [{p1}], #16",
                "vmladava.u8 r0, q0, q2",
                "vmladava.u8 r2, q1, q2",
                "vmladava.u8 r4, q0, q3",
                "vmladava.u8 r8, q1, q3",
                "letp lr, 2b",
                n = in(reg) codes,
                xa = inout(reg) a.cast::<u8>() => _,
                xb = inout(reg) b.cast::<u8>() => _,
                p0 = inout(reg) p0 => _,
                p1 = inout(reg) p1 => _,
                inout("r0") a0,
                inout("r2") b0,
                inout("r4") a1,
                inout("r8") b1,
                out("lr") _,
                out("d0") _,
                out("d1") _,
                out("d2") _,
                out("d3") _,
                out("d4") _,
                out("d5") _,
                out("d6") _,
                out("d7") _,
                options(readonly, nostack),
            );
        }
        let new = [a0, b0, a1, b1];
        if accumulate {
            sums.iter_mut().zip(new).for_each(|(s, n)| *s = s.wrapping_add(n));
        } else {
            sums.copy_from_slice(&new);
        }
    }
}

/// The sum of `codes`, sixteen bytes an instruction (`VADDVA.U8`).
pub fn byte_sum(codes: &[u8]) -> u32 {
    if codes.is_empty() {
        return 0;
    }
    let mut sum = 0u32;
    // SAFETY: the tail-predicated loop reads exactly `codes.len()` bytes from `codes` (`VLDRB`) and writes
    // only registers: the sum, the pointer it advances (a copy), `lr` and `q0`, all declared.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{p}], #16",
            "vaddva.u8 r0, q0",
            "letp lr, 2b",
            n = in(reg) codes.len(),
            p = inout(reg) codes.as_ptr() => _,
            inout("r0") sum,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(readonly, nostack),
        );
    }
    sum
}

/// Copies `src` into `dst` (of the same length), sixteen bytes an instruction pair: the runs of a patch
/// (`memcpy` handles short, misaligned runs a byte or a word at a time).
pub fn copy(src: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len());
    if src.is_empty() {
        return;
    }
    // SAFETY: the tail-predicated loop reads exactly `src.len()` bytes from `src` (`VLDRB`) and writes as
    // many to `dst` (`VSTRB`), which the assert makes the same length; it also writes the pointers it
    // advances (copies), `lr` and `q0`, all declared.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{s}], #16",
            "vstrb.8 q0, [{d}], #16",
            "letp lr, 2b",
            n = in(reg) src.len(),
            s = inout(reg) src.as_ptr() => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(nostack),
        );
    }
}
