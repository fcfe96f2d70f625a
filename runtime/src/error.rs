//! Typed errors of loading and running a model. Flat and `Copy` so firmware can report them as a code.

use core::fmt;

/// Why a `.qfdm` file was refused by [`Model::load`](crate::Model::load).
///
/// `op` fields are 0-based indices into the op list, `value` fields into the value table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file ends before the structure it announces is complete.
    Truncated,
    /// The file does not start with the bytes `QFDM`.
    BadMagic,
    /// The file's major format version is not one this runtime reads.
    UnsupportedVersion {
        /// Major version found in the file.
        major: u16,
    },
    /// The payload's CRC-32 does not match the one in the header: the file is corrupted.
    CrcMismatch,
    /// The payload could not be decoded (bad enum tag, bad varint, non-UTF-8 text, or a table longer than
    /// [`MAX_OPS`](crate::format::MAX_OPS)).
    Malformed,
    /// Bytes follow the end of the encoded structure (allowed only after the payload of a file whose minor
    /// version is newer than this runtime's).
    TrailingBytes,
    /// The value table does not have exactly one entry per op plus the input.
    ValueCount,
    /// A value has a zero or too large dimension, or an unsupported bit-width.
    BadValue {
        /// The value.
        value: u16,
    },
    /// A value does not lie inside the arena.
    ValueOutsideArena {
        /// The value.
        value: u16,
    },
    /// Two values alive at the same time share arena bytes.
    ArenaOverlap {
        /// The earlier value.
        first: u16,
        /// The later value.
        second: u16,
    },
    /// An op reads a value that is not produced before it.
    BadInputRef {
        /// The op.
        op: u16,
    },
    /// An op's input has the wrong element type (codes where sums are needed, or the reverse).
    WrongInputType {
        /// The op.
        op: u16,
    },
    /// An op's geometry is impossible: zero kernel or stride, channels not divisible by groups, kernel larger
    /// than the padded input, or a pool whose output would have a different bit-width than its input.
    BadGeometry {
        /// The op.
        op: u16,
    },
    /// The shape or type recorded for an op's output differs from what the op computes.
    ShapeMismatch {
        /// The op.
        op: u16,
    },
    /// The weight bit-width is outside 1-8.
    WeightBits {
        /// The op.
        op: u16,
    },
    /// The packed weight data does not have the length the shapes and bit-width require, or holds a code
    /// outside `[0, 2^bits - 1]`.
    WeightData {
        /// The op.
        op: u16,
    },
    /// The requantization table does not have one entry per output channel.
    RequantLength {
        /// The op.
        op: u16,
    },
    /// A requantization shift is outside `[MIN_SHIFT, MAX_SHIFT]`.
    ShiftOutOfRange {
        /// The op.
        op: u16,
    },
    /// A requantization offset is larger in magnitude than
    /// [`MAX_OFFSET`](crate::requant::MAX_OFFSET) (`2^62 - 1`).
    OffsetOutOfRange {
        /// The op.
        op: u16,
    },
    /// A clamp range is empty or reaches past the output's bit-width.
    BadClamp {
        /// The op.
        op: u16,
    },
    /// A per-channel shift, a lookup table entry, a zero point or a softmax constant lies outside its
    /// range, or such a table has the wrong length.
    BadParams {
        /// The op.
        op: u16,
    },
    /// The worst-case accumulator of the op does not fit an `i32`.
    AccumulatorOverflow {
        /// The op.
        op: u16,
    },
    /// The model has no ops, its input is not activation codes, or its last op does not produce `1x1xC`
    /// `i32` logits.
    BadOutput,
    /// The input normalisation does not have one entry per input channel, or the class names are neither
    /// empty nor one per class.
    BadSpec,
    /// One inference would take more inner-loop steps than the load limit allows (see
    /// [`Model::load_with_limit`](crate::Model::load_with_limit)).
    TooMuchWork,
}

