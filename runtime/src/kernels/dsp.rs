//! The inner products of [`super::gemm`] with the DSP extension (Armv7E-M, Armv8-M Mainline): each `SMLAD`
//! multiplies two pairs of 16-bit lanes and adds both products, so one instruction does two
//! multiply-accumulates. Weight lanes come out of each loaded word with one `UXTB16` (8-bit codes) or one
//! shifted `AND` (1, 2 and 4-bit codes); activation lanes were laid out by the im2col in the same order.
//! The bodies below run inside the block of [`super::row_pairs`], which loops over the row pairs; `r7`
//! holds the unpacked weight lanes.
//!
//! Stable Rust has no DSP intrinsics, hence `asm!`. Tested against the reference on every DSP board under
//! QEMU (`qfd-host kernel-test`), since this code never runs on the host.
#![allow(unsafe_code)]

use core::arch::asm;

use super::lanes::{LaneFormat, DOT2_MASK, DOT2_WORDS};
use super::row_pairs::{row_pairs, row_pairs_into, Job};

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

/// Lane pair `j` of one word of each packed row: `(word >> (j * bits)) & mask`, one shifted `AND`.
macro_rules! packed_pair {
    ($shift:literal) => {
        packed_pair!(
            concat!("and r7, {mask}, {w0}, lsr #", $shift),
            concat!("and r7, {mask}, {w1}, lsr #", $shift)
        )
    };
    ($and0:expr, $and1:expr) => {
        concat!(
            "ldrd {xa}, {xb}, [{x}], #8\n",
            $and0,
            "\nsmlad {a0}, {xa}, r7, {a0}\n",
            "smlad {b0}, {xb}, r7, {b0}\n",
            $and1,
            "\nsmlad {a1}, {xa}, r7, {a1}\n",
            "smlad {b1}, {xb}, r7, {b1}\n",
        )
    };
}

/// One word of each packed row: the loads, then every lane pair (the first needs no shift).
macro_rules! packed_word {
    ([$($shift:literal),+]) => {
        concat!(
            "ldr {w0}, [{p0}], #4\n",
            "ldr {w1}, [{p1}], #4\n",
            packed_pair!("and r7, {mask}, {w0}", "and r7, {mask}, {w1}"),
            $(packed_pair!($shift),)+
        )
    };
}

/// One word of each 2-bit row in the two-codes-per-lane format: five lane entries (`lanes` module docs).
macro_rules! dot2_word {
    () => {
        concat!(
            "ldr {w0}, [{p0}], #4\n",
            "ldr {w1}, [{p1}], #4\n",
            packed_pair!("and r7, {mask}, {w0}", "and r7, {mask}, {w1}"),
            packed_pair!("and r7, {mask}, {w0}, lsr #2", "and r7, {mask}, {w1}, lsr #2"),
            packed_pair!("and r7, {mask}, {w0}, lsr #4", "and r7, {mask}, {w1}, lsr #4"),
            packed_pair!("and r7, {mask}, {w0}, lsl #4", "and r7, {mask}, {w1}, lsl #4"),
            packed_pair!("and r7, {mask}, {w0}, lsl #2", "and r7, {mask}, {w1}, lsl #2"),
        )
    };
}

