//! Convolutions of the vector formats on Helium, the usual case: per pair of output pixels, each pixel's
//! patch as one run of codes (read in place for a 1x1 window of stride 1 without padding, MobileNet's
//! pointwise layers; else gathered into scratch, [`crate::kernels::gemm`]'s im2col), the two pixels' code
//! sums ([`super::code_sum`]), the dot products against every pair of weight rows ([`super::dot_2px`]),
//! and the vector requantization ([`super::to_code::codes_2px_stored`]). Layers it does not take (an odd
//! number of output channels, a requantization of the scalar form) run in the general gemm loop.

use super::to_code::{channel_vectors, codes_2px_stored, packing, whole_range_bits};
use super::{code_sum, dot_2px};
use crate::codes::{storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::gemm::{gather_run, Scratch};
use crate::kernels::scratch;
use crate::kernels::select::GemmPlan;
use crate::kernels::ConvGeometry;
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

/// Runs the layer that `plan` describes if it is one this kernel takes, in the gemm kernel's scratch;
/// returns whether it did. It takes: a vector format, an even number of output channels, the usual
/// requantization and a whole-range clamp ([`channel_vectors`], [`whole_range_bits`]), and outputs stored
/// a byte each or packed by the vector loop ([`packing`]).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: Codes<'_>,
    geo: &ConvGeometry,
    plan: &GemmPlan,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: &mut CodesMut<'_>,
    scratch: &mut [u8],
) -> bool {
    let (channels, bits) = (geo.output.c, plan.format.bits());
    let Some(clamp_bits) = whole_range_bits(clamp).filter(|_| plan.format.is_vector() && channels % 2 == 0)
    else {
        return false;
    };
    let per = match packing(clamp_bits, output.bits(), channels) {
        Some(per) => per,
        None if !output.is_packed() => 1,
        None => return false,
    };
    let Scratch { staging, lanes, sums, params, .. } = Scratch::split(plan, scratch);
    if !channel_vectors(requant, channels, params) {
        return false;
    }

    let pixels = geo.output.h * geo.output.w;
    let in_place = in_place(geo, storage_bits(input.bits()), bits);
    let (row_bytes, out_bytes) = (plan.row_bytes(), channels / per);
    let top = max_code(weights.bits);
    let out = output.bytes_mut();
    for a in (0..pixels).step_by(2) {
        // An odd last pixel is taken twice and its second result dropped (into `staging`).
        let b = if a + 1 < pixels { a + 1 } else { a };
        let (xa, xb, sum_x) = if in_place {
            let codes = input.bytes();
            let xa = &codes[a * row_bytes..(a + 1) * row_bytes];
            let xb = &codes[b * row_bytes..(b + 1) * row_bytes];
            let sum_x = match bits {
                4 => [code_sum::<4>(xa), code_sum::<4>(xb)],
                2 => [code_sum::<2>(xa), code_sum::<2>(xb)],
                _ => [code_sum::<8>(xa), code_sum::<8>(xb)],
            };
            (xa, xb, sum_x)
        } else {
            let sum_x =
                [gather_run(input, geo, plan, a, 0, lanes), gather_run(input, geo, plan, b, 1, lanes)];
            let (run_a, run_b) = lanes[..2 * plan.words].split_at(plan.words);
            (&scratch::bytes(run_a)[..row_bytes], &scratch::bytes(run_b)[..row_bytes], sum_x)
        };
        dot_2px(xa, xb, weights.data, row_bytes, bits, sums, false);
        let grid = sum_x.map(|x| top.wrapping_mul(x as i32));
        let (out_a, rest) = out[a * out_bytes..].split_at_mut(out_bytes);
        let out_b = if b != a { &mut rest[..out_bytes] } else { &mut staging[..out_bytes] };
        codes_2px_stored(per, sums, params, grid, clamp_bits, out_a, out_b);
    }
    true
}

/// Whether each output pixel's patch is its input pixel's codes, whole bytes of them stored as the vector
/// format reads them: a 1x1 window of stride 1 without padding.
fn in_place(geo: &ConvGeometry, input_storage_bits: u32, bits: u32) -> bool {
    let win = &geo.window;
    let p = win.padding;
    win.kernel == [1, 1]
        && win.stride == [1, 1]
        && [p.top, p.left, p.bottom, p.right] == [0; 4]
        && input_storage_bits == bits
        && (geo.input.c * bits as usize).is_multiple_of(8)
}
