//! The inner product of [`super::gemm`] with Helium (Armv8.1-M MVE, the Cortex-M55) for
//! [`LaneFormat::vector`]: each `VMLADAVA.U8` multiplies sixteen pairs of bytes and adds them all to a
//! scalar, so at 8 bits a row pair against two pixels is four 16-byte loads and four of those per 16 codes,
//! 64 multiply-accumulates in nine instructions; at 4 bits each loaded byte splits into two codes in the
//! registers (`VAND`, `VSHR`), 128 multiply-accumulates in twenty-one. The loop is tail-predicated
//! (`DLSTP`/`LETP`): its last pass loads and multiplies only the bytes that remain, so no row is read past
//! its end. Other formats take the DSP kernels ([`super::dsp`]).
//!
//! Stable Rust has no MVE intrinsics, hence `asm!`; the vector registers it uses (`q0`-`q7`, which are
//! `d0`-`d15`) are declared clobbered, and `VMLADAVA` wants even-numbered accumulators, hence the fixed
//! registers. Tested against the reference on the Cortex-M55 under QEMU (`qfd-host kernel-test`).
#![allow(unsafe_code)]

/// `asm!` with every vector register declared clobbered (`q0`-`q7`, as the `d0`-`d15` they alias, which is
/// how `asm!` names them): `asm_all_q!({ templates and operands, } options(...))`.
macro_rules! asm_all_q {
    ({ $($arg:tt)* } $($options:tt)*) => {
        core::arch::asm!(
            $($arg)*
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _, out("d6") _,
            out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _, out("d12") _, out("d13") _,
            out("d14") _, out("d15") _,
            $($options)*
        )
    };
}

#[macro_use]
pub mod to_code;
pub mod add_table;
pub mod depthwise;
pub mod max_pool;
pub mod sums;

use core::arch::asm;

use super::lanes::LaneFormat;

/// The four dot products of a pass: pixels A and B (`$xa`, `$xb`) against rows 0 and 1 (`$w0`, `$w1`),
/// added to `r0` (A, row 0), `r2` (B, row 0), `r4` (A, row 1) and `r8` (B, row 1).
macro_rules! dots {
    ($xa:literal, $xb:literal, $w0:literal, $w1:literal) => {
        concat!(
            "vmladava.u8 r0, ",
            $xa,
            ", ",
            $w0,
            "\n",
            "vmladava.u8 r2, ",
            $xb,
            ", ",
            $w0,
            "\n",
            "vmladava.u8 r4, ",
            $xa,
            ", ",
            $w1,
            "\n",
            "vmladava.u8 r8, ",
            $xb,
            ", ",
            $w1,
            "\n",
        )
    };
}

/// One pass of the 8-bit loop: sixteen codes of each row against both pixels.
macro_rules! bytes_pass {
    () => {
        dots!("q0", "q1", "q2", "q3")
    };
}

/// One pass of the 4-bit loop: sixteen bytes, thirty-two codes, of each row against both pixels. Each
/// byte splits into its low code (`VAND` with `q7`, which holds `0x0F` in every byte) and its high code
/// (`VSHR`); low codes meet low codes and high codes high codes, which pairs each weight with its
/// activation, as both are stored in the same order.
macro_rules! nibbles_pass {
    () => {
        concat!(
            "vand q4, q0, q7\n",
            "vshr.u8 q0, q0, #4\n",
            "vand q5, q1, q7\n",
            "vshr.u8 q1, q1, #4\n",
            "vand q6, q2, q7\n",
            "vshr.u8 q2, q2, #4\n",
            "vmladava.u8 r0, q4, q6\n",
            "vmladava.u8 r0, q0, q2\n",
            "vmladava.u8 r2, q5, q6\n",
            "vmladava.u8 r2, q1, q2\n",
            "vand q6, q3, q7\n",
            "vshr.u8 q3, q3, #4\n",
            "vmladava.u8 r4, q4, q6\n",
            "vmladava.u8 r4, q0, q3\n",
            "vmladava.u8 r8, q5, q6\n",
            "vmladava.u8 r8, q1, q3\n",
        )
    };
}

