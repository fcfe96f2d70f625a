//! Fully connected layer over a flattened tensor of codes or of `i32` sums.

use super::conv::for_each_run;
use crate::codes::CodesMut;
use crate::format::FcOutput;
use crate::kernels::{odd_grid_acc, FcInput};
use crate::requant::{logit, requantize_to_code, ChannelRequant};
use crate::weights::PackedWeights;

/// `out[o] = sum_i x[i] * w[o][i]`, then requantized to codes or, for logits, `saturate_i32(acc + offset)`.
///
/// - `weights`: `[outputs][input.len()]`; `requant`: one entry per output.
/// - `output`: `outputs` codes of `output_bits` bits for [`FcOutput::Codes`], `4 * outputs` bytes (`i32`
///   LE) for [`FcOutput::Logits`].
pub fn fully_connected(
    input: FcInput<'_>,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    kind: FcOutput,
    outputs: usize,
    output_bits: u8,
    output: &mut [u8],
) {
    fully_connected_accumulate(input, weights, outputs, |o, acc| {
        fully_connected_output(o, acc, requant, kind, output_bits, output)
    });
}

/// Writes output `o` of a fully connected layer from its accumulator: a code, or a logit.
#[inline]
pub(crate) fn fully_connected_output(
    o: usize,
    acc: i32,
    requant: ChannelRequant<'_>,
    kind: FcOutput,
    output_bits: u8,
    output: &mut [u8],
) {
    let p = requant.get(o);
    match kind {
        FcOutput::Codes(clamp) => {
            CodesMut::new(output, output_bits).set(o, requantize_to_code(acc, p, clamp.min, clamp.max))
        }
        FcOutput::Logits => {
            output[4 * o..4 * o + 4].copy_from_slice(&logit(acc, p).to_le_bytes());
        }
    }
}

/// The accumulators of [`fully_connected`] before requantization: calls `emit(o, acc)` for each output.
#[inline]
pub fn fully_connected_accumulate(
    input: FcInput<'_>,
    weights: PackedWeights<'_>,
    outputs: usize,
    mut emit: impl FnMut(usize, i32),
) {
    let n = input.len();
    let sum_x = match input {
        FcInput::Codes { codes: x, .. } => {
            let mut s = 0i32;
            for_each_run(x, 0, n, |run, _| s += run.iter().map(|&c| c as i32).sum::<i32>());
            s
        }
        FcInput::SumsLe(_) => sums(input).fold(0i32, |a, s| a.wrapping_add(s)),
    };
    for o in 0..outputs {
        let sum_xk = match input {
            FcInput::Codes { codes: x, .. } => {
                let mut s = 0i32;
                for_each_run(x, 0, n, |run, j| s += weights.dot_codes(run, o * n + j));
                s
            }
            FcInput::SumsLe(_) => {
                sums(input).enumerate().map(|(i, s)| s * weights.code(o * n + i) as i32).sum()
            }
        };
        emit(o, odd_grid_acc(sum_xk, sum_x, weights.bits));
    }
}

fn sums<'a>(input: FcInput<'a>) -> impl Iterator<Item = i32> + 'a {
    let bytes = match input {
        FcInput::SumsLe(b) => b,
        FcInput::Codes { .. } => &[],
    };
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
