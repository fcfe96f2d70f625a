//! The requantization of `docs/arithmetic.md` on tensors: `i32` accumulators to output codes.
//!
//! Two exact forms, chosen by what the backend offers:
//!
//! - [`Requant::Wide`], with 64-bit integers: the formula itself, `p = acc * multiplier + offset` in `i64`,
//!   `u = (p - (p < 0)) >> (n - 1)`, `code = clamp((u >> 1) + (u & 1))`, element for element.
//! - [`Requant::Thresholds`], with 32-bit integers only (WGSL has no `i64`): the requantization of one
//!   channel is a monotone step function of `acc`, so a code is the number of its steps that `acc` passes.
//!   The steps are found at load time by the runtime's own [`requantize_to_code`] (a binary search over
//!   `acc` per code), and at run time a binary search over each channel's sorted steps counts them with
//!   `i32` comparisons. Nothing is re-derived, so nothing can round differently.

use burn_backend::{Backend, IntDType};

use qfd_runtime::format::Clamp;
use qfd_runtime::requant::{divisor_bits, requantize_to_code, RequantParams};

use crate::tensor::Ints;

/// The requantization of a `[rows, C]` accumulator tensor, one record per channel (or one for all).
#[derive(Debug)]
pub(crate) enum Requant<B: Backend> {
    /// The formula in 64-bit integers; every tensor is `[1, C]` `i64`.
    Wide {
        multiplier: Ints<B>,
        offset: Ints<B>,
        /// `n - 1` for the divisor `2^n = 2^(31 - shift)`.
        shift: Ints<B>,
        clamp: Clamp,
    },
    /// Step counting in 32-bit integers.
    Thresholds {
        /// `[1, C]`: 1 where the code grows with `acc` (multiplier >= 0), -1 where it falls.
        sign: Ints<B>,
        /// `[C * 2^depth]`: channel `c`'s steps `λ_1 <= λ_2 <= ...` from `c * 2^depth`, padded with
        /// `i32::MAX`. `sign * acc > λ_v` exactly when the code is at least `clamp.min + v`.
        steps: Ints<B>,
        /// `[1, C]`: `c * 2^depth`, where channel `c`'s steps start.
        first: Ints<B>,
        /// Binary search rounds: `2^depth` exceeds the number of steps, `clamp.max - clamp.min`, so the
        /// count reaches every value from 0 to that number.
        depth: u32,
        clamp: Clamp,
    },
}

impl<B: Backend> Requant<B> {
    /// The requantization of `params` (one per channel, or one shared by every element) into `clamp`.
    pub fn new(params: &[RequantParams], clamp: Clamp, wide: bool, device: &B::Device) -> Self {
        if wide {
            let row = |v: Vec<i64>| {
                let len = v.len();
                Ints::new_i64(v, &[1, len], device)
            };
            return Requant::Wide {
                multiplier: row(params.iter().map(|p| p.multiplier as i64).collect()),
                offset: row(params.iter().map(|p| p.offset).collect()),
                // The rounding shifts by n - 1 for the divisor 2^n (the runtime's `divisor_bits`).
                shift: row(params.iter().map(|&p| i64::from(divisor_bits(p)) - 1).collect()),
                clamp,
            };
        }
        let levels = usize::from(clamp.max - clamp.min);
        let depth = (levels + 1).next_power_of_two().trailing_zeros();
        let width = 1usize << depth;
        let mut steps = Vec::with_capacity(params.len() * width);
        for &p in params {
            let table = channel_steps(p, clamp);
            steps.extend_from_slice(&table);
            steps.resize(steps.len() + width - table.len(), i32::MAX);
        }
        let sign = params.iter().map(|p| if p.multiplier < 0 { -1 } else { 1 }).collect();
        let first = (0..params.len()).map(|c| (c * width) as i32).collect();
        let (len, channels) = (steps.len(), params.len());
        Requant::Thresholds {
            sign: Ints::new(sign, &[1, channels], device),
            steps: Ints::new(steps, &[len], device),
            first: Ints::new(first, &[1, channels], device),
            depth,
            clamp,
        }
    }

    /// Codes of `acc`, `[rows, C]` `i32` (any `C` when one record is shared), as `i32`.
    pub fn apply(&self, acc: Ints<B>) -> Ints<B> {
        let dims = acc.dims();
        match self {
            Requant::Wide { multiplier, offset, shift, clamp } => {
                let p = acc.cast(IntDType::I64).mul(multiplier).add(offset);
                // `p - (p < 0)`: the arithmetic shift by 63 is -1 for negative `p`, 0 otherwise.
                let t = p.clone().add(&p.shift_right_scalar(63));
                let u = t.shift_right(&shift.clone().expand(&dims));
                let rounded = u.clone().shift_right_scalar(1).add(&u.and_scalar(1));
                rounded.clamp(clamp.min as i64, clamp.max as i64).cast(IntDType::I32)
            }
            Requant::Thresholds { sign, steps, first, depth, clamp } => {
                let y = acc.mul(sign);
                let base = first.clone().expand(&dims);
                // Lower-bound search: `passed` counts the steps below `y`, half the remaining range a round.
                let mut passed = Ints::zeros(&dims, &y.device());
                for round in (0..*depth).rev() {
                    let half = 1i64 << round;
                    let index =
                        base.clone().add(&passed).add_scalar(half - 1).reshape(&[dims.iter().product()]);
                    let step = steps.clone().select(0, &index).reshape(&dims);
                    passed = passed.add(&y.clone().greater(&step).mul_scalar(half));
                }
                passed.add_scalar(clamp.min as i64)
            }
        }
    }
}

/// The steps of one channel: `λ_v` for `v = 1..=max-min`, the largest `y` in `i32` whose code is below
/// `min + v`, where `y = acc` for a multiplier of either sign flipped to make the code grow with `y`
/// (`i32::MIN` when every accumulator reaches it: no validated model has `acc = i32::MIN`).
pub(crate) fn channel_steps(p: RequantParams, clamp: Clamp) -> Vec<i32> {
    let flip = p.multiplier < 0;
    // The code as a nondecreasing function of `y`; `y = -acc` never overflows for `y > i32::MIN`.
    let code = |y: i32| requantize_to_code(if flip { -y } else { y }, p, clamp.min, clamp.max);
    (clamp.min + 1..=clamp.max)
        .map(|v| {
            // Largest y with code(y) < v, searched in [i32::MIN, i32::MAX] with i32::MIN meaning "none".
            let (mut below, mut above) = (i32::MIN as i64, i32::MAX as i64 + 1);
            if code(i32::MAX) < v {
                return i32::MAX;
            }
            // Invariant: code(below) < v (or below is the sentinel), code(above) >= v.
            while above - below > 1 {
                let mid = below + (above - below) / 2;
                if code(mid as i32) < v {
                    below = mid;
                } else {
                    above = mid;
                }
            }
            below as i32
        })
        .collect()
}
