//! Which kernel variant runs an op: the one place that decides, for the interpreter and generated code
//! alike.
//!
//! The decision depends on two things only:
//! - the core's features, fixed when the runtime is compiled for a board ([`Core::COMPILED`]): a board
//!   file's `dsp = true` becomes `--cfg qfd_dsp` and `mve = true` `--cfg qfd_mve` beside `-C target-cpu`
//!   (`qfd_boards::Board::rustflags`; Rust's own `target_feature = "dsp"` is not available on stable); the
//!   host can ask what a board would run by passing that board's [`Core`];
//! - the layer's shape and bit-widths.
//!
//! A variant never changes a result: every variant is tested against [`super::reference`] bit for bit.

use super::lanes::LaneFormat;
use super::scratch::ALIGN_SLACK;
use super::ConvGeometry;
use crate::codes::storage_bits;

/// The instruction-set features that change which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Core {
    /// Armv7E-M / Armv8-M DSP extension (`SMLAD`, `UXTB16`).
    pub dsp: bool,
    /// Armv8.1-M Helium (M-profile vector extension: `VMLADAVA`, tail-predicated loops).
    pub mve: bool,
}

impl Core {
    /// The core this copy of the runtime was compiled for.
    pub const COMPILED: Core =
        Core { dsp: cfg!(all(target_arch = "arm", qfd_dsp)), mve: cfg!(all(target_arch = "arm", qfd_mve)) };

    /// Every combination the kernels tell apart: no extension (Cortex-M0+/M3 and the host), DSP, Helium.
    pub const ALL: [Core; 3] =
        [Core { dsp: false, mve: false }, Core { dsp: true, mve: false }, Core { dsp: true, mve: true }];
}

/// How a convolution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvVariant {
    /// [`super::reference::conv2d`]: any shape (grouped and depthwise convolutions today).
    Reference,
    /// im2col of two output pixels, then a `2 x 2` (pixels x channels) blocked dot product.
    Gemm(GemmPlan),
    /// 3x3 depthwise on inputs at least 3 wide: one channel at a time, its nine weights held in registers;
    /// with `four_channels` (DSP cores, channels a multiple of 4), four channels per word load instead.
    Depthwise3x3 {
        /// Four channels at a time with `SMLABB`/`SMLATT`.
        four_channels: bool,
    },
}

impl ConvVariant {
    /// A short name for reports (`qfd-host inspect`, the speed report), as run on `core`.
    pub fn name(&self, core: Core) -> &'static str {
        match (self, core.dsp) {
            (ConvVariant::Reference, _) => "reference",
            (ConvVariant::Gemm(p), _) if p.format.is_vector() => "im2col-2x2-mve",
            (ConvVariant::Gemm(p), true) if p.format.is_dot2() => "im2col-2x2-smlad-2codes",
            (ConvVariant::Gemm(_), true) => "im2col-2x2-smlad",
            (ConvVariant::Gemm(p), false) if p.format.is_dot2() => "im2col-2x2-2codes",
            (ConvVariant::Gemm(_), false) => "im2col-2x2",
            // (Helium runs byte-stored codes and outputs with vectors, the rest as the DSP cores do.)
            (ConvVariant::Depthwise3x3 { .. }, _) if core.mve => "depthwise-3x3-mve",
            (ConvVariant::Depthwise3x3 { four_channels: true }, _) => "depthwise-3x3-smlaxy",
            (ConvVariant::Depthwise3x3 { .. }, _) => "depthwise-3x3",
        }
    }
}

/// The shape of a [`ConvVariant::Gemm`] convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    /// How weight words split into lanes.
    pub format: LaneFormat,
    /// Codes in one patch (`kh * kw * Cin`).
    pub patch: usize,
    /// Input channels.
    pub cin: usize,
    /// Whole weight words per output channel; they cover the first `words * codes_per_word` codes.
    pub words: usize,
    /// Codes after those (fewer than a word), done one at a time.
    pub tail: usize,
    /// Output channels.
    pub channels: usize,
    /// Taps gathered and multiplied at a time (all of them unless `direct`): the im2col buffer holds this
    /// many taps of two pixels, so that wide layers need no more scratch than narrow ones.
    pub chunk_taps: usize,
    /// Whether each tap is whole words of the format (`Cin` a multiple of the codes per word) and the input
    /// is stored a byte per code or packed as the weights are, so the im2col unpacks straight from the
    /// input and needs no copy of the patch.
    pub direct: bool,
}

