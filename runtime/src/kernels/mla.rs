//! The inner product of [`super::gemm`] for 8-bit weight rows on Armv7-M cores without the DSP extension
//! (the Cortex-M3): one `MLA` per multiply-accumulate, each weight code loaded with `LDRB` and each
//! activation code (a 16-bit half of a lane entry) with `LDRH`, the offsets folded into the loads. A word
//! of each row against two pixels is 32 instructions for 16 multiply-accumulates; the compiled portable
//! loop took about 37, spilling accumulators. The body runs inside the block of [`super::row_pairs`].
//! Other bit-widths take the portable loops ([`super::lanes::dot_2xn`]), whose codes come out of one
//! loaded word with shifts and are as short.
//!
//! Tested against the reference on the Cortex-M3 under QEMU (`qfd-host kernel-test`), since this code
//! never runs on the host.
#![allow(unsafe_code)]

use super::lanes::LaneFormat;
use super::row_pairs::{row_pairs_into, Job};

/// Code `j` of one word of each row against both pixels: the weight codes at byte `$w` from the row
/// pointers, the activations at byte `$a` (pixel A) and `$a + 4` (pixel B) from `{x}`.
macro_rules! code {
    ($w:literal, $a:literal, $b:literal) => {
        concat!(
            "ldrb {w0}, [{p0}, #",
            $w,
            "]\n",
            "ldrb {w1}, [{p1}, #",
            $w,
            "]\n",
            "ldrh {xa}, [{x}, #",
            $a,
            "]\n",
            "ldrh {xb}, [{x}, #",
            $b,
            "]\n",
            "mla {a0}, {xa}, {w0}, {a0}\n",
            "mla {b0}, {xb}, {w0}, {b0}\n",
            "mla {a1}, {xa}, {w1}, {a1}\n",
            "mla {b1}, {xb}, {w1}, {b1}\n",
        )
    };
}

/// One word of each 8-bit row. A word's lane entries are `A (c0, c2)`, `B (c0, c2)`, `A (c1, c3)`,
/// `B (c1, c3)` (16 bytes, `lanes` module docs). The first code's loads advance the pointers (the row
/// pointers by a word, `x` by 16 bytes), the others read behind them.
macro_rules! bytes_word {
    () => {
        concat!(
            "ldrb {w0}, [{p0}], #4\n",
            "ldrb {w1}, [{p1}], #4\n",
            "ldrh {xa}, [{x}], #16\n",
            "ldrh {xb}, [{x}, #-12]\n",
            "mla {a0}, {xa}, {w0}, {a0}\n",
            "mla {b0}, {xb}, {w0}, {b0}\n",
            "mla {a1}, {xa}, {w1}, {a1}\n",
            "mla {b1}, {xb}, {w1}, {b1}\n",
            code!("-3", "-8", "-4"),
            code!("-2", "-14", "-10"),
            code!("-1", "-6", "-2"),
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
    if format.is_dot2() || format.bits() != 8 {
        return super::lanes::dot_2xn(x, rows, row_bytes, format, words, acc, accumulate);
    }
    let Some((mut job, p0, p1)) = Job::checked(x, rows, row_bytes, format, words, acc) else { return };
    let unrolled = words.is_multiple_of(2);
    if unrolled {
        job.passes = words / 2;
    }
    // SAFETY: `Job::checked` bounds every access. Per row pair, the block reads `4 * words` bytes from rows
    // 2q and 2q + 1 (`LDRB`) and the halves of the lanes of `words` words from `x` (`LDRH`, aligned), then
    // stores or adds to four `i32` of `acc` (`LDRD`, `STRD`, aligned), for every row pair. It also writes
    // `job`, which it owns, and its own stack slots (r7 and the job address), restoring sp and r7.
    unsafe {
        if unrolled {
            row_pairs_into!(accumulate, &mut job, p0, p1, 0u32, concat!(bytes_word!(), bytes_word!()))
        } else {
            row_pairs_into!(accumulate, &mut job, p0, p1, 0u32, bytes_word!())
        }
    }
}