/// Why [`Model::run`](crate::Model::run) refused to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// The input slice does not have the model's input length.
    InputLength {
        /// Bytes the model reads.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// An input code is larger than the input's bit-width allows.
    InputCodeOutOfRange {
        /// Position of the first bad byte.
        index: usize,
    },
    /// The arena is smaller than the model's memory plan.
    ArenaTooSmall {
        /// Bytes the plan needs ([`Model::arena_size`](crate::Model::arena_size)).
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// The logits slice does not have one entry per class.
    LogitsLength {
        /// Number of classes.
        expected: usize,
        /// Entries given.
        found: usize,
    },
    /// [`Model::accumulators`](crate::Model::accumulators) was asked for an op the model does not have.
    NoSuchOp {
        /// The op index asked for.
        index: usize,
    },
    /// [`Model::accumulators`](crate::Model::accumulators) was given a value of the wrong length.
    ValueLength {
        /// The value.
        value: u16,
        /// Its length in the model.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// [`Model::accumulators`](crate::Model::accumulators) was given an output buffer that is too short.
    BufferLength {
        /// Entries needed.
        expected: usize,
        /// Entries given.
        found: usize,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadError::*;
        match *self {
            Truncated => write!(f, "the model file is truncated"),
            BadMagic => write!(f, "not a .qfdm model file (missing QFDM magic)"),
            UnsupportedVersion { major } => write!(
                f,
                "format version {major} is not supported by this runtime (reads version {}); re-export the \
                 model with this SDK's `qfd-host export` (or `qfd-host synth`)",
                crate::format::FORMAT_MAJOR
            ),
            CrcMismatch => write!(f, "the model payload is corrupted (CRC mismatch)"),
            Malformed => write!(f, "the model payload cannot be decoded (malformed or too many ops)"),
            TrailingBytes => write!(f, "unexpected bytes after the end of the model"),
            ValueCount => write!(f, "the value table must have one entry per op plus the input"),
            BadValue { value } => write!(f, "value {value} has an invalid shape or bit-width"),
            ValueOutsideArena { value } => write!(f, "value {value} lies outside the arena"),
            ArenaOverlap { first, second } => {
                write!(f, "values {first} and {second} are alive together but share arena bytes")
            }
            BadInputRef { op } => write!(f, "op {op} reads a value not produced before it"),
            WrongInputType { op } => write!(f, "op {op} reads an input of the wrong element type"),
            BadGeometry { op } => write!(f, "op {op} has an impossible kernel, stride, padding or grouping"),
            ShapeMismatch { op } => write!(f, "op {op}: recorded output shape differs from the computed one"),
            WeightBits { op } => write!(f, "op {op}: weight bit-width must be 1 to 8"),
            WeightData { op } => {
                write!(f, "op {op}: packed weights have the wrong length or an out-of-range code")
            }
            RequantLength { op } => {
                write!(f, "op {op}: requantization table length does not match its channels")
            }
            ShiftOutOfRange { op } => write!(f, "op {op}: requantization shift out of range"),
            OffsetOutOfRange { op } => write!(f, "op {op}: requantization offset out of range"),
            BadClamp { op } => write!(f, "op {op}: clamp range is empty or exceeds the output bit-width"),
            BadParams { op } => write!(
                f,
                "op {op}: a shift, lookup table, zero point or softmax constant is out of range or has the \
                 wrong length"
            ),
            AccumulatorOverflow { op } => write!(f, "op {op}: worst-case accumulator does not fit in i32"),
            BadOutput => write!(f, "the model must read activation codes and end in 1x1xC i32 logits"),
            BadSpec => write!(f, "input normalisation or class names do not match the channels or classes"),
            TooMuchWork => write!(f, "one inference would exceed the work limit of this loader"),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RunError::InputLength { expected, found } => {
                write!(f, "input has {found} bytes, the model reads {expected}")
            }
            RunError::InputCodeOutOfRange { index } => {
                write!(f, "input byte {index} exceeds the input bit-width")
            }
            RunError::ArenaTooSmall { needed, found } => {
                write!(f, "arena has {found} bytes, the model needs {needed}")
            }
            RunError::LogitsLength { expected, found } => {
                write!(f, "logits slice has {found} entries, the model has {expected} classes")
            }
            RunError::NoSuchOp { index } => write!(f, "the model has no op {index}"),
            RunError::ValueLength { value, expected, found } => {
                write!(f, "value {value} has {found} bytes, the model says {expected}")
            }
            RunError::BufferLength { expected, found } => {
                write!(f, "the output buffer has {found} entries, the op has {expected} outputs")
            }
        }
    }
}

impl core::error::Error for LoadError {}
impl core::error::Error for RunError {}

#[cfg(feature = "defmt")]
impl defmt::Format for LoadError {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{}", defmt::Debug2Format(self))
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for RunError {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{}", defmt::Debug2Format(self))
    }
}