impl GemmPlan {
    /// Patch codes covered by whole words.
    pub const fn full(&self) -> usize {
        self.words * self.format.codes_per_word()
    }

    /// Weight words of one tap (meaningful when `direct`, where a tap is whole words).
    pub const fn tap_words(&self) -> usize {
        self.words / self.taps()
    }

    /// Taps of the window.
    pub const fn taps(&self) -> usize {
        self.patch / self.cin
    }

    /// Weight words of one chunk of taps.
    pub const fn chunk_words(&self) -> usize {
        if self.direct {
            self.chunk_taps * self.tap_words()
        } else {
            self.words
        }
    }

    /// Lane entries of the im2col buffer for two pixels (one `u32` each), one chunk of taps.
    pub const fn lane_entries(&self) -> usize {
        2 * self.format.lanes_per_word() * self.chunk_words()
    }

    /// Bytes of one output channel's weights.
    pub const fn row_bytes(&self) -> usize {
        self.patch * self.format.bits() as usize / 8
    }

    /// Bytes of the gathered patch of one pixel (rounded to whole words); none for a direct im2col, nor
    /// for codes that stay bytes (gathered straight into the lanes).
    pub const fn patch_bytes(&self) -> usize {
        if self.direct || self.format.is_vector() {
            0
        } else {
            self.patch.div_ceil(4) * 4
        }
    }

    /// Words of scratch after the patch: the lanes and tails of two pixels, four sums per pair of output
    /// channels, then (on Helium) [`param_words`](Self::param_words).
    pub const fn scratch_words(&self) -> usize {
        self.lane_entries() + 2 * self.tail + 2 * self.channels + self.param_words()
    }

    /// Words of the layer's requantization laid out for vector lanes, four per channel in blocks of four
    /// channels (the vector formats only, which requantize four channels an instruction).
    pub const fn param_words(&self) -> usize {
        if self.format.is_vector() {
            16 * self.channels.div_ceil(4)
        } else {
            0
        }
    }

    /// Bytes of scratch the kernel needs: the staged outputs, the patch, then
    /// [`scratch_words`](Self::scratch_words).
    pub const fn scratch_bytes(&self) -> usize {
        self.staging_bytes() + self.patch_bytes() + ALIGN_SLACK + 4 * self.scratch_words()
    }

    /// Bytes where a pixel pair's output codes wait, a byte each, to be packed (two pixels' channels).
    pub const fn staging_bytes(&self) -> usize {
        2 * self.channels
    }
}

/// Bytes of im2col lanes a direct im2col gathers at a time from a packed input: three taps of 64 channels.
/// Smaller chunks cost a call and a pass over the output sums each (about 1% here), and keep the largest
/// scratch of a ResNet-8 near 1.3 KB, so that a 4-bit model's arena is half an 8-bit one's.
pub const PACKED_LANE_BUDGET: usize = 768;

/// The same for inputs stored a byte per code: nine taps of 64 channels, so that the layers of the usual
/// models are gathered whole; their tensors are twice or more the size of the lanes anyway.
pub const BYTE_LANE_BUDGET: usize = 2304;

/// The variant that runs a convolution of this shape with `weight_bits`-bit weights on this core.
pub fn conv_variant(geo: &ConvGeometry, weight_bits: u8) -> ConvVariant {
    conv_variant_on(geo, weight_bits, Core::COMPILED)
}

