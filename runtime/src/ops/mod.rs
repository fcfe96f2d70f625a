//! The ops a model is made of, one module each. An op's module holds everything about it: its
//! description as the `.qfdm` file stores it, its load-time checks (shapes, bit-widths, the proof that its
//! accumulators fit `i32`), which kernel runs it and with what, the working memory that kernel needs, its
//! cost, and (with the `emit` feature, for `qfd-codegen`) the kernel call that generated code makes.
//!
//! Each op implements [`Op`], and [`OpDesc`] forwards every question to its op through `each_op!`. A new
//! op is a new module here, its variant in [`OpDesc`] (`format.rs`, the file's definition) and one line in
//! `each_op!`; the interpreter, validation, code generation, `inspect` and the speed report then handle it.

mod add;
mod attention;
mod avg_pool;
mod channel_add;
mod checks;
mod conv2d;
#[cfg(feature = "emit")]
pub mod emit;
mod fully_connected;
mod global_sum_pool;
mod layer_norm;
mod lookup;
mod max_pool;
mod softmax;

pub use add::AddDesc;
pub use attention::{AttentionScoresDesc, AttentionValuesDesc};
pub use avg_pool::AvgPoolDesc;
pub use channel_add::ChannelAddDesc;
pub use conv2d::Conv2dDesc;
pub use fully_connected::{FcOutput, FullyConnectedDesc};
pub use global_sum_pool::GlobalSumPoolDesc;
pub use layer_norm::LayerNormDesc;
pub use lookup::LookupDesc;
pub use max_pool::MaxPoolDesc;
pub use softmax::{SoftmaxDesc, MAX_EXP_FRACTION};

use crate::arena::ArenaReader;
use crate::codes::Codes;
use crate::error::{LoadError, RunError};
use crate::format::{ElemType, OpDesc, ValueDesc, Window};
use crate::kernels::select::Core;
use crate::kernels::Hwc;
use crate::requant::ChannelRequant;
use crate::weights::PackedWeights;

/// The values an op reads (one or two).
pub type Inputs = heapless::Vec<u16, 2>;

/// The values around op `index`: its inputs anywhere before it, its output `values[index + 1]`.
#[derive(Debug, Clone, Copy)]
pub struct OpValues<'v> {
    /// Every value of the model.
    pub values: &'v [ValueDesc],
    /// The op's index.
    pub index: usize,
}

// The indexing below cannot go out of bounds for any model file: validation checks that there is one
// value per op plus the input (so `index + 1` exists) and that every input of op `index` is an earlier
// value, before it calls any op's `check`; nothing else runs on an unvalidated model.
impl<'v> OpValues<'v> {
    /// Value `v`.
    pub fn get(&self, v: u16) -> &'v ValueDesc {
        &self.values[v as usize]
    }

    /// The op's output value.
    pub fn out(&self) -> &'v ValueDesc {
        &self.values[self.index + 1]
    }
}

/// Where an op's inputs come from when it runs, and how to read them.
pub struct OpInputs<'r, 'b> {
    values: OpValues<'r>,
    arena: &'r ArenaReader<'b>,
}

impl OpInputs<'_, '_> {
    /// Value `v`'s codes, as the arena stores them.
    fn codes(&self, v: u16) -> Codes<'_> {
        let value = self.values.get(v);
        Codes::new(self.arena.get(value.arena_range()), code_bits(value))
    }

    /// Value `v`'s bytes.
    fn bytes(&self, v: u16) -> &[u8] {
        self.arena.get(self.values.get(v).arena_range())
    }
}

/// Most byte tables one op has.
pub const MAX_OP_TABLES: usize = 3;

/// A byte table an op borrows from the model file: packed weights, requantization records, per-channel
/// shifts, a lookup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTable<'a> {
    /// What generated code names its `static`, before the op's index (`W` for weights: `W3`).
    pub tag: &'static str,
    /// What it holds, for the generated code's documentation.
    pub what: &'static str,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// An op's tables, in a fixed order per op kind.
pub type OpTables<'a> = heapless::Vec<OpTable<'a>, MAX_OP_TABLES>;

/// Mutable references to an op's table slices, in the order of [`Op::tables`] (the file writer points
/// them at the bytes it writes).
pub type OpTablesMut<'o, 'a> = heapless::Vec<&'o mut &'a [u8], MAX_OP_TABLES>;

