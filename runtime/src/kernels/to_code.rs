//! The last step of the convolution kernels: accumulators of one channel to output codes, exactly as
//! [`ToCode::apply`] does.
//!
//! Requantizing costs as much as a few dozen multiply-accumulates per output, so on cores with Thumb-2's
//! long multiply and flag-setting shifts (Armv7-M and Armv8-M Mainline, `--cfg qfd_v7m`) the usual case, a
//! divisor above `2^32`, is five instructions and a `USAT`: `SMULL`, the 64-bit offset added with
//! `ADDS`/`ADC`, and the rounding shift as `ASRS` (whose carry out is the last bit shifted out) plus `ADC`.
//! The "ties away from zero" bias (a borrow, `SUBS`/`SBC`) is needed only under a clamp whose lower bound
//! is above 0: it moves negative sums alone, which round to 0 or below and so clamp to code 0 either way.
//! Rust writes the carry chains as several instructions each, hence `asm!`. Other cases and other cores
//! call [`ToCode::apply`].
//!
//! Tested against the reference on every such board under QEMU (`qfd-host kernel-test`: the convolution
//! self-test draws requantizations of both signs, many shifts and narrowed clamps).

use crate::format::Clamp;
use crate::requant::{RequantParams, ToCode};

/// `round((acc * multiplier + offset) / 2^(32 + shift1))`, ties away from zero, for `shift1` in `1..=30`
/// (the value [`ToCode::apply`] clamps when its divisor `2^n` exceeds `2^32`, `shift1 = n - 32`), then
/// `$clamp` (a `USAT`, or nothing): an `i32`. `$operands` is `(acc, offset, multiplier)`. With an empty
/// `$bias`, ties of negative sums round up instead (for clamps that send every negative value to 0).
#[cfg(all(target_arch = "arm", qfd_v7m))]
macro_rules! high_rounded {
    ($operands:expr, $shift1:expr, $clamp:literal) => {
        high_rounded!($operands, $shift1, "subs {lo}, {lo}, {hi}, lsr #31\nsbc {hi}, {hi}, #0", $clamp)
    };
    ($operands:expr, $shift1:expr, $bias:literal, $clamp:literal) => {{
        let (acc, offset, multiplier): (i32, i64, i32) = $operands;
        let rounded: i32;
        // SAFETY: register arithmetic only (no memory, no stack); the flags it changes are declared
        // clobbered by default. `t = acc * multiplier + offset` as a 64-bit pair (exact: validation bounds
        // both terms below 2^62), with `$bias` minus 1 when `t < 0` (the borrow into the high word); then the high word
        // shifted right by `shift1`, plus the last bit shifted out (the carry of `ASRS`,
        // `1 <= shift1 <= 30`): `(u >> 1) + (u & 1)` with `u = (t >> 32) >> (shift1 - 1)`, as `requant`
        // computes it.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "smull {lo}, {hi}, {acc}, {m}",
                "adds {lo}, {lo}, {off_lo}",
                "adc {hi}, {hi}, {off_hi}",
                $bias,
                "asrs {hi}, {hi}, {shift1}",
                "adc {hi}, {hi}, #0",
                $clamp,
                acc = in(reg) acc,
                m = in(reg) multiplier,
                off_lo = in(reg) offset as u32,
                off_hi = in(reg) (offset >> 32) as i32,
                shift1 = in(reg) $shift1,
                lo = out(reg) _,
                hi = out(reg) rounded,
                options(pure, nomem, nostack),
            );
        }
        rounded
    }};
}

/// The codes of `accs`, accumulators of one channel requantized with `p` and clamped to `clamp`.
#[inline(always)]
pub(super) fn codes<const N: usize>(p: RequantParams, clamp: Clamp, accs: [i32; N]) -> [u8; N] {
    #[cfg(all(target_arch = "arm", qfd_v7m))]
    {
        // `n - 32` for the divisor `2^n = 2^(31 - shift)`: at most 30 for the shifts validation allows
        // (others give an unspecified code, never a panic).
        let shift1 = -1 - p.shift as i32;
        if shift1 >= 1 {
            let (offset, multiplier, shift1) = (p.offset, p.multiplier, shift1 as u32);
            // Each accumulator rounded, then clamped by `$clamp`. Where the clamp's lower bound is 0, the
            // ties-away bias is left out: it only moves negative sums, which round to 0 or below and so
            // clamp to code 0 either way.
            macro_rules! each {
                (unbiased $clamp:literal) => {
                    accs.map(|acc| high_rounded!((acc, offset, multiplier), shift1, "", $clamp))
                };
                ($clamp:literal) => {
                    accs.map(|acc| high_rounded!((acc, offset, multiplier), shift1, $clamp))
                };
            }
            // The clamp is `USAT` when it is a whole code range (the usual case), else two compares.
            let rounded = match (clamp.min, clamp.max) {
                (0, 255) => each!(unbiased "usat {hi}, #8, {hi}"),
                (0, 15) => each!(unbiased "usat {hi}, #4, {hi}"),
                (0, 3) => each!(unbiased "usat {hi}, #2, {hi}"),
                (0, 1) => each!(unbiased "usat {hi}, #1, {hi}"),
                (min, max) => each!("").map(|r| r.max(min as i32).min(max as i32)),
            };
            return rounded.map(|r| r as u8);
        }
        small_divisor(p.offset, p.multiplier, p.shift, clamp.min, clamp.max, accs)
    }
    #[cfg(not(all(target_arch = "arm", qfd_v7m)))]
    {
        let p = ToCode::new(p, clamp);
        accs.map(|acc| p.apply(acc))
    }
}

/// [`codes`] for divisors of at most `2^32` (scales of `2^-1` and more, rare), out of line and given
/// plain numbers, so that the usual case keeps its operands in registers.
#[cfg(all(target_arch = "arm", qfd_v7m))]
#[cold]
#[inline(never)]
fn small_divisor<const N: usize>(
    offset: i64,
    multiplier: i32,
    shift: i8,
    min: u8,
    max: u8,
    accs: [i32; N],
) -> [u8; N] {
    let p = ToCode::new(RequantParams { offset, multiplier, shift }, Clamp { min, max });
    accs.map(|acc| p.apply(acc))
}
