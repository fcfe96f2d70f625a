//! The interpreter: a loaded, validated model that runs in a caller-provided arena.

use crate::arena::{read_logits, split};
use crate::codes::{clear_unused, pack_codes, Codes};
use crate::error::{LoadError, RunError};
use crate::format::{ElemType, FileHeader, ModelDesc, OpDesc, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};
use crate::kernels::select::Core;
use crate::kernels::ConvGeometry;
use crate::ops::{code_bits, OpValues};
use crate::validate::validate;

/// CRC-32 used for the payload checksum (ISO-HDLC, the one zlib and PNG use).
pub const PAYLOAD_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A validated model borrowing its weights from the file bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    desc: ModelDesc<'a>,
    producer: &'a str,
    format_version: (u16, u16),
    work: u64,
    scratch: usize,
}

/// Default bound on [`Model::work`] for [`Model::load`]: 2^32 inner-loop steps, hundreds of times a
/// MobileNetV2 at 224x224, and seconds of host time.
pub const DEFAULT_MAX_WORK: u64 = 1 << 32;

/// One layer's output, as passed to the trace hook of [`Model::run_traced`].
#[derive(Debug, Clone, Copy)]
pub enum LayerOutput<'b> {
    /// Activation codes, as the arena stores them (packed below 8 bits); read them with
    /// [`LayerOutput::i32_at`] or [`Codes::get`].
    Codes(Codes<'b>),
    /// `i32` values, little-endian bytes; read them with [`LayerOutput::i32_at`].
    I32Le(&'b [u8]),
}

impl LayerOutput<'_> {
    /// The bytes as stored: what per-layer checksums cover. Unused bits of a packed tensor's last byte are
    /// always 0.
    pub fn bytes(&self) -> &[u8] {
        match self {
            LayerOutput::Codes(c) => c.bytes(),
            LayerOutput::I32Le(b) => b,
        }
    }

    /// Element `i` as `i32`, whatever the element type.
    pub fn i32_at(&self, i: usize) -> i32 {
        match self {
            LayerOutput::Codes(c) => c.get(i) as i32,
            LayerOutput::I32Le(b) => i32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]),
        }
    }
}

fn map_postcard(e: postcard::Error) -> LoadError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => LoadError::Truncated,
        _ => LoadError::Malformed,
    }
}

impl<'a> Model<'a> {
    /// Parses and validates a `.qfdm` file. Nothing is copied but the small op and value tables; every
    /// check the kernels rely on is done here, once. Models needing more than [`DEFAULT_MAX_WORK`] inner-loop
    /// steps per inference are refused; see [`load_with_limit`](Self::load_with_limit).
    pub fn load(bytes: &'a [u8]) -> Result<Self, LoadError> {
        Self::load_with_limit(bytes, DEFAULT_MAX_WORK)
    }

    /// [`load`](Self::load) with an explicit bound on the work of one inference ([`Model::work`]), so that a
    /// small hostile file cannot make a device spin for hours. Use `u64::MAX` for no bound.
    pub fn load_with_limit(bytes: &'a [u8], max_work: u64) -> Result<Self, LoadError> {
        if bytes.len() < MAGIC.len() {
            return Err(LoadError::Truncated);
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        // Read the version before the rest, so a future layout is reported as a version, not as garbage.
        let (major, _) = postcard::take_from_bytes::<u16>(&bytes[MAGIC.len()..]).map_err(map_postcard)?;
        if major != FORMAT_MAJOR {
            return Err(LoadError::UnsupportedVersion { major });
        }
        let (header, rest) = postcard::take_from_bytes::<FileHeader<'a>>(bytes).map_err(map_postcard)?;
        if !rest.is_empty() {
            return Err(LoadError::TrailingBytes);
        }
        if PAYLOAD_CRC.checksum(header.payload) != header.payload_crc32 {
            return Err(LoadError::CrcMismatch);
        }
        let (desc, rest) =
            postcard::take_from_bytes::<ModelDesc<'a>>(header.payload).map_err(map_postcard)?;
        // A newer minor version may append fields to the payload; this reader ignores them.
        let newer_minor = header.format_minor > FORMAT_MINOR;
        if !rest.is_empty() && !newer_minor {
            return Err(LoadError::TrailingBytes);
        }
        let work = validate(&desc, max_work)?;
        let format_version = (header.format_major, header.format_minor);
        let scratch = scratch_on(&desc, Core::COMPILED);
        Ok(Model { desc, producer: header.producer, format_version, work, scratch })
    }

    /// The decoded description (ops, values, metadata).
    pub fn desc(&self) -> &ModelDesc<'a> {
        &self.desc
    }