/// The tables of an op with weights: packed weight codes (`W`), then one requantization record per output
/// channel (`R`).
pub(crate) fn weight_tables<'a>(weights: &PackedWeights<'a>, requant: &ChannelRequant<'a>) -> OpTables<'a> {
    op_tables(&[
        OpTable { tag: "W", what: "packed weight codes", bytes: weights.data },
        OpTable { tag: "R", what: "requantization records, one per output channel", bytes: requant.records },
    ])
}

/// Builds [`OpTables`] from at most [`MAX_OP_TABLES`] entries.
pub(crate) fn op_tables<'a>(tables: &[OpTable<'a>]) -> OpTables<'a> {
    tables.iter().copied().take(MAX_OP_TABLES).collect()
}

/// What each op module implements. Every method but the ones with defaults is the op's own business;
/// `values` always describes the op's place in a model that [`Op::check`] accepted (except in `check`).
pub trait Op<'a> {
    /// Short lower-case name (`conv2d`), as `inspect` and the reports print it.
    const KIND: &'static str;

    /// The values the op reads.
    fn inputs(&self) -> Inputs;

    /// Load-time checks against the values; returns the largest magnitude the output can hold (a code's
    /// maximum, or a proven bound for `i32` outputs). `max_abs[v]` is that bound for every earlier value.
    fn check(&self, at: u16, values: OpValues<'_>, max_abs: &[u64]) -> Result<u64, LoadError>;

    /// Inner-loop steps of one run (every tap of every window, every multiply-accumulate, every element
    /// visited): how validation bounds the time of an inference.
    fn work(&self, values: OpValues<'_>) -> u64;

    /// Multiply-accumulates of one run.
    fn macs(&self, _values: OpValues<'_>) -> u64 {
        0
    }

    /// Weight parameters.
    fn params(&self, _values: OpValues<'_>) -> u64 {
        0
    }

    /// The byte tables the op borrows from the file (weights, requantization records, shifts, ...).
    fn tables(&self) -> OpTables<'a> {
        OpTables::new()
    }

    /// The same slices, in the same order, to point them at other bytes (the file writer does).
    fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        OpTablesMut::new()
    }

    /// The bit-width of the op's weights, for ops that have weights.
    fn weight_bits(&self) -> Option<u8> {
        None
    }

    /// The sliding window, for ops that have one.
    fn window(&self) -> Option<&Window> {
        None
    }

    /// Bytes of kernel working memory (scratch) one run needs on `core`.
    fn scratch_bytes(&self, _values: OpValues<'_>, _core: Core) -> usize {
        0
    }

    /// The name of the kernel variant that runs the op (`-` when there is only one).
    fn variant(&self, _values: OpValues<'_>) -> &'static str {
        "-"
    }

    /// Runs the op: reads its inputs through `inputs`, writes `out` (the output value's bytes, the unused
    /// bits of a packed last byte already clear), with `scratch` as working memory.
    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], scratch: &mut [u8]);

    /// Writes the `i32` accumulator of each output element before requantization into `out` and returns
    /// how many. `read(v)` gives value `v`'s codes. Ops that requantize nothing keep the default: none.
    fn accumulators<'v>(
        &self,
        _values: OpValues<'_>,
        _read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        _out: &mut [i32],
    ) -> Result<usize, RunError> {
        Ok(0)
    }

    /// The Rust expression with which generated code runs the op (`qfd-codegen`).
    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &emit::EmitCx<'_>) -> std::string::String;
}

/// Runs `$body` with `$op` bound to the op inside `$desc`, whichever it is.
macro_rules! each_op {
    ($desc:expr, $op:ident => $body:expr) => {
        match $desc {
            OpDesc::Conv2d($op) => $body,
            OpDesc::FullyConnected($op) => $body,
            OpDesc::Add($op) => $body,
            OpDesc::MaxPool($op) => $body,
            OpDesc::AvgPool($op) => $body,
            OpDesc::GlobalSumPool($op) => $body,
            OpDesc::LayerNorm($op) => $body,
            OpDesc::ChannelAdd($op) => $body,
            OpDesc::AttentionScores($op) => $body,
            OpDesc::Softmax($op) => $body,
            OpDesc::AttentionValues($op) => $body,
            OpDesc::Lookup($op) => $body,
        }
    };
}

