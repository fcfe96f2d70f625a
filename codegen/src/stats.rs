//! Per-layer figures of a model: MACs, weight bytes, activation bytes. Used by `inspect` and the benches.

use qfd_runtime::format::{ModelDesc, OpDesc};

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
            let out = &desc.values[i + 1];
            let out_elems = out.elems() as u64;
            let (macs, params, weight_bytes) = match op {
                OpDesc::Conv2d(c) => {
                    let cin = desc.values[c.input as usize].shape[2] as u64;
                    let fan_in =
                        c.window.kernel[0] as u64 * c.window.kernel[1] as u64 * cin / c.groups as u64;
                    let params = out.shape[2] as u64 * fan_in;
                    (out_elems * fan_in, params, (c.weights.data.len() + c.requant.records.len()) as u64)
                }
                OpDesc::FullyConnected(f) => {
                    let n = desc.values[f.input as usize].elems() as u64;
                    (out_elems * n, out_elems * n, (f.weights.data.len() + f.requant.records.len()) as u64)
                }
                _ => (0, 0, 0),
            };
            OpStats { macs, params, weight_bytes, output_bytes: out.bytes() as u64 }
        })
        .collect()
}

/// Total MACs per inference.
pub fn total_macs(desc: &ModelDesc<'_>) -> u64 {
    op_stats(desc).iter().map(|s| s.macs).sum()
}