/// Adds the dot fields (bits 10-19) of a row pair's four sums to the sums at `[{w1}]` (advancing it).
macro_rules! add_dot_fields {
    () => {
        concat!(
            "ubfx {a0}, {a0}, #10, #10\n",
            "ubfx {b0}, {b0}, #10, #10\n",
            "ubfx {a1}, {a1}, #10, #10\n",
            "ubfx {b1}, {b1}, #10, #10\n",
            "ldrd {xa}, {xb}, [{w1}]\n",
            "add {a0}, {a0}, {xa}\n",
            "add {b0}, {b0}, {xb}\n",
            "strd {a0}, {b0}, [{w1}], #8\n",
            "ldrd {xa}, {xb}, [{w1}]\n",
            "add {a1}, {a1}, {xa}\n",
            "add {b1}, {b1}, {xb}\n",
            "strd {a1}, {b1}, [{w1}], #8\n",
        )
    };
}

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
    let Some((mut job, p0, p1)) = Job::checked(x, rows, row_bytes, format, words, acc) else { return };
    if format.is_dot2() {
        if !accumulate {
            acc.fill(0);
        }
        return dot2_2xn(x, rows, row_bytes, words, job.pairs, acc);
    }
    let unrolled = format.bits() == 8 && words.is_multiple_of(2);
    if unrolled {
        job.passes = words / 2;
    }
    // SAFETY: `Job::checked` bounds every access. Per row pair, the block reads `4 * words` bytes from rows
    // 2q and 2q + 1 (`LDR`, any alignment, which Armv7-M and Armv8-M Mainline allow for normal memory) and
    // the lanes of `words` words from `x` (`LDRD`, aligned), then adds to four `i32` of `acc` (`LDRD`, `STRD`, aligned), for `pairs`
    // row pairs. It also writes `job`, which it owns, and its own stack slots (r7 and the job address),
    // restoring sp and r7.
    unsafe {
        match format.bits() {
            8 if unrolled => {
                row_pairs_into!(accumulate, &mut job, p0, p1, 0u32, concat!(bytes_word!(), bytes_word!()))
            }
            8 => row_pairs_into!(accumulate, &mut job, p0, p1, 0u32, bytes_word!()),
            4 => row_pairs_into!(accumulate, &mut job, p0, p1, 0x000f_000fu32, packed_word!([4, 8, 12])),
            2 => row_pairs_into!(
                accumulate,
                &mut job,
                p0,
                p1,
                0x0003_0003u32,
                packed_word!([2, 4, 6, 8, 10, 12, 14])
            ),
            _ => row_pairs_into!(
                accumulate,
                &mut job,
                p0,
                p1,
                0x0001_0001u32,
                packed_word!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
            ),
        }
    }
}

/// [`dot_2xn`] in the two-codes-per-lane format, out of line so that its block does not crowd the
/// registers of the others. The caller has checked the ranges.
#[inline(never)]
fn dot2_2xn(x: &[u32], rows: &[u8], row_bytes: usize, words: usize, pairs: usize, acc: &mut [i32]) {
    // The dot fields hold `DOT2_WORDS` words: one block per chunk of words, each adding its fields.
    for start in (0..words).step_by(DOT2_WORDS) {
        let n = (words - start).min(DOT2_WORDS);
        let x = x[2 * 5 * start..].as_ptr();
        let (advance, out) = (2 * row_bytes - 4 * n, acc.as_mut_ptr());
        let mut job = Job { x, passes: n, advance, pairs, out };
        let (p0, p1) = (rows[4 * start..].as_ptr(), rows[row_bytes + 4 * start..].as_ptr());
        // SAFETY: as in `dot_2xn`, for the chunk's `n` words of each row pair and their `10 * n` lane
        // entries, which `Job::checked` bounded; the block also reads the sums it adds to, inside `acc`.
        unsafe { row_pairs!(&mut job, p0, p1, DOT2_MASK, dot2_word!(), add_dot_fields!()) }
    }
}

/// How a tap's four channel codes become lanes (channels 0 and 2 in `{x}`, 1 and 3 in `{xo}`), from the
/// word (`bytes`: four codes a byte each, `UXTB16`) or halfword (`nibbles`: four 4-bit codes, spread with
/// `PKHBT` so that channels 2 and 3 also sit in the top half, then masked) that the tap's load brought.
macro_rules! depthwise_split {
    (bytes) => {
        concat!("uxtb16 {xo}, {x}, ror #8\n", "uxtb16 {x}, {x}\n")
    };
    (nibbles) => {
        concat!(
            "pkhbt {x}, {x}, {x}, lsl #8\n",
            "lsr {xo}, {x}, #4\n",
            "and {x}, {x}, #0x000f000f\n",
            "and {xo}, {xo}, #0x000f000f\n",
        )
    };
}

