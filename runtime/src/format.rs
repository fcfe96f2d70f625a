//! The `.qfdm` model format: the one definition of what a model file holds.
//!
//! A file is a postcard-encoded [`FileHeader`] whose `payload` is a postcard-encoded [`ModelDesc`]. Weight and
//! requantization data are borrowed from the file bytes (never copied); the op and value tables are decoded
//! into fixed-capacity arrays. `docs/format.md` describes every field and the versioning rules.
//!
//! Conventions:
//! - Tensors are `H x W x C`, channel fastest. Value 0 is the model input; op `i` writes value `i + 1`; the last
//!   op's value is the output (`1 x 1 x classes` of `i32` logits).
//! - Weight codes `k` are unsigned in `[0, 2^bits - 1]` and stand for the odd integer `2k - (2^bits - 1)`.

use serde::{Deserialize, Serialize};

pub use crate::ops::{
    AddDesc, AttentionScoresDesc, AttentionValuesDesc, AvgPoolDesc, ChannelAddDesc, Conv2dDesc, FcOutput,
    FullyConnectedDesc, GlobalSumPoolDesc, LayerNormDesc, LookupDesc, MaxPoolDesc, SoftmaxDesc,
};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"QFDM";
/// Major format version: files of another major version are refused.
///
/// 3: activations below 8 bits are packed in the arena ([`crate::codes`]), so memory plans made for version 2
/// (one code per byte) no longer describe the arena a reader lays out.
pub const FORMAT_MAJOR: u16 = 3;
/// Minor format version: additions within a major version.
///
/// 1: the transformer ops (`LayerNorm` to `Lookup` in [`OpDesc`]); a 3.0 reader refuses a file that uses
/// them as malformed, and reads every other 3.1 file.
pub const FORMAT_MINOR: u16 = 1;
/// Most ops a model may have (a MobileNetV2 has about 70).
pub const MAX_OPS: usize = 128;
/// Most values a model may have: the input plus one per op.
pub const MAX_VALUES: usize = MAX_OPS + 1;

/// The outer envelope of a model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileHeader<'a> {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_MAJOR`] of the writer.
    pub format_major: u16,
    /// [`FORMAT_MINOR`] of the writer.
    pub format_minor: u16,
    /// Name and version of the tool that wrote the file, e.g. `qfd-host 0.1.0`.
    pub producer: &'a str,
    /// CRC-32 (ISO-HDLC, as zlib) of `payload`.
    pub payload_crc32: u32,
    /// The postcard-encoded [`ModelDesc`].
    pub payload: &'a [u8],
}

/// Everything the runtime needs to run a model, and what the host needs to describe it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelDesc<'a> {
    /// How raw input pixels relate to the training data.
    pub input: InputSpec,
    /// How to read the logits.
    #[serde(borrow)]
    pub output: OutputSpec<'a>,
    /// Where the model came from.
    #[serde(borrow)]
    pub meta: Metadata<'a>,
    /// Every tensor that lives in the arena: value 0 is the input, value `i + 1` the output of op `i`.
    pub values: heapless::Vec<ValueDesc, MAX_VALUES>,
    /// The ops, in execution order.
    #[serde(borrow)]
    pub ops: heapless::Vec<OpDesc<'a>, MAX_OPS>,
    /// Bytes of arena the memory plan needs.
    pub arena_bytes: u32,
}

/// The input's normalisation, recorded for the host (export has already folded it into the first layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Per-channel mean of `pixel / 255` used in training.
    pub mean: heapless::Vec<f32, 4>,
    /// Per-channel standard deviation of `pixel / 255` used in training.
    pub std: heapless::Vec<f32, 4>,
}

/// How to interpret the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec<'a> {
    /// Real logit = `logit_scale * i32 logit`.
    pub logit_scale: f32,
    /// Class names separated by `\n` (may be empty).
    pub class_names: &'a str,
}

/// Provenance of the model. Nothing here changes how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata<'a> {
    /// Architecture name, e.g. `resnet8`.
    pub arch: &'a str,
    /// Dataset name, e.g. `fashion-mnist` or `synthetic`.
    pub dataset: &'a str,
    /// Weight bit-width of the inner layers.
    pub weight_bits: u8,
    /// Activation bit-width of the inner layers.
    pub act_bits: u8,
    /// Top-1 accuracy of the fake-quantized model at export, if measured.
    pub fake_quant_accuracy: Option<f32>,
    /// Top-1 accuracy of the integer model at export, if measured.
    pub integer_accuracy: Option<f32>,
}

