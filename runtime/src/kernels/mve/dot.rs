//! The inner product of [`crate::kernels::gemm`] with Helium (Armv8.1-M MVE, the Cortex-M55) for
//! [`LaneFormat::vector`]: each `VMLADAVA.U8` multiplies sixteen pairs of bytes and adds them all to a
//! scalar, so at 8 bits a row pair against two pixels is four 16-byte loads and four of those per 16 codes,
//! 64 multiply-accumulates in nine instructions; at 4 bits each loaded byte splits into two codes in the
//! registers (`VAND`, `VSHR`), 128 multiply-accumulates in twenty-one. The loop is tail-predicated
//! (`DLSTP`/`LETP`): its last pass loads and multiplies only the bytes that remain, so no row is read past
//! its end. Other formats take the DSP kernels ([`crate::kernels::dsp`]).
//!
//! Stable Rust has no MVE intrinsics, hence `asm!`; the vector registers it uses (`q0`-`q7`, which are
//! `d0`-`d15`) are declared clobbered, and `VMLADAVA` wants even-numbered accumulators, hence the fixed
//! registers. Tested against the reference on the Cortex-M55 under QEMU (`qfd-host kernel-test`).
#![allow(unsafe_code)]

use core::arch::asm;

use super::super::lanes::LaneFormat;

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

/// Same contract as [`crate::kernels::lanes::dot_2xn`], except that for the vector formats the sums of `acc`
/// (four per pair of rows, `pairs` pairs) are laid out as [`dot_2px`] writes them.
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
        return crate::kernels::dsp::dot_2xn(x, rows, row_bytes, format, words, acc, accumulate);
    }
    // Each pixel's run of `words` words; each row's bytes (the patch, which may end inside its last word).
    let bytes = (4 * words).min(row_bytes);
    let (a, b) = x[..2 * words].split_at(words);
    let (a, b) = (&crate::kernels::scratch::bytes(a)[..bytes], &crate::kernels::scratch::bytes(b)[..bytes]);
    dot_2px(a, b, rows, row_bytes, format.bits(), acc, accumulate)
}