/// The variant that runs a convolution of this shape with `weight_bits`-bit weights on `core`.
pub fn conv_variant_on(geo: &ConvGeometry, weight_bits: u8, core: Core) -> ConvVariant {
    let depthwise = geo.groups == geo.input.c && geo.groups == geo.output.c && geo.groups > 1;
    // The depthwise kernel moves border windows inside the input, by at most 2 columns: inputs at least 3
    // columns wide, padding at most 2.
    let pad = geo.window.padding;
    let small_pad = pad.top <= 2 && pad.left <= 2 && pad.bottom <= 2 && pad.right <= 2;
    if depthwise && geo.window.kernel == [3, 3] && geo.input.w >= 3 && small_pad {
        let four_channels = core.dsp && geo.input.c.is_multiple_of(4);
        return ConvVariant::Depthwise3x3 { four_channels };
    }
    if geo.groups != 1 {
        return ConvVariant::Reference;
    }
    // Two codes per lane where products cannot outgrow the lane's fields: 2-bit weights and activations.
    // On Helium, 8-bit weights, and 4 or 2-bit ones against activations of the same width (whole bytes of
    // codes per input pixel), stay as stored for the vector multiply-accumulate.
    let cin = geo.input.c / geo.groups;
    let format = if core.mve && storage_bits(weight_bits) == 8 {
        LaneFormat::vector(8)
    } else if core.mve && weight_bits == 4 && geo.input_bits == 4 && cin.is_multiple_of(2) {
        LaneFormat::vector(4)
    } else if core.mve && weight_bits == 2 && geo.input_bits == 2 && cin.is_multiple_of(4) {
        LaneFormat::vector(2)
    } else if weight_bits == 2 && geo.input_bits <= 2 {
        LaneFormat::dot2()
    } else {
        LaneFormat::for_weight_bits(weight_bits)
    };
    let patch = geo.patch_len();
    // The vector kernel reads a patch of any length (its last word padded); the others take whole words
    // and do the codes after them (the tail) one at a time.
    let words = if format.is_vector() {
        patch.div_ceil(format.codes_per_word())
    } else {
        patch / format.codes_per_word()
    };
    // Each channel's weights must start on a byte, so that its words can be read directly.
    if words == 0 || !(patch * format.bits() as usize).is_multiple_of(8) {
        return ConvVariant::Reference;
    }
    let tail = patch.saturating_sub(words * format.codes_per_word());
    // Inputs stored a byte per code, or packed like the weights (a 4-bit input against 4-bit weights, a
    // 2-bit one in the two-codes-per-lane format), turn into lanes in place; other packed ones are
    // unpacked into the patch first.
    let in_place = match storage_bits(geo.input_bits) {
        8 => true,
        bits => bits == format.bits(),
    };
    // (The vector kernel gathers whole patches: its patch is read as one run.)
    let direct = in_place && cin.is_multiple_of(format.codes_per_word()) && !format.is_vector();
    let taps = patch / cin;
    let mut plan =
        GemmPlan { format, patch, cin, words, tail, channels: geo.output.c, chunk_taps: taps, direct };
    if direct {
        // Taps are gathered a chunk at a time within a budget of lane bytes (at least one tap); with every
        // tap in one chunk, the plan's lanes are all the taps'.
        let budget = if storage_bits(geo.input_bits) == 8 { BYTE_LANE_BUDGET } else { PACKED_LANE_BUDGET };
        let tap_bytes = 4 * plan.lane_entries() / taps;
        plan.chunk_taps = (budget / tap_bytes).clamp(1, taps);
    }
    ConvVariant::Gemm(plan)
}

/// Bytes of scratch [`super::conv2d`] needs for this shape on this core (0 when it needs none).
pub fn conv_scratch_bytes(geo: &ConvGeometry, weight_bits: u8) -> usize {
    conv_scratch_bytes_on(geo, weight_bits, Core::COMPILED)
}

/// Bytes of scratch [`super::conv2d`] needs for this shape on `core`: what the host sizes a board's arena
/// with.
pub fn conv_scratch_bytes_on(geo: &ConvGeometry, weight_bits: u8, core: Core) -> usize {
    match conv_variant_on(geo, weight_bits, core) {
        ConvVariant::Reference => 0,
        // The same for both forms, so that the host, which sizes generated code's arena, agrees with the board.
        ConvVariant::Depthwise3x3 { .. } if core.mve => {
            // The Helium form, or the other where the layer does not allow it.
            let helium = super::depthwise::helium_scratch_bytes(geo);
            let other = super::depthwise::scratch_bytes(geo);
            if helium > other {
                helium
            } else {
                other
            }
        }
        ConvVariant::Depthwise3x3 { .. } => super::depthwise::scratch_bytes(geo),
        ConvVariant::Gemm(plan) => plan.scratch_bytes(),
    }
}
