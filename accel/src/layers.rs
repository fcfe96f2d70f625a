//! One op of the model as tensor operations on a batch.
//!
//! Every value is an `[N, H * W * C]` tensor of `i32` (one image per row, channel fastest: the runtime's
//! layout, so a fully connected layer's flattening is the runtime's too). Codes are small non-negative
//! integers, sums and logits are `i32`; every product and sum below stays inside the bounds the runtime's
//! load-time validation proved (`docs/arithmetic.md`), so `i32` arithmetic is exact and nothing wraps.

use burn_backend::Backend;

use qfd_runtime::format::{FcOutput, ModelDesc, OpDesc, ValueDesc};
use qfd_runtime::ops::Conv2dDesc;
use qfd_runtime::weights::PackedWeights;

use crate::requant::Requant;
use crate::tensor::Ints;
use crate::window::Gather;
use crate::AccelError;

/// One op, ready to run.
#[derive(Debug)]
pub(crate) enum Layer<B: Backend> {
    Conv { input: u16, gather: Gather<B>, weights: ConvWeights<B>, requant: Requant<B> },
    FullyConnected { input: u16, weights: Ints<B>, output: FcLayerOutput<B> },
    Add { inputs: [u16; 2], input_weights: [i32; 2], requant: Requant<B> },
    MaxPool { input: u16, gather: Gather<B> },
    AvgPool { input: u16, gather: Gather<B>, requant: Requant<B> },
    GlobalSumPool { input: u16, pixels: usize, channels: usize },
}

/// A conv's weights as the integers `2k - (2^b - 1)`, shaped for its form of product.
#[derive(Debug)]
pub(crate) enum ConvWeights<B: Backend> {
    /// One input channel per group (depthwise, with any channel multiplier `m`): `[1, taps, Cin, m]`,
    /// multiplied element-wise with the patches and summed over the taps.
    Depthwise(Ints<B>),
    /// `[G, taps * Cin/G, Cout/G]`: one matrix product per group (a plain one for `G = 1`).
    Grouped(Ints<B>),
}

/// What a fully connected layer writes.
#[derive(Debug)]
pub(crate) enum FcLayerOutput<B: Backend> {
    Codes(Requant<B>),
    /// `[1, C]` offsets in accumulator units: the logit is `acc + offset`. Validation proves
    /// `|acc| + |offset| <= i32::MAX`, so the offset fits `i32` and the sum neither wraps nor saturates.
    Logits(Ints<B>),
}