    /// The tool that wrote the file.
    pub fn producer(&self) -> &'a str {
        self.producer
    }

    /// Inner-loop steps (multiply-accumulates, window taps, element visits) of one inference: a measure of
    /// its time, known before running it.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// `(major, minor)` format version of the file.
    pub fn format_version(&self) -> (u16, u16) {
        self.format_version
    }

    /// Bytes of arena [`run`](Self::run) needs: the planned tensors ([`values_size`](Self::values_size)),
    /// then the largest working memory of any op's kernel ([`scratch_size`](Self::scratch_size)).
    pub fn arena_size(&self) -> usize {
        self.values_size() + self.scratch
    }

    /// Bytes of arena that hold tensors, as the memory plan in the file laid them out.
    pub fn values_size(&self) -> usize {
        self.desc.arena_bytes as usize
    }

    /// Bytes of kernel working memory (im2col buffers) after the tensors: the most any op needs.
    pub fn scratch_size(&self) -> usize {
        self.scratch
    }

    /// [`arena_size`](Self::arena_size) for a runtime compiled for `core` (kernel variants differ in their
    /// working memory): what the host sizes a board's static arena with.
    pub fn arena_size_on(&self, core: Core) -> usize {
        self.values_size() + scratch_on(&self.desc, core)
    }

    /// The shapes of op `index` when it is a convolution, as its kernel sees them.
    pub fn conv_geometry(&self, index: usize) -> Option<ConvGeometry> {
        match self.desc.ops.get(index)? {
            OpDesc::Conv2d(c) => Some(c.geometry(self.op_values(index))),
            _ => None,
        }
    }

    /// Bytes of working memory op `index` needs (0 for ops that need none or do not exist).
    pub fn op_scratch_size(&self, index: usize) -> usize {
        self.desc.ops.get(index).map_or(0, |op| op.scratch_bytes(self.op_values(index), Core::COMPILED))
    }

    /// The values around op `index` (which must exist).
    pub fn op_values(&self, index: usize) -> OpValues<'_> {
        OpValues { values: &self.desc.values, index }
    }

    /// Input shape `[H, W, C]`.
    pub fn input_shape(&self) -> [u16; 3] {
        self.desc.values[0].shape
    }

    /// Codes of input (`H * W * C`), which [`run`](Self::run) takes one per byte.
    pub fn input_len(&self) -> usize {
        self.desc.values[0].elems()
    }

    /// Number of classes (length of the logits).
    pub fn num_classes(&self) -> usize {
        self.desc.values[self.desc.values.len() - 1].shape[2] as usize
    }

    /// Runs the model on `input` (`H x W x C` codes a byte each, raw pixels for a trained model) using `arena` as the
    /// only working memory, writes the logits and returns the predicted class (the first largest logit).
    pub fn run(&self, input: &[u8], arena: &mut [u8], logits: &mut [i32]) -> Result<usize, RunError> {
        self.run_traced(input, arena, logits, |_, _, _| {})
    }

    /// Like [`run`](Self::run), and calls `trace(op_index, op, output)` after each op with its output.
    pub fn run_traced(
        &self,
        input: &[u8],
        arena: &mut [u8],
        logits: &mut [i32],
        mut trace: impl FnMut(usize, &OpDesc<'a>, LayerOutput<'_>),
    ) -> Result<usize, RunError> {
        let values = &self.desc.values;
        let input_value = &values[0];
        if input.len() != input_value.elems() {
            return Err(RunError::InputLength { expected: input_value.elems(), found: input.len() });
        }
        if let ElemType::Codes { bits } = input_value.elem {
            if bits < 8 {
                if let Some(index) = input.iter().position(|&c| (c >> bits) != 0) {
                    return Err(RunError::InputCodeOutOfRange { index });
                }
            }
        }
        if arena.len() < self.arena_size() {
            return Err(RunError::ArenaTooSmall { needed: self.arena_size(), found: arena.len() });
        }
        if logits.len() != self.num_classes() {
            return Err(RunError::LogitsLength { expected: self.num_classes(), found: logits.len() });
        }

        let (arena, scratch) = arena[..self.arena_size()].split_at_mut(self.values_size());
        pack_codes(input, code_bits(input_value), &mut arena[input_value.arena_range()]);
        for (i, op) in self.desc.ops.iter().enumerate() {
            let out_value = &values[i + 1];
            let (reader, out) = split(arena, out_value.arena_range());
            if let ElemType::Codes { bits } = out_value.elem {
                clear_unused(out, out_value.elems(), bits);
            }
            op.run(self.op_values(i), &reader, out, scratch);
            let produced = match out_value.elem {
                ElemType::Codes { bits } => LayerOutput::Codes(Codes::new(out, bits)),
                ElemType::I32 => LayerOutput::I32Le(out),
            };
            trace(i, op, produced);
        }

        Ok(read_logits(&arena[values[values.len() - 1].arena_range()], logits))
    }
}

impl<'a> Model<'a> {
    /// The `i32` accumulators of op `index` before its requantization, for debugging tools such as
    /// `qfd-host trace`. `value(v)` must return the bytes of value `v` (value 0 is the input, value `i + 1`
    /// the output of op `i`, as [`run_traced`](Self::run_traced) hands them out) for every value the op
    /// reads, as the arena stores them. Writes one accumulator per output element into `out` and returns how many; ops that
    /// requantize nothing (max pool, global sum pool) return 0.
    pub fn accumulators<'v>(
        &self,
        index: usize,
        value: impl Fn(u16) -> &'v [u8],
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let values = &self.desc.values;
        let op = self.desc.ops.get(index).ok_or(RunError::NoSuchOp { index })?;
        let read = |v: u16| {
            let (bytes, value) = (value(v), &values[v as usize]);
            if bytes.len() == value.bytes() {
                Ok(Codes::new(bytes, code_bits(value)))
            } else {
                Err(RunError::ValueLength { value: v, expected: value.bytes(), found: bytes.len() })
            }
        };
        op.accumulators(self.op_values(index), &read, out)
    }
}

/// The most working memory any op of `desc` needs on `core`.
fn scratch_on(desc: &ModelDesc<'_>, core: Core) -> usize {
    let values = &desc.values;
    let each =
        desc.ops.iter().enumerate().map(|(i, op)| op.scratch_bytes(OpValues { values, index: i }, core));
    each.max().unwrap_or(0)
}
