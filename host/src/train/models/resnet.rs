//! ResNet-8 / ResNet-20 body: stages of basic blocks (He et al.) after the stem.

use tch::nn;

use super::super::quant::{ActQuant, QTensor, QuantMode};
use super::{conv_shape, ConvBnQ, IntegerOps, NetSpec};

/// ResNet basic block.
#[derive(Debug)]
struct BasicBlock {
    /// Module path, e.g. `layer2.0`.
    name: String,
    conv1: ConvBnQ,
    conv2: ConvBnQ,
    shortcut: Option<ConvBnQ>,
    out: ActQuant,
}

impl BasicBlock {
    fn new(path: &nn::Path, name: String, cin: i64, cout: i64, stride: i64, spec: &NetSpec) -> Self {
        let (w, a) = (Some(spec.weight_bits), spec.act_bits);
        BasicBlock {
            name,
            conv1: ConvBnQ::new(&(path / "conv1"), conv_shape(cin, cout, 3, stride), w, a, true),
            conv2: ConvBnQ::new(&(path / "conv2"), conv_shape(cout, cout, 3, 1), w, a, false),
            shortcut: (stride != 1 || cin != cout)
                .then(|| ConvBnQ::new(&(path / "shortcut"), conv_shape(cin, cout, 1, stride), w, a, false)),
            out: ActQuant::new(&(path / "out"), a),
        }
    }

    fn forward(&self, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        let h = self.conv2.forward(&self.conv1.forward(x, train, mode), train, mode);
        let shortcut = match &self.shortcut {
            Some(sc) => sc.forward(x, train, mode).value,
            None => x.value.shallow_clone(),
        };
        self.out.forward((h.value + shortcut).relu(), mode)
    }
}

/// The stages of a CIFAR ResNet (16/32/64 channels), reading the stem's output.
#[derive(Debug)]
pub(super) struct ResNet {
    blocks: Vec<BasicBlock>,
    channels: i64,
}

impl ResNet {
    /// Stem output channels.
    pub(super) const STEM: i64 = 16;

    pub(super) fn new(path: &nn::Path, spec: &NetSpec, blocks_per_stage: usize) -> Self {
        let stages: [i64; 3] = [Self::STEM, 32, 64];
        let mut blocks = Vec::new();
        let mut cin = Self::STEM;
        for (s, &cout) in stages.iter().enumerate() {
            for b in 0..blocks_per_stage {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    &(path / format!("layer{}", s + 1) / b),
                    format!("layer{}.{b}", s + 1),
                    cin,
                    cout,
                    stride,
                    spec,
                ));
                cin = cout;
            }
        }
        ResNet { blocks, channels: cin }
    }

    pub(super) fn channels(&self) -> i64 {
        self.channels
    }

    /// Blocks: the basic blocks.
    pub(super) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Block `i` on its input.
    pub(super) fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        self.blocks[i].forward(x, train, mode)
    }

    /// The quantizer of block `i`'s output.
    pub(super) fn block_output(&self, i: usize) -> &ActQuant {
        &self.blocks[i].out
    }

    /// Integer ops of every block, as [`BasicBlock::forward`] computes them.
    pub(super) fn integer_ops<'a>(&'a self, ops: &mut IntegerOps<'a>, mut x: usize) -> usize {
        for b in &self.blocks {
            let h = ops.conv(format!("{}.conv1", b.name), x, &b.conv1);
            let h = ops.conv(format!("{}.conv2", b.name), h, &b.conv2);
            let shortcut = match &b.shortcut {
                Some(sc) => ops.conv(format!("{}.shortcut", b.name), x, sc),
                None => x,
            };
            x = ops.add(format!("{}.add", b.name), [h, shortcut], &b.out, true);
        }
        x
    }

    pub(super) fn act_quantizers<'a>(&'a self, v: &mut Vec<(&'static str, &'a ActQuant)>) {
        for b in &self.blocks {
            v.push(("conv1", &b.conv1.q));
            v.push(("conv2", &b.conv2.q));
            if let Some(sc) = &b.shortcut {
                v.push(("shortcut", &sc.q));
            }
            v.push(("out", &b.out));
        }
    }

    pub(super) fn conv_layers<'a>(&'a self, v: &mut Vec<&'a ConvBnQ>) {
        for b in &self.blocks {
            v.extend([&b.conv1, &b.conv2]);
            if let Some(sc) = &b.shortcut {
                v.push(sc);
            }
        }
    }
}