/// The element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElemType {
    /// Unsigned activation codes in `[0, 2^bits - 1]` (`bits` in 1-8), stored as [`crate::codes`] packs
    /// them: 8, 4 or 2 to a byte at 1, 2 and 4 bits, otherwise one per byte.
    Codes {
        /// Bit-width of the codes.
        bits: u8,
    },
    /// Signed 32-bit integers (sums of a global pool, logits), little-endian.
    I32,
}

impl ElemType {
    /// Bytes `elems` elements occupy in the arena.
    pub const fn bytes(self, elems: usize) -> usize {
        match self {
            ElemType::Codes { bits } => crate::codes::packed_len(elems, bits),
            ElemType::I32 => 4 * elems,
        }
    }
}

/// A tensor in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueDesc {
    /// `[H, W, C]`.
    pub shape: [u16; 3],
    /// Element type.
    pub elem: ElemType,
    /// Byte offset in the arena (from the memory plan).
    pub arena_offset: u32,
}

impl ValueDesc {
    /// Number of elements, `H * W * C`.
    pub fn elems(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }
    /// Bytes in the arena.
    pub fn bytes(&self) -> usize {
        self.elem.bytes(self.elems())
    }
    /// Where it lies in the arena.
    pub fn arena_range(&self) -> core::ops::Range<usize> {
        self.arena_offset as usize..self.arena_offset as usize + self.bytes()
    }
}

/// Padding in pixels on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Padding {
    /// Rows above.
    pub top: u8,
    /// Columns left.
    pub left: u8,
    /// Rows below.
    pub bottom: u8,
    /// Columns right.
    pub right: u8,
}

/// The sliding-window part of a conv or pool: kernel, stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `[kh, kw]`.
    pub kernel: [u8; 2],
    /// `[sh, sw]`.
    pub stride: [u8; 2],
    /// Zero padding (code 0) around the input.
    pub padding: Padding,
}

impl Window {
    /// Output extent `[Ho, Wo]` for an input of `[H, W]`, or `None` when the window does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let out = |n: usize, before: u8, after: u8, k: u8, s: u8| {
            let padded = n + before as usize + after as usize;
            if k == 0 || s == 0 || padded < k as usize {
                return None;
            }
            Some((padded - k as usize) / s as usize + 1)
        };
        let p = self.padding;
        Some([
            out(h, p.top, p.bottom, self.kernel[0], self.stride[0])?,
            out(w, p.left, p.right, self.kernel[1], self.stride[1])?,
        ])
    }
}

/// An integer clamp `[min, max]` applied to requantized codes (ReLU is a raised `min`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clamp {
    /// Smallest output code.
    pub min: u8,
    /// Largest output code.
    pub max: u8,
}

/// One layer of the model. Each op's description, checks, kernel call and cost live in its module of
/// [`crate::ops`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpDesc<'a> {
    /// See [`Conv2dDesc`].
    Conv2d(#[serde(borrow)] Conv2dDesc<'a>),
    /// See [`FullyConnectedDesc`].
    FullyConnected(#[serde(borrow)] FullyConnectedDesc<'a>),
    /// See [`AddDesc`].
    Add(AddDesc),
    /// See [`MaxPoolDesc`].
    MaxPool(MaxPoolDesc),
    /// See [`AvgPoolDesc`].
    AvgPool(AvgPoolDesc),
    /// See [`GlobalSumPoolDesc`].
    GlobalSumPool(GlobalSumPoolDesc),
    // Format 3.1: the transformer ops.
    /// See [`LayerNormDesc`].
    LayerNorm(#[serde(borrow)] LayerNormDesc<'a>),
    /// See [`ChannelAddDesc`].
    ChannelAdd(#[serde(borrow)] ChannelAddDesc<'a>),
    /// See [`AttentionScoresDesc`].
    AttentionScores(AttentionScoresDesc),
    /// See [`SoftmaxDesc`].
    Softmax(SoftmaxDesc),
    /// See [`AttentionValuesDesc`].
    AttentionValues(AttentionValuesDesc),
    /// See [`LookupDesc`].
    Lookup(#[serde(borrow)] LookupDesc<'a>),
}