/// The kind name of an op type, without an instance.
const fn kind_of<'a, T: Op<'a>>(_: &T) -> &'static str {
    T::KIND
}

impl<'a> OpDesc<'a> {
    /// Short lower-case name of the op kind.
    pub fn kind(&self) -> &'static str {
        each_op!(self, op => kind_of(op))
    }

    /// The values this op reads (one or two).
    pub fn inputs(&self) -> Inputs {
        each_op!(self, op => op.inputs())
    }

    /// See [`Op::check`].
    pub fn check(&self, at: u16, values: OpValues<'_>, max_abs: &[u64]) -> Result<u64, LoadError> {
        each_op!(self, op => op.check(at, values, max_abs))
    }

    /// See [`Op::work`].
    pub fn work(&self, values: OpValues<'_>) -> u64 {
        each_op!(self, op => op.work(values))
    }

    /// See [`Op::macs`].
    pub fn macs(&self, values: OpValues<'_>) -> u64 {
        each_op!(self, op => op.macs(values))
    }

    /// See [`Op::params`].
    pub fn params(&self, values: OpValues<'_>) -> u64 {
        each_op!(self, op => op.params(values))
    }

    /// See [`Op::tables`].
    pub fn tables(&self) -> OpTables<'a> {
        each_op!(self, op => op.tables())
    }

    /// See [`Op::tables_mut`].
    pub fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        each_op!(self, op => op.tables_mut())
    }

    /// See [`Op::weight_bits`].
    pub fn weight_bits(&self) -> Option<u8> {
        each_op!(self, op => op.weight_bits())
    }

    /// See [`Op::window`].
    pub fn window(&self) -> Option<&Window> {
        each_op!(self, op => op.window())
    }

    /// See [`Op::scratch_bytes`].
    pub fn scratch_bytes(&self, values: OpValues<'_>, core: Core) -> usize {
        each_op!(self, op => op.scratch_bytes(values, core))
    }

    /// See [`Op::variant`].
    pub fn variant(&self, values: OpValues<'_>) -> &'static str {
        each_op!(self, op => op.variant(values))
    }

    /// See [`Op::run`].
    pub(crate) fn run(
        &self,
        values: OpValues<'_>,
        arena: &ArenaReader<'_>,
        out: &mut [u8],
        scratch: &mut [u8],
    ) {
        let inputs = OpInputs { values, arena };
        each_op!(self, op => op.run(&inputs, out, scratch))
    }

    /// See [`Op::accumulators`].
    pub fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        each_op!(self, op => op.accumulators(values, read, out))
    }

    /// See [`Op::emit_call`].
    #[cfg(feature = "emit")]
    pub fn emit_call(&self, cx: &emit::EmitCx<'_>) -> std::string::String {
        each_op!(self, op => op.emit_call(cx))
    }
}

/// One input.
fn one_input(v: u16) -> Inputs {
    let mut inputs = Inputs::new();
    // Capacity 2 holds it.
    let _ = inputs.push(v);
    inputs
}

/// A value's shape as the kernels take it.
fn hwc(v: &ValueDesc) -> Hwc {
    Hwc::new(v.shape[0] as usize, v.shape[1] as usize, v.shape[2] as usize)
}

/// Bit-width of a value's codes (8 for `i32` values, which no op reads as codes: validation refuses it).
pub fn code_bits(v: &ValueDesc) -> u8 {
    match v.elem {
        ElemType::Codes { bits } => bits,
        ElemType::I32 => 8,
    }
}

/// The sink an op's accumulator kernel writes into: accumulator `i` goes to `out[i]`. [`room`] has checked
/// that `out` holds every index the kernel emits; one past the end would be dropped, never a panic.
fn store(out: &mut [i32]) -> impl FnMut(usize, i32) + '_ {
    move |i, acc| {
        if let Some(slot) = out.get_mut(i) {
            *slot = acc;
        }
    }
}

/// Checks that `out` holds at least `count` accumulators.
fn room(out: &[i32], count: usize) -> Result<(), RunError> {
    if out.len() < count {
        return Err(RunError::BufferLength { expected: count, found: out.len() });
    }
    Ok(())
}
