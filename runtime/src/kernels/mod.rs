//! Integer kernels on activation codes, and the choice of which variant runs.
//!
//! Every kernel reads codes in `H x W x C` order, stored as [`crate::codes`] packs them (the fully connected
//! layer also reads `i32` sums),
//! accumulates in `i32`, and produces codes through [`requantize_to_code`](crate::requant::requantize_to_code),
//! the single rounding routine. Shapes are given as [`Hwc`]; the caller guarantees that slices have the
//! lengths the shapes imply (the interpreter's load-time validation does, and so does generated code).
//!
//! Accumulators are formed as `2 * sum(x * k) - (2^bits - 1) * sum(x)` (see [`crate::weights`]); the combine
//! uses wrapping arithmetic, which is exact whenever the true result fits `i32`, as validation proves.
//!
//! How the module is laid out:
//! - [`reference`](mod@reference): the plain loops that define each op, bit for bit. Every faster variant is tested against
//!   them, on the host and on each board.
//! - `gemm`: convolution as a blocked matrix product over an im2col buffer (portable Rust), whose inner
//!   `2 x 2` dot product is the only part a core-specific variant replaces.
//! - `dsp` (Armv7E-M and Armv8-M Mainline with the DSP extension): that inner product with `SMLAD`;
//!   `mla` (Armv7-M without DSP, the Cortex-M3): the 8-bit one with `MLA`; `row_pairs`: the `asm!` loop
//!   over pairs of output channels that both run their bodies in; `mve` (Helium, the Cortex-M55): the
//!   inner product with `VMLADAVA`, sixteen multiply-accumulates an instruction, and Helium forms of the
//!   requantization, the depthwise convolution, the residual add, the global sum pool and the fully
//!   connected layer.
//! - `depthwise`: 3x3 depthwise convolution, one channel at a time with its weights in registers.
//! - `to_code`: the convolutions' last step, accumulators to codes (`SMULL` and carry tricks in `asm!` on
//!   Armv7-M and later).
//! - `add_table`: the residual add of packed codes by table, every pair of input codes requantized once.
//! - [`select`]: the one place that decides which variant runs an op, from the core's features (fixed when
//!   the runtime is compiled for a board) and the layer's shape. The interpreter and generated code both
//!   call the functions below, so they always run the same variant.

mod add_table;
mod depthwise;
mod gemm;
mod lanes;
pub mod reference;
mod scratch;
pub mod select;
mod to_code;

#[cfg(all(target_arch = "arm", qfd_dsp, not(qfd_v7m)))]
compile_error!("`--cfg qfd_dsp` needs `--cfg qfd_v7m` too (every DSP core runs Armv7-M or Armv8-M Mainline)");
#[cfg(all(target_arch = "arm", qfd_mve, not(qfd_dsp)))]
compile_error!("`--cfg qfd_mve` needs `--cfg qfd_dsp` too (every Helium core has the DSP extension)");

#[cfg(all(target_arch = "arm", qfd_dsp))]
mod dsp;
#[cfg(all(target_arch = "arm", qfd_v7m, not(qfd_dsp)))]
mod mla;
#[cfg(all(target_arch = "arm", qfd_mve))]
mod mve;
#[cfg(all(target_arch = "arm", qfd_v7m))]
mod row_pairs;

use crate::codes::{Codes, CodesMut};
use crate::format::{Clamp, FcOutput, Window};
use crate::requant::{ChannelRequant, RequantParams};
use crate::weights::PackedWeights;

pub use reference::{add_accumulate, avg_pool_accumulate, conv2d_accumulate, fully_connected_accumulate};
// The transformer ops run their reference kernels everywhere for now.
pub use reference::{
    attention_scores, attention_scores_accumulate, attention_values, attention_values_accumulate,
    channel_add, channel_add_accumulate, layer_norm, layer_norm_accumulate, lookup, softmax, AttentionShape,
    ExpParams, ProbCodes, PtfInput,
};
pub use select::{conv_scratch_bytes, ConvVariant};

/// A tensor shape: height, width, channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hwc {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Hwc {
    /// Builds a shape from `[H, W, C]`.
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Hwc { h, w, c }
    }
    /// Number of elements.
    pub const fn elems(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// Shapes and window of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input shape.
    pub input: Hwc,
    /// Output shape.
    pub output: Hwc,
    /// Kernel, stride and padding.
    pub window: Window,
    /// Channel groups (`input.c` and `output.c` are multiples of it).
    pub groups: usize,
    /// Bits of the input codes (1-8): low bit-widths let a kernel pack more products per instruction.
    pub input_bits: u8,
}

impl ConvGeometry {
    /// Codes in one output element's receptive field: `kh * kw * Cin / groups`.
    pub const fn patch_len(&self) -> usize {
        self.window.kernel[0] as usize * self.window.kernel[1] as usize * (self.input.c / self.groups)
    }
}

/// Shapes and window of a pool (input and output have the same channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Input shape.
    pub input: Hwc,
    /// Output shape.
    pub output: Hwc,
    /// Kernel, stride and padding.
    pub window: Window,
}

/// The input of a fully connected layer.
#[derive(Debug, Clone, Copy)]
pub enum FcInput<'a> {
    /// `len` activation codes.
    Codes {
        /// The codes.
        codes: Codes<'a>,
        /// How many.
        len: usize,
    },
    /// `i32` sums (a global sum pool's output), little-endian bytes.
    SumsLe(&'a [u8]),
}

