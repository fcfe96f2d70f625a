//! The loop that the `asm!` inner products of [`super::gemm`] share ([`super::dsp`] with `SMLAD`,
//! [`super::mla`] with `MLA`): one block runs every pair of output channels for a pair of pixels, the loop
//! over a row pair's words, then the four sums stored (or added to memory) and the next row pair set up,
//! without leaving the block.
//!
//! A block uses 13 or 14 registers: the compiler allocates the operands, and `r7`, which it reserves (the
//! Thumb frame pointer) and cannot hand out as an operand, is saved and restored inside the block and is
//! free for the body. What the block needs between row pairs (where the lanes start, the loop count,
//! where the sums go) it reads from a [`Job`] whose address it keeps on the stack. The body may use `w0`,
//! `w1`, `xa`, `xb` and `r7` as it likes; it advances `x`, `p0` and `p1` past the words it read, and
//! adds its products to `a0`, `b0`, `a1`, `b1` (row 0 and row 1, pixels A and B).

use super::lanes::LaneFormat;

/// What the block reads between row pairs. Field offsets are fixed (`repr(C)`, 32-bit target): 0, 4, 8,
/// 12, 16.
#[repr(C)]
pub(super) struct Job {
    /// First lane entry of the two pixels.
    pub(super) x: *const u32,
    /// Inner-loop passes per row pair.
    pub(super) passes: usize,
    /// Bytes from the end of a row's words to the start of the row two further on.
    pub(super) advance: usize,
    /// Row pairs left.
    pub(super) pairs: usize,
    /// Where the next four sums go.
    pub(super) out: *mut i32,
}

/// Stores a row pair's four sums at `[{w1}]` (advancing it).
macro_rules! store_sums {
    () => {
        concat!("strd {a0}, {b0}, [{w1}], #8\n", "strd {a1}, {b1}, [{w1}], #8\n")
    };
}

/// Adds a row pair's four sums to the sums at `[{w1}]` (advancing it): a later chunk of a patch's taps.
macro_rules! add_sums {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{w1}]\n",
            "add {a0}, {a0}, {xa}\n",
            "add {b0}, {b0}, {xb}\n",
            "ldrd {xa}, {xb}, [{w1}, #8]\n",
            "add {a1}, {a1}, {xa}\n",
            "add {b1}, {b1}, {xb}\n",
            $crate::kernels::row_pairs::store_sums!(),
        )
    };
}

/// [`row_pairs!`] with the sums stored, or added to memory when `$accumulate`: two blocks, so that the
/// common single-chunk case pays nothing for the other.
macro_rules! row_pairs_into {
    ($accumulate:expr, $job:expr, $p0:expr, $p1:expr, $mask:expr, $body:expr) => {
        if $accumulate {
            $crate::kernels::row_pairs::row_pairs!(
                $job,
                $p0,
                $p1,
                $mask,
                $body,
                $crate::kernels::row_pairs::add_sums!()
            )
        } else {
            $crate::kernels::row_pairs::row_pairs!(
                $job,
                $p0,
                $p1,
                $mask,
                $body,
                $crate::kernels::row_pairs::store_sums!()
            )
        }
    };
}

/// The block: for each row pair, `passes` runs of `$body`, then the sums added to memory (`$store`) and the next
/// pair set up. Temporaries between pairs: `w0`, `w1`, `xa`, `xb` and `r7` (all reloaded by the body).
macro_rules! row_pairs {
    ($job:expr, $p0:expr, $p1:expr, $mask:expr, $body:expr, $store:expr) => {{
        let job: &mut Job = $job;
        let (x, passes, p0, p1) = (job.x, job.passes, $p0, $p1);
        core::arch::asm!(
            "push {{r7}}",
            "push {{{w0}}}",
            "mov {a0}, #0",
            "mov {b0}, #0",
            "mov {a1}, #0",
            "mov {b1}, #0",
            "2:",
            "3:",
            $body,
            "@ the lane mask of packed codes: {mask}",
            "subs {n}, {n}, #1",
            "bne 3b",
            "ldr {w0}, [sp]",
            "ldr {w1}, [{w0}, #16]",
            $store,
            "str {w1}, [{w0}, #16]",
            "ldr {w1}, [{w0}, #8]",
            "add {p0}, {p0}, {w1}",
            "add {p1}, {p1}, {w1}",
            "ldr {x}, [{w0}]",
            "ldr {n}, [{w0}, #4]",
            "mov {a0}, #0",
            "mov {b0}, #0",
            "mov {a1}, #0",
            "mov {b1}, #0",
            "ldr {w1}, [{w0}, #12]",
            "subs {w1}, {w1}, #1",
            "str {w1}, [{w0}, #12]",
            "bne 2b",
            "add sp, sp, #4",
            "pop {{r7}}",
            w0 = inout(reg) job as *mut Job => _,
            x = inout(reg) x => _,
            p0 = inout(reg) p0 => _,
            p1 = inout(reg) p1 => _,
            n = inout(reg) passes => _,
            a0 = out(reg) _,
            b0 = out(reg) _,
            a1 = out(reg) _,
            b1 = out(reg) _,
            w1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            mask = in(reg) $mask,
        );
    }};
}

impl Job {
    /// The job of [`super::lanes::dot_2xn`]'s operands, one pass per word, and the starts of rows 0 and
    /// 1; `None` when there are no row pairs. Panics unless the operands hold the ranges a block reads and
    /// writes: `4 * words` bytes of each row, the two pixels' lanes of `words` words, four aligned `i32`
    /// sums per row pair. Checking them here keeps the blocks sound for any caller.
    pub(super) fn checked(
        x: &[u32],
        rows: &[u8],
        row_bytes: usize,
        format: LaneFormat,
        words: usize,
        acc: &mut [i32],
    ) -> Option<(Job, *const u8, *const u8)> {
        let pairs = acc.len() / 4;
        if pairs == 0 {
            return None;
        }
        let lanes = 2 * words * format.lanes_per_word();
        assert!(words > 0 && x.len() >= lanes && row_bytes >= 4 * words);
        assert!(rows.len() >= (2 * pairs - 1) * row_bytes + 4 * words);
        assert!(acc.len() == 4 * pairs && (acc.as_ptr() as usize).is_multiple_of(4));
        // From the end of row 2q's words to the start of row 2q + 2 (p0), and the same for p1.
        let advance = 2 * row_bytes - 4 * words;
        let job = Job { x: x.as_ptr(), passes: words, advance, pairs, out: acc.as_mut_ptr() };
        Some((job, rows.as_ptr(), rows[row_bytes..].as_ptr()))
    }
}

pub(super) use {add_sums, row_pairs, row_pairs_into, store_sums};