/// One field of the 2-bit loop: the codes at bits `$f`..`$f + 1` of every byte of `q0`-`q3` (shifted to the
/// top, then down: two `VSHL`/`VSHR` per register, no mask) into `q4`-`q7`, then their four dot products.
macro_rules! crumbs_field {
    ($up:literal) => {
        concat!(
            "vshl.i8 q4, q0, #",
            $up,
            "\n",
            "vshr.u8 q4, q4, #6\n",
            "vshl.i8 q5, q1, #",
            $up,
            "\n",
            "vshr.u8 q5, q5, #6\n",
            "vshl.i8 q6, q2, #",
            $up,
            "\n",
            "vshr.u8 q6, q6, #6\n",
            "vshl.i8 q7, q3, #",
            $up,
            "\n",
            "vshr.u8 q7, q7, #6\n",
            dots!("q4", "q5", "q6", "q7"),
        )
    };
}

/// One pass of the 2-bit loop: sixteen bytes, sixty-four codes, of each row against both pixels; the
/// codes at the same place in a byte meet, as weights and activations are stored in the same order.
macro_rules! crumbs_pass {
    () => {
        concat!(
            crumbs_field!("6"),
            crumbs_field!("4"),
            crumbs_field!("2"),
            "vshr.u8 q0, q0, #6\n",
            "vshr.u8 q1, q1, #6\n",
            "vshr.u8 q2, q2, #6\n",
            "vshr.u8 q3, q3, #6\n",
            dots!("q0", "q1", "q2", "q3"),
        )
    };
}

/// The tail-predicated loop over `{n}` bytes: the pass's loads, then `$pass`, after `$setup`; the four sums in
/// `r0`, `r2`, `r4`, `r8` (`VMLADAVA` accumulates into even registers only). `$($q:literal)*` are the
/// vector registers the body uses, as the `d` registers they alias: only those are declared clobbered, so
/// that the compiler saves no more around the block than it must.
macro_rules! row_pair_block {
    ($a:expr, $b:expr, $p0:expr, $p1:expr, $n:expr, $sums:expr, $setup:expr, $pass:expr, [$($d:tt),*]) => {{
        let [a0, b0, a1, b1] = &mut $sums;
        asm!(
            $setup,
            "dlstp.8 lr, {n}",
            "2:",
            // Sixteen bytes of each pixel's run (`q0`, `q1`) and of each row (`q2`, `q3`).
            "vldrb.u8 q0, [{xa}], #16",
            "vldrb.u8 q1, [{xb}], #16",
            "vldrb.u8 q2, [{p0}], #16",
            "vldrb.u8 q3, [{p1}], #16",
            $pass,
            "letp lr, 2b",
            n = in(reg) $n,
            xa = inout(reg) $a => _,
            xb = inout(reg) $b => _,
            p0 = inout(reg) $p0 => _,
            p1 = inout(reg) $p1 => _,
            inout("r0") *a0,
            inout("r2") *b0,
            inout("r4") *a1,
            inout("r8") *b1,
            out("lr") _,
            $(out($d) _,)*
            options(readonly, nostack),
        )
    }};
}