/// One tap of [`depthwise_group`]: the four channels' codes loaded by `$load`, split into lanes by
/// `$split` and multiplied by the tap's weight lanes with `SMLABB` / `SMLATT`.
macro_rules! depthwise_tap {
    ($load:expr, $split:tt) => {
        concat!(
            $load,
            "\n",
            depthwise_split!($split),
            "ldrd {we}, {wo}, [{wp}], #8\n",
            "smlabb {a0}, {x}, {we}, {a0}\n",
            "smlatt {a2}, {x}, {we}, {a2}\n",
            "smlabb {a1}, {xo}, {wo}, {a1}\n",
            "smlatt {a3}, {xo}, {wo}, {a3}\n",
        )
    };
}

/// One 3x3 window row of [`depthwise_group`]: its start from `rows`, then three taps `ch` bytes apart,
/// each loaded with `$ld` (`ldr` for bytes, `ldrh` for nibbles).
macro_rules! depthwise_row {
    ($row:literal, $ld:literal, $split:tt) => {
        concat!(
            "ldr {r}, [{rows}, #",
            $row,
            "]\n",
            depthwise_tap!(concat!($ld, " {x}, [{r}]"), $split),
            depthwise_tap!(concat!($ld, " {x}, [{r}, {ch}]"), $split),
            depthwise_tap!(concat!($ld, " {x}, [{r}, {ch2}]"), $split),
        )
    };
}

/// The asm block of [`depthwise_group`], for codes stored as `$ld` and `$split` read them.
macro_rules! depthwise_block {
    ($starts:expr, $ch:expr, $weights:expr, $acc:expr, $ld:literal, $split:tt) => {{
        let [a0, a1, a2, a3] = &mut $acc;
        asm!(
            "lsl {ch2}, {ch}, #1",
            depthwise_row!("0", $ld, $split),
            depthwise_row!("4", $ld, $split),
            depthwise_row!("8", $ld, $split),
            rows = in(reg) $starts.as_ptr(),
            ch = in(reg) $ch,
            ch2 = out(reg) _,
            wp = inout(reg) $weights.as_ptr() => _,
            r = out(reg) _,
            x = out(reg) _,
            xo = out(reg) _,
            we = out(reg) _,
            wo = out(reg) _,
            a0 = inout(reg) *a0,
            a1 = inout(reg) *a1,
            a2 = inout(reg) *a2,
            a3 = inout(reg) *a3,
            options(readonly, nostack, preserves_flags),
        )
    }};
}

/// The 3x3 window sums of four channels at one output pixel. Row `ky` of the window starts at byte `offset`
/// of `rows[ky]` and its taps are `ch` bytes apart; a tap holds the four channels' codes, a byte each, or
/// with `nibbles` as four 4-bit codes in two bytes (packed, first channel lowest). `weights[2 * (3 * ky +
/// kx)]` holds the signed weights of channels 0 and 2 as 16-bit lanes, `weights[2 * (3 * ky + kx) + 1]`
/// those of channels 1 and 3. Each tap is one load, two `UXTB16` (or four spreading instructions for
/// nibbles) and four 16 x 16 multiply-accumulates.
pub fn depthwise_group(
    rows: [&[u8]; 3],
    offset: usize,
    ch: usize,
    weights: &[u32; 18],
    nibbles: bool,
) -> [i32; 4] {
    // The asm reads four bytes (two for nibbles) at `offset + kx * ch` of each row, `kx` up to 2.
    let tap_bytes = if nibbles { 2 } else { 4 };
    assert!(rows.iter().all(|r| r.len() >= offset + 2 * ch + tap_bytes));
    let starts = [rows[0][offset..].as_ptr(), rows[1][offset..].as_ptr(), rows[2][offset..].as_ptr()];
    let mut acc = [0i32; 4];
    // SAFETY: the assert bounds the loads from each row (`LDR` or `LDRH`, any alignment, allowed for normal
    // memory on Armv7-M and Armv8-M Mainline); `weights` is 18 aligned words read once each (`LDRD`);
    // `starts` is read three times. Nothing is written to memory.
    unsafe {
        if nibbles {
            depthwise_block!(starts, ch, weights, acc, "ldrh", nibbles)
        } else {
            depthwise_block!(starts, ch, weights, acc, "ldr", bytes)
        }
    }
    acc
}