impl FcInput<'_> {
    /// Number of input elements.
    pub fn len(&self) -> usize {
        match self {
            FcInput::Codes { len, .. } => *len,
            FcInput::SumsLe(b) => b.len() / 4,
        }
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `output[oy][ox][o] = clamp(requant_o(sum over taps and the group's input channels of x * w))`, by the
/// variant [`select::conv_variant`] picks for this core and shape.
///
/// - `input`: `geo.input.elems()` codes of `geo.input_bits` bits; `output`: `geo.output.elems()` codes.
/// - `weights`: `[Cout][kh][kw][Cin / groups]` codes of 1-8 bits; `requant`: one entry per output channel.
/// - `scratch`: at least [`conv_scratch_bytes`]`(geo, weights.bits)` bytes of working memory (any
///   alignment); its contents on entry and exit mean nothing.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: Codes<'_>,
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: CodesMut<'_>,
    scratch: &mut [u8],
) {
    match select::conv_variant(geo, weights.bits) {
        ConvVariant::Reference => reference::conv2d(input, geo, weights, requant, clamp, output),
        ConvVariant::Gemm(plan) => gemm::conv2d(input, geo, &plan, weights, requant, clamp, output, scratch),
        ConvVariant::Depthwise3x3 { four_channels } => {
            #[cfg(all(target_arch = "arm", qfd_mve))]
            let mut output = output;
            #[cfg(all(target_arch = "arm", qfd_mve))]
            if mve::depthwise::depthwise3x3(input, geo, weights, requant, clamp, &mut output, scratch) {
                return;
            }
            depthwise::depthwise3x3(input, geo, four_channels, weights, requant, clamp, output, scratch)
        }
    }
}

/// Fully connected layer: `out[o] = sum_i x[i] * w[o][i]`, requantized to codes or, for logits,
/// `saturate_i32(acc + offset)`. See [`reference::fully_connected`] for the layout of each argument.
pub fn fully_connected(
    input: FcInput<'_>,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    kind: FcOutput,
    outputs: usize,
    output_bits: u8,
    output: &mut [u8],
) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if let FcInput::SumsLe(sums) = input {
        let emit = |o, sum_xk, sum_x| {
            let acc = odd_grid_acc(sum_xk, sum_x, weights.bits);
            reference::fully_connected_output(o, acc, requant, kind, output_bits, output)
        };
        if mve::sums::fully_connected_sums(sums, weights.data, weights.bits, outputs, emit) {
            return;
        }
    }
    reference::fully_connected(input, weights, requant, kind, outputs, output_bits, output)
}

/// Max pool: the largest code of each window (padding never wins; a window wholly in the padding gives 0).
pub fn max_pool(input: Codes<'_>, geo: &PoolGeometry, output: CodesMut<'_>) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    let mut output = output;
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if mve::pool::max_pool(input, geo, &mut output) {
        return;
    }
    reference::max_pool(input, geo, output)
}

/// Global sum pool: the `i32` sum of each channel's codes over all pixels, little-endian, into `output`.
pub fn global_sum_pool(input: Codes<'_>, shape: Hwc, output: &mut [u8]) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if mve::sums::global_sum_pool(input, shape, output) {
        return;
    }
    reference::global_sum_pool(input, shape, output)
}

/// Residual add of `len` codes: `out[i] = clamp(requant(a[i] * weights[0] + b[i] * weights[1]))`.
pub fn add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
    out: CodesMut<'_>,
) {
    let mut out = out;
    if add_table::add(a, b, len, weights, requant, clamp, &mut out) {
        return;
    }
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if mve::to_code::add(a, b, len, weights, requant, clamp, &mut out) {
        return;
    }
    reference::add(a, b, len, weights, requant, clamp, out)
}

/// Average pool: the window sum (padding counts as code 0) requantized by `requant`.
pub fn avg_pool(
    input: Codes<'_>,
    geo: &PoolGeometry,
    requant: RequantParams,
    clamp: Clamp,
    output: CodesMut<'_>,
) {
    #[cfg(all(target_arch = "arm", qfd_mve))]
    let mut output = output;
    #[cfg(all(target_arch = "arm", qfd_mve))]
    if mve::pool::avg_pool(input, geo, requant, clamp, &mut output) {
        return;
    }
    reference::avg_pool(input, geo, requant, clamp, output)
}

/// Combines the two halves of a dot product against odd-grid weights: `2 * sum(x*k) - (2^bits - 1) * sum(x)`.
#[inline]
pub(crate) fn odd_grid_acc(sum_xk: i32, sum_x: i32, bits: u8) -> i32 {
    sum_xk.wrapping_mul(2).wrapping_sub(crate::weights::max_code(bits).wrapping_mul(sum_x))
}

/// Visits the valid taps of a window placed at output pixel `(oy, ox)`: calls `f(iy, ix, tap)` for each tap
/// inside the input. Padding taps are skipped, which is the same as reading code 0 for every kernel here.
#[inline]
pub(crate) fn for_each_tap(
    window: &Window,
    input: Hwc,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let [kh, kw] = [window.kernel[0] as usize, window.kernel[1] as usize];
    let y0 = (oy * window.stride[0] as usize) as isize - window.padding.top as isize;
    let x0 = (ox * window.stride[1] as usize) as isize - window.padding.left as isize;
    for ky in 0..kh {
        let iy = y0 + ky as isize;
        if iy < 0 || iy >= input.h as isize {
            continue;
        }
        for kx in 0..kw {
            let ix = x0 + kx as isize;
            if ix < 0 || ix >= input.w as isize {
                continue;
            }
            f(iy as usize, ix as usize, ky * kw + kx);
        }
    }
}