impl<B: Backend> Layer<B> {
    /// The layer of op `index` of `desc`; `wide`: the backend has 64-bit integers.
    pub fn new(
        desc: &ModelDesc<'_>,
        index: usize,
        wide: bool,
        device: &B::Device,
    ) -> Result<Self, AccelError> {
        let op = &desc.ops[index];
        let value = |v: u16| desc.values[v as usize];
        let out = desc.values[index + 1];
        let [oh, ow, oc] = out.shape.map(usize::from);
        Ok(match op {
            OpDesc::Conv2d(conv) => {
                let gather = Gather::new(&conv.window, hwc(&value(conv.input)), [oh, ow], device);
                let params: Vec<_> = conv.requant.iter().collect();
                Layer::Conv {
                    input: conv.input,
                    weights: ConvWeights::new(conv, gather.taps, gather.channels, oc, device),
                    gather,
                    requant: Requant::new(&params, conv.clamp, wide, device),
                }
            }
            OpDesc::FullyConnected(fc) => {
                let fan_in = value(fc.input).elems();
                // `[N_in, C]`: column `o` holds output `o`'s weights, stored `[C][N_in]`.
                let weights = Ints::new(transposed(&fc.weights, oc, fan_in), &[fan_in, oc], device);
                let params: Vec<_> = fc.requant.iter().collect();
                let output = match fc.output {
                    FcOutput::Codes(clamp) => {
                        FcLayerOutput::Codes(Requant::new(&params, clamp, wide, device))
                    }
                    FcOutput::Logits => {
                        let offsets =
                            params.iter().map(|p| p.offset.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
                        FcLayerOutput::Logits(Ints::new(offsets.collect(), &[1, oc], device))
                    }
                };
                Layer::FullyConnected { input: fc.input, weights, output }
            }
            OpDesc::Add(add) => Layer::Add {
                inputs: add.inputs,
                input_weights: add.input_weights,
                requant: Requant::new(&[add.requant], add.clamp, wide, device),
            },
            OpDesc::MaxPool(pool) => Layer::MaxPool {
                input: pool.input,
                gather: Gather::new(&pool.window, hwc(&value(pool.input)), [oh, ow], device),
            },
            OpDesc::AvgPool(pool) => Layer::AvgPool {
                input: pool.input,
                gather: Gather::new(&pool.window, hwc(&value(pool.input)), [oh, ow], device),
                requant: Requant::new(&[pool.requant], pool.clamp, wide, device),
            },
            OpDesc::GlobalSumPool(pool) => {
                let [h, w, c] = hwc(&value(pool.input));
                Layer::GlobalSumPool { input: pool.input, pixels: h * w, channels: c }
            }
            other => return Err(AccelError::UnsupportedOp { op: index, kind: other.kind() }),
        })
    }

    /// The values the layer reads.
    pub fn inputs(&self) -> Vec<u16> {
        match self {
            Layer::Conv { input, .. }
            | Layer::FullyConnected { input, .. }
            | Layer::MaxPool { input, .. }
            | Layer::AvgPool { input, .. }
            | Layer::GlobalSumPool { input, .. } => vec![*input],
            Layer::Add { inputs, .. } => inputs.to_vec(),
        }
    }

    /// Runs the layer on a batch; `value(v)` is value `v` as `[N, elems]`.
    pub fn run(&self, value: impl Fn(u16) -> Ints<B>) -> Ints<B> {
        match self {
            Layer::Conv { input, gather, weights, requant } => {
                let x = value(*input);
                let n = x.dims()[0];
                let acc = weights.apply(gather.patches(x));
                let out = requant.apply(acc);
                let elems = out.dims().iter().product::<usize>() / n;
                out.reshape(&[n, elems])
            }
            Layer::FullyConnected { input, weights, output } => {
                let acc = value(*input).matmul(weights);
                match output {
                    FcLayerOutput::Codes(requant) => requant.apply(acc),
                    FcLayerOutput::Logits(offset) => acc.add(offset),
                }
            }
            Layer::Add { inputs, input_weights, requant } => {
                let [a, b] = inputs.map(&value);
                let [wa, wb] = input_weights.map(i64::from);
                requant.apply(a.mul_scalar(wa).add(&b.mul_scalar(wb)))
            }
            Layer::MaxPool { input, gather } => {
                let x = value(*input);
                let n = x.dims()[0];
                gather.patches(x).max_dim(1).reshape(&[n, gather.pixels * gather.channels])
            }
            Layer::AvgPool { input, gather, requant } => {
                let x = value(*input);
                let n = x.dims()[0];
                let sums = gather.patches(x).sum_dim(1).reshape(&[n * gather.pixels, gather.channels]);
                requant.apply(sums).reshape(&[n, gather.pixels * gather.channels])
            }
            Layer::GlobalSumPool { input, pixels, channels } => {
                let x = value(*input);
                let n = x.dims()[0];
                x.reshape(&[n, *pixels, *channels]).sum_dim(1).reshape(&[n, *channels])
            }
        }
    }
}

impl<B: Backend> ConvWeights<B> {
    fn new(conv: &Conv2dDesc<'_>, taps: usize, cin: usize, cout: usize, device: &B::Device) -> Self {
        let groups = conv.groups as usize;
        let (cin_g, cout_g) = (cin / groups, cout / groups);
        // Stored `[Cout][kh][kw][Cin/G]`.
        let w = |o: usize, t: usize, i: usize| conv.weights.value((o * taps + t) * cin_g + i);
        if cin_g == 1 {
            let mut values = Vec::with_capacity(taps * cout);
            for t in 0..taps {
                for o in 0..cout {
                    values.push(w(o, t, 0));
                }
            }
            return ConvWeights::Depthwise(Ints::new(values, &[1, taps, groups, cout_g], device));
        }
        let mut values = Vec::with_capacity(taps * cin_g * cout);
        for g in 0..groups {
            for t in 0..taps {
                for i in 0..cin_g {
                    values.extend((0..cout_g).map(|j| w(g * cout_g + j, t, i)));
                }
            }
        }
        ConvWeights::Grouped(Ints::new(values, &[groups, taps * cin_g, cout_g], device))
    }

    /// `[N * P, taps, Cin]` patches to `[N * P, Cout]` accumulators.
    fn apply(&self, patches: Ints<B>) -> Ints<B> {
        let [rows, taps, cin] = patches.dims()[..] else { unreachable!("patches are 3-D") };
        match self {
            ConvWeights::Depthwise(w) => {
                let cout = w.dims().iter().product::<usize>() / taps;
                patches.reshape(&[rows, taps, cin, 1]).mul(w).sum_dim(1).reshape(&[rows, cout])
            }
            ConvWeights::Grouped(w) => {
                let [groups, fan_in, cout_g] = w.dims()[..] else { unreachable!("grouped weights are 3-D") };
                if groups == 1 {
                    return patches.reshape(&[rows, fan_in]).matmul(&w.clone().reshape(&[fan_in, cout_g]));
                }
                let per_group = patches
                    .reshape(&[rows, taps, groups, cin / groups])
                    .permute(&[2, 0, 1, 3])
                    .reshape(&[groups, rows, fan_in]);
                per_group.matmul(w).permute(&[1, 0, 2]).reshape(&[rows, groups * cout_g])
            }
        }
    }
}

/// `[H, W, C]` of a value.
fn hwc(value: &ValueDesc) -> [usize; 3] {
    value.shape.map(usize::from)
}

/// The weights of `rows` outputs of `cols` inputs each, stored row by row, as a column-per-output matrix.
fn transposed(weights: &PackedWeights<'_>, rows: usize, cols: usize) -> Vec<i32> {
    let mut out = vec![0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = weights.value(r * cols + c);
        }
    }
    out
}