/// The dot products of pixels `a` and `b` (their codes as stored, `bits` to a field of each byte, the same
/// number of bytes each) against every pair of rows of `rows` (`row_bytes` apart, each read for `a.len()`
/// bytes), into `acc` (or added to it, with `accumulate`): four sums per pair of rows, laid out as
/// [`codes_2px`](super::to_code::codes_2px) reads them, each row's sum at pixel A (`acc[r]`), then each at pixel B
/// (`acc[2 * pairs + r]`).
#[inline(always)]
pub fn dot_2px(
    a: &[u8],
    b: &[u8],
    rows: &[u8],
    row_bytes: usize,
    bits: u32,
    acc: &mut [i32],
    accumulate: bool,
) {
    let pairs = acc.len() / 4;
    if pairs == 0 {
        return;
    }
    let bytes = a.len();
    assert!(bytes > 0 && b.len() == bytes && bytes <= row_bytes);
    assert!(rows.len() >= (2 * pairs - 1) * row_bytes + bytes);
    if bits == 8 && !accumulate && bytes <= 32 {
        return dot_short(a, b, rows, row_bytes, &mut acc[..4 * pairs]);
    }
    let (a, b) = (a.as_ptr(), b.as_ptr());
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

/// [`dot_2px`] for 8-bit codes and patches of at most 32 bytes (a 3-channel stem's 27, a narrow pointwise
/// layer's 8 or 16): both pixels stay in registers (one vector each, or two with the second
/// predicated to the bytes that remain) and one loop runs over every pair of rows, two loads (or four) and
/// four dot products (or eight) a pair, its four sums stored two by two (`STRD`). The loop over whole
/// patches (the general one) would restart per pair of rows, and its set-up is most of the work at these
/// lengths.
fn dot_short(a: &[u8], b: &[u8], rows: &[u8], row_bytes: usize, acc: &mut [i32]) {
    let (bytes, pairs) = (a.len(), acc.len() / 4);
    // (The caller's asserts bound the rows; these say what this function relies on.)
    assert!(bytes > 0 && bytes <= 32 && b.len() == bytes && pairs > 0);
    assert!(bytes <= row_bytes && rows.len() >= (2 * pairs - 1) * row_bytes + bytes);
    let (at_a, at_b) = acc.split_at_mut(2 * pairs);
    // The loop body: rows 2q (`{p0}`) and 2q + 1 (`{p1}`) loaded, `$dots`, then the pointers advanced and
    // the four sums stored: A's (`r0`, `r4`) and B's (`r2`, `r8`).
    macro_rules! rows_loop {
        ($setup:expr, $loads:expr, $dots:expr) => {
            asm_all_q!({
                $setup,
                "dls lr, {k}",
                "2:",
                $loads,
                $dots,
                "add {p0}, {step}",
                "add {p1}, {step}",
                "strd r0, r4, [{sa}], #8",
                "strd r2, r8, [{sb}], #8",
                "le lr, 2b",
                k = in(reg) pairs,
                p0 = inout(reg) rows.as_ptr() => _,
                p1 = inout(reg) rows.as_ptr().wrapping_add(row_bytes) => _,
                step = in(reg) 2 * row_bytes,
                sa = inout(reg) at_a.as_mut_ptr() => _,
                sb = inout(reg) at_b.as_mut_ptr() => _,
                // (Across-vector sums go to even registers; the pixels' addresses and length arrive there.)
                inout("r0") a.as_ptr() => _,
                inout("r2") b.as_ptr() => _,
                inout("r4") bytes => _,
                out("r8") _,
                out("lr") _,
            } options(nostack))
        };
    }
    // SAFETY: every load is bounded by the asserts: the pixels' `bytes` bytes (loads past the first 16
    // predicated to the rest, as are the rows' when `bytes <= 16`; predicated-off lanes read nothing and
    // load 0), and per pair of rows the first `bytes` bytes of rows 2q and 2q + 1. The stores write two
    // words a pair through each of `at_a` and `at_b` (`pairs` pairs: their whole length, word-aligned as
    // `i32`s are). It writes `lr`, `r0`, `r2`, `r4`, `r8`, the pointers it advances (copies) and `q0`-`q7`,
    // all declared.
    unsafe {
        if bytes <= 16 {
            rows_loop!(
                "vctp.8 r4\nvpstt\nvldrbt.u8 q0, [r0]\nvldrbt.u8 q2, [r2]",
                "vpstt\nvldrbt.u8 q4, [{p0}]\nvldrbt.u8 q6, [{p1}]",
                concat!(
                    "vmladav.u8 r0, q0, q4\n",
                    "vmladav.u8 r2, q2, q4\n",
                    "vmladav.u8 r4, q0, q6\n",
                    "vmladav.u8 r8, q2, q6",
                )
            );
        } else {
            rows_loop!(
                concat!(
                    "vldrb.u8 q0, [r0]\n",
                    "vldrb.u8 q2, [r2]\n",
                    "subs r4, #16\n",
                    "vctp.8 r4\n",
                    "vpstt\n",
                    "vldrbt.u8 q1, [r0, #16]\n",
                    "vldrbt.u8 q3, [r2, #16]",
                ),
                concat!(
                    "vldrb.u8 q4, [{p0}]\n",
                    "vldrb.u8 q6, [{p1}]\n",
                    "vpstt\n",
                    "vldrbt.u8 q5, [{p0}, #16]\n",
                    "vldrbt.u8 q7, [{p1}, #16]",
                ),
                concat!(
                    "vmladav.u8 r0, q0, q4\n",
                    "vmladava.u8 r0, q1, q5\n",
                    "vmladav.u8 r2, q2, q4\n",
                    "vmladava.u8 r2, q3, q5\n",
                    "vmladav.u8 r4, q0, q6\n",
                    "vmladava.u8 r4, q1, q7\n",
                    "vmladav.u8 r8, q2, q6\n",
                    "vmladava.u8 r8, q3, q7",
                )
            );
        }
    }
}
