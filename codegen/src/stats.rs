//! Per-layer figures of a model: MACs, weight bytes, activation bytes. Used by `inspect` and the benches.

use qfd_runtime::format::ModelDesc;
use qfd_runtime::ops::OpValues;

/// Figures of one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStats {
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Weight parameters.
    pub params: u64,
    /// Bytes of packed weights plus requantization tables.
    pub weight_bytes: u64,
    /// Bytes of the op's output value.
    pub output_bytes: u64,
}

/// Figures of every op, in order.
pub fn op_stats(desc: &ModelDesc<'_>) -> Vec<OpStats> {
    desc.ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let values = OpValues { values: &desc.values, index: i };
            let weight_bytes = op.tables().iter().map(|t| t.bytes.len() as u64).sum();
            OpStats {
                macs: op.macs(values),
                params: op.params(values),
                weight_bytes,
                output_bytes: values.out().bytes() as u64,
            }
        })
        .collect()
}

/// Total MACs per inference.
pub fn total_macs(desc: &ModelDesc<'_>) -> u64 {
    op_stats(desc).iter().map(|s| s.macs).sum()
}
