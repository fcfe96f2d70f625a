//! MobileNetV1 and MobileNetV2 bodies, mirroring `qfd_codegen::synth`'s integer topologies layer for layer
//! (same channel rounding, block tables, strides and layer names).
//!
//! - V1 (Howard et al.): 13 blocks of a 3x3 depthwise conv and a 1x1 pointwise conv, each BN, ReLU, quantizer.
//! - V2 (Sandler et al.): inverted residuals: `expand` (1x1, skipped when t = 1), `dw` (3x3 depthwise), both
//!   BN, ReLU, quantizer; `project` (1x1) BN and quantizer without ReLU (the linear bottleneck); when the
//!   stride is 1 and the channels match, `add` quantizes `project + input` (values, no ReLU). Then
//!   `conv_last` (1x1 to 1280 channels, scaled when width > 1), BN, ReLU, quantizer.

use qfd_codegen::arch::{
    mobilenet_v2_last_channels, scaled_channels, MOBILENET_STEM_CHANNELS, MOBILENET_V1_BLOCKS,
    MOBILENET_V2_STAGES,
};
use tch::nn;

use super::super::quant::{ActQuant, ConvShape, QTensor, QuantMode};
use super::{conv_shape, ConvBnQ, IntegerOps, NetSpec};

/// Channels scaled by the width multiplier: the integer graph's rounding, from the shared table crate.
fn scaled(c: usize, width: f64) -> i64 {
    scaled_channels(c, width as f32) as i64
}

/// Stem output channels of both MobileNets.
pub(super) fn stem_channels(width: f64) -> i64 {
    scaled(MOBILENET_STEM_CHANNELS, width)
}

/// 3x3 depthwise convolution geometry (padding 1).
fn depthwise(channels: i64, stride: i64) -> ConvShape {
    ConvShape { groups: channels, ..conv_shape(channels, channels, 3, stride) }
}

/// Depthwise-separable block of MobileNetV1.
#[derive(Debug)]
struct DwPw {
    dw: ConvBnQ,
    pw: ConvBnQ,
}

/// MobileNetV1 after the stem.
#[derive(Debug)]
pub(super) struct MobileNetV1 {
    blocks: Vec<DwPw>,
    channels: i64,
}

impl MobileNetV1 {
    pub(super) fn new(path: &nn::Path, spec: &NetSpec) -> Self {
        let (w, a) = (Some(spec.weight_bits), spec.act_bits);
        let mut cin = stem_channels(spec.width);
        let mut blocks = Vec::new();
        for (i, &(c, s)) in MOBILENET_V1_BLOCKS.iter().enumerate() {
            let s = s as i64;
            let p = path / "blocks" / i;
            let cout = scaled(c, spec.width);
            blocks.push(DwPw {
                dw: ConvBnQ::new(&(&p / "dw"), depthwise(cin, s), w, a, true),
                pw: ConvBnQ::new(&(&p / "pw"), conv_shape(cin, cout, 1, 1), w, a, true),
            });
            cin = cout;
        }
        MobileNetV1 { blocks, channels: cin }
    }

    pub(super) fn channels(&self) -> i64 {
        self.channels
    }

    /// Blocks: the depthwise-separable blocks.
    pub(super) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Block `i` on its input.
    pub(super) fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        let b = &self.blocks[i];
        b.pw.forward(&b.dw.forward(x, train, mode), train, mode)
    }

    /// The quantizer of block `i`'s output.
    pub(super) fn block_output(&self, i: usize) -> &ActQuant {
        &self.blocks[i].pw.q
    }

    /// Integer ops, as [`MobileNetV1::forward`] computes them.
    pub(super) fn integer_ops<'a>(&'a self, ops: &mut IntegerOps<'a>, mut x: usize) -> usize {
        for (i, b) in self.blocks.iter().enumerate() {
            x = ops.conv(format!("blocks.{i}.dw"), x, &b.dw);
            x = ops.conv(format!("blocks.{i}.pw"), x, &b.pw);
        }
        x
    }

    pub(super) fn act_quantizers<'a>(&'a self, v: &mut Vec<(&'static str, &'a ActQuant)>) {
        for b in &self.blocks {
            v.push(("dw", &b.dw.q));
            v.push(("pw", &b.pw.q));
        }
    }

    pub(super) fn conv_layers<'a>(&'a self, v: &mut Vec<&'a ConvBnQ>) {
        for b in &self.blocks {
            v.extend([&b.dw, &b.pw]);
        }
    }
}