/// Same contract as [`super::lanes::dot_2xn`], except that for the vector formats the sums of `acc`
/// (four per pair of rows, `pairs` pairs) are laid out as [`codes_2px`] reads them: each row's sum at
/// pixel A (`acc[r]`), then each at pixel B (`acc[2 * pairs + r]`).
pub fn dot_2xn(
    x: &[u32],
    rows: &[u8],
    row_bytes: usize,
    format: LaneFormat,
    words: usize,
    acc: &mut [i32],
    accumulate: bool,
) {
    if !format.is_vector() {
        return super::dsp::dot_2xn(x, rows, row_bytes, format, words, acc, accumulate);
    }
    let pairs = acc.len() / 4;
    if pairs == 0 {
        return;
    }
    // Each pixel's run of `words` words; each row's bytes (the patch, which may end inside its last word).
    let bytes = (4 * words).min(row_bytes);
    assert!(bytes > 0 && x.len() >= 2 * words);
    assert!(rows.len() >= (2 * pairs - 1) * row_bytes + bytes);
    let (a, b) = (x.as_ptr().cast::<u8>(), x[words..].as_ptr().cast::<u8>());
    let bits = format.bits();
    // Rows 2q and 2q + 1 start `2 * row_bytes` further on for each pair (the asserts bound them).
    let mut p0 = rows.as_ptr();
    // The sums at pixel A, channel by channel, then those at pixel B, as [`codes_2px`] reads them.
    let (at_a, at_b) = acc[..4 * pairs].split_at_mut(2 * pairs);
    for (sums_a, sums_b) in at_a.chunks_exact_mut(2).zip(at_b.chunks_exact_mut(2)) {
        let p1 = p0.wrapping_add(row_bytes);
        let mut new = [0i32; 4];
        // SAFETY: the asserts bound every access: the tail-predicated loop reads `bytes` bytes from each of
        // rows 2q and 2q + 1 and from each pixel's run (`VLDRB`, any alignment), and writes only registers:
        // the four sums, the pointers it advances (copies), `lr` and `q0`-`q7`, all declared.
        unsafe {
            match bits {
                4 => row_pair_block!(
                    a,
                    b,
                    p0,
                    p1,
                    bytes,
                    new,
                    "vmov.i8 q7, #0x0f",
                    nibbles_pass!(),
                    [
                        "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12",
                        "d13", "d14", "d15"
                    ]
                ),
                2 => row_pair_block!(
                    a,
                    b,
                    p0,
                    p1,
                    bytes,
                    new,
                    "",
                    crumbs_pass!(),
                    [
                        "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12",
                        "d13", "d14", "d15"
                    ]
                ),
                _ => row_pair_block!(
                    a,
                    b,
                    p0,
                    p1,
                    bytes,
                    new,
                    "",
                    bytes_pass!(),
                    ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"]
                ),
            }
        }
        let [a0, b0, a1, b1] = new;
        if accumulate {
            for (sum, n) in sums_a.iter_mut().zip([a0, a1]).chain(sums_b.iter_mut().zip([b0, b1])) {
                *sum = sum.wrapping_add(n);
            }
        } else {
            sums_a.copy_from_slice(&[a0, a1]);
            sums_b.copy_from_slice(&[b0, b1]);
        }
        p0 = p0.wrapping_add(2 * row_bytes);
    }
}

/// The sum of the codes in `bytes`, stored `BITS` (8, 4 or 2) to a field of each byte: sixteen bytes an
/// instruction (`VADDVA.U8`) at 8 bits, each field shifted out first below that.
pub fn code_sum<const BITS: u32>(bytes: &[u8]) -> u32 {
    if bytes.is_empty() {
        return 0;
    }
    let mut sum = 0u32;
    // The loop over `bytes`, each pass adding sixteen loaded bytes' codes to `r0` with `$pass`.
    macro_rules! sum_loop {
        ($pass:expr) => {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{p}], #16",
                $pass,
                "letp lr, 2b",
                n = in(reg) bytes.len(),
                p = inout(reg) bytes.as_ptr() => _,
                inout("r0") sum,
                out("lr") _,
                out("d0") _,
                out("d1") _,
                out("d2") _,
                out("d3") _,
                options(readonly, nostack),
            )
        };
    }
    // SAFETY: the tail-predicated loop reads exactly `bytes.len()` bytes (`VLDRB`) and writes only
    // registers: the sum, the pointer it advances (a copy), `lr` and `q0`-`q1`, all declared.
    unsafe {
        match BITS {
            4 => sum_loop!("vshl.i8 q1, q0, #4\nvshr.u8 q1, q1, #4\nvshr.u8 q0, q0, #4\nvaddva.u8 r0, q1\nvaddva.u8 r0, q0"),
            2 => sum_loop!(concat!(
                "vshl.i8 q1, q0, #6\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshl.i8 q1, q0, #4\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshl.i8 q1, q0, #2\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshr.u8 q0, q0, #6\nvaddva.u8 r0, q0"
            )),
            _ => sum_loop!("vaddva.u8 r0, q0"),
        }
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