/// Inverted residual block of MobileNetV2.
#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBnQ>,
    dw: ConvBnQ,
    project: ConvBnQ,
    /// Quantizer of `project + input`, when the block has the residual add.
    add: Option<ActQuant>,
}

impl InvertedResidual {
    fn forward(&self, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        let e = self.expand.as_ref().map(|e| e.forward(x, train, mode));
        let h = self.dw.forward(e.as_ref().unwrap_or(x), train, mode);
        let h = self.project.forward(&h, train, mode);
        match &self.add {
            Some(q) => q.forward(h.value + &x.value, mode),
            None => h,
        }
    }
}

/// MobileNetV2 after the stem, `conv_last` included.
#[derive(Debug)]
pub(super) struct MobileNetV2 {
    blocks: Vec<InvertedResidual>,
    last: ConvBnQ,
}

impl MobileNetV2 {
    pub(super) fn new(path: &nn::Path, spec: &NetSpec) -> Self {
        let (w, a) = (Some(spec.weight_bits), spec.act_bits);
        let mut cin = stem_channels(spec.width);
        let mut blocks = Vec::new();
        for &(t, c, n, s) in &MOBILENET_V2_STAGES {
            let (t, s) = (t as i64, s as i64);
            for i in 0..n {
                let p = path / "blocks" / blocks.len();
                let stride = if i == 0 { s } else { 1 };
                let (hidden, cout) = (cin * t, scaled(c, spec.width));
                blocks.push(InvertedResidual {
                    expand: (t != 1)
                        .then(|| ConvBnQ::new(&(&p / "expand"), conv_shape(cin, hidden, 1, 1), w, a, true)),
                    dw: ConvBnQ::new(&(&p / "dw"), depthwise(hidden, stride), w, a, true),
                    project: ConvBnQ::new(&(&p / "project"), conv_shape(hidden, cout, 1, 1), w, a, false),
                    add: (stride == 1 && cin == cout).then(|| ActQuant::new(&(&p / "add"), a)),
                });
                cin = cout;
            }
        }
        let last_channels = mobilenet_v2_last_channels(spec.width as f32) as i64;
        let last = ConvBnQ::new(&(path / "conv_last"), conv_shape(cin, last_channels, 1, 1), w, a, true);
        MobileNetV2 { blocks, last }
    }

    pub(super) fn channels(&self) -> i64 {
        self.last.conv.shape.cout
    }

    /// Blocks: the inverted residuals, then `conv_last` as a block of its own.
    pub(super) fn len(&self) -> usize {
        self.blocks.len() + 1
    }

    /// Block `i` on its input.
    pub(super) fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        match self.blocks.get(i) {
            Some(b) => b.forward(x, train, mode),
            None => self.last.forward(x, train, mode),
        }
    }

    /// The quantizer of block `i`'s output.
    pub(super) fn block_output(&self, i: usize) -> &ActQuant {
        match self.blocks.get(i) {
            Some(b) => b.add.as_ref().unwrap_or(&b.project.q),
            None => &self.last.q,
        }
    }

    /// Integer ops, as [`MobileNetV2::forward`] computes them.
    pub(super) fn integer_ops<'a>(&'a self, ops: &mut IntegerOps<'a>, mut x: usize) -> usize {
        for (i, b) in self.blocks.iter().enumerate() {
            let name = format!("blocks.{i}");
            let mut h = x;
            if let Some(e) = &b.expand {
                h = ops.conv(format!("{name}.expand"), h, e);
            }
            h = ops.conv(format!("{name}.dw"), h, &b.dw);
            h = ops.conv(format!("{name}.project"), h, &b.project);
            x = match &b.add {
                Some(q) => ops.add(format!("{name}.add"), [h, x], q, false),
                None => h,
            };
        }
        ops.conv("conv_last".into(), x, &self.last)
    }

    pub(super) fn act_quantizers<'a>(&'a self, v: &mut Vec<(&'static str, &'a ActQuant)>) {
        for b in &self.blocks {
            if let Some(e) = &b.expand {
                v.push(("expand", &e.q));
            }
            v.push(("dw", &b.dw.q));
            v.push(("project", &b.project.q));
            if let Some(q) = &b.add {
                v.push(("add", q));
            }
        }
        v.push(("conv_last", &self.last.q));
    }

    pub(super) fn conv_layers<'a>(&'a self, v: &mut Vec<&'a ConvBnQ>) {
        for b in &self.blocks {
            if let Some(e) = &b.expand {
                v.push(e);
            }
            v.extend([&b.dw, &b.project]);
        }
        v.push(&self.last);
    }
}
