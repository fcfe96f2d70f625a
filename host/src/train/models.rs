//! The architectures of the training graph, with parameter names following the module path
//! (`layer1.0.conv1.weight`), so checkpoints read like the model and the exporter can find each layer.
//!
//! Every stored tensor has its own activation quantizer (see [`quant`](super::quant)); the layout mirrors
//! the integer graph `qfd-codegen` builds:
//! - stem: raw pixels `p / 255`, zero-padded, normalised with a per-channel mean and one shared std (so the
//!   normalisation folds exactly into the first layer's bias and scale), 8-bit conv, BN, ReLU, quantizer;
//! - ResNet basic block (He et al.): `conv1-BN-ReLU-q1`, `conv2-BN-q2`, shortcut = the block input's value or
//!   `1x1 conv-BN-q`, `ReLU(q2 + shortcut)`, quantizer; both branches reach the add as codes;
//! - head: mean of the last tensor's values over the pixels (the pooled feature), optionally quantized (the
//!   QFD teacher's feature quantizer), then an 8-bit fully connected layer.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::quant::{ActQuant, ConvShape, QConv2d, QLinear, QTensor, QuantMode};

/// Architectures the trainer builds.
pub use qfd_codegen::synth::Arch;

/// Everything that fixes a network's shape and bit-widths.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    /// Architecture.
    pub arch: Arch,
    /// Input `[C, H, W]`.
    pub input: [i64; 3],
    /// Classes.
    pub classes: i64,
    /// Inner weight bits.
    pub weight_bits: u8,
    /// Inner activation bits.
    pub act_bits: u8,
    /// Keep the first conv and the last FC in float (the paper's setting; not exportable).
    pub fp_first_last: bool,
    /// Bits of the pooled-feature quantizer (the QFD teacher), if any.
    pub feature_bits: Option<u8>,
    /// Per-channel mean of `p / 255`.
    pub mean: Vec<f64>,
    /// One std of `p / 255` shared by the channels.
    pub std: f64,
}

/// Outputs of a forward pass.
#[derive(Debug)]
pub struct NetOutput {
    /// `[N, classes]`.
    pub logits: Tensor,
    /// Pooled feature `[N, F]` (quantized when the network has a feature quantizer).
    pub feature: Tensor,
}

/// Bits of the first conv and last FC: 8 unless float.
fn edge_bits(spec: &NetSpec) -> Option<u8> {
    (!spec.fp_first_last).then_some(8)
}

/// A conv, its BatchNorm and the quantizer of its output.
#[derive(Debug)]
struct ConvBnQ {
    conv: QConv2d,
    bn: nn::BatchNorm,
    q: ActQuant,
    relu: bool,
}

impl ConvBnQ {
    fn new(path: &nn::Path, shape: ConvShape, wbits: Option<u8>, abits: u8, relu: bool) -> Self {
        ConvBnQ {
            conv: QConv2d::new(&(path / "conv"), shape, wbits),
            bn: nn::batch_norm2d(path / "bn", shape.cout, Default::default()),
            q: ActQuant::new(&(path / "q"), abits),
            relu,
        }
    }

    fn forward(&self, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        let y = self.bn.forward_t(&self.conv.forward(x, mode), train);
        self.q.forward(if self.relu { y.relu() } else { y }, mode)
    }
}

fn conv_shape(cin: i64, cout: i64, kernel: i64, stride: i64) -> ConvShape {
    ConvShape { cin, cout, kernel, stride, padding: kernel / 2, groups: 1 }
}

/// ResNet basic block.
#[derive(Debug)]
struct BasicBlock {
    conv1: ConvBnQ,
    conv2: ConvBnQ,
    shortcut: Option<ConvBnQ>,
    out: ActQuant,
}

impl BasicBlock {
    fn new(path: &nn::Path, cin: i64, cout: i64, stride: i64, spec: &NetSpec) -> Self {
        let (w, a) = (Some(spec.weight_bits), spec.act_bits);
        BasicBlock {
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

/// A network of the SDK's architectures with quantizable layers.
#[derive(Debug)]
pub struct Net {
    /// What it was built from.
    pub spec: NetSpec,
    stem: ConvBnQ,
    blocks: Vec<BasicBlock>,
    feature_quant: Option<ActQuant>,
    fc: QLinear,
    mean: Tensor,
}

impl Net {
    /// Builds the network's variables under `path`.
    pub fn new(path: &nn::Path, spec: &NetSpec) -> Result<Self, String> {
        let stages: &[i64] = &[16, 32, 64];
        let blocks_per_stage = match spec.arch {
            Arch::ResNet8 => 1,
            Arch::ResNet20 => 3,
            other => return Err(format!("the trainer does not build {other} yet (resnet8, resnet20)")),
        };
        if spec.mean.len() != spec.input[0] as usize {
            return Err(format!("{} mean values for {} input channels", spec.mean.len(), spec.input[0]));
        }
        // The stem pads before normalising (see the module docs), so its conv has no padding of its own.
        let stem_shape = ConvShape { padding: 0, ..conv_shape(spec.input[0], stages[0], 3, 1) };
        let stem = ConvBnQ::new(&(path / "conv1"), stem_shape, edge_bits(spec), spec.act_bits, true);
        let mut blocks = Vec::new();
        let mut cin = stages[0];
        for (s, &cout) in stages.iter().enumerate() {
            for b in 0..blocks_per_stage {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    &(path / format!("layer{}", s + 1) / b),
                    cin,
                    cout,
                    stride,
                    spec,
                ));
                cin = cout;
            }
        }
        let feature_quant = spec.feature_bits.map(|bits| ActQuant::new(&(path / "feature_q"), bits));
        let fc = QLinear::new(&(path / "fc"), cin, spec.classes, edge_bits(spec));
        let mean = Tensor::from_slice(&spec.mean)
            .to_kind(Kind::Float)
            .reshape([1, -1, 1, 1])
            .to_device(path.device());
        Ok(Net { spec: spec.clone(), stem, blocks, feature_quant, fc, mean })
    }

    /// Forward pass on pixels `p / 255` (`[N, C, H, W]` floats in `[0, 1]`).
    pub fn forward(&self, pixels: &Tensor, train: bool, mode: QuantMode) -> NetOutput {
        let x = pixels.constant_pad_nd([1, 1, 1, 1]);
        let x = (x - &self.mean) / self.spec.std;
        let mut h = self.stem.forward(&QTensor::float(x), train, mode);
        for block in &self.blocks {
            h = block.forward(&h, train, mode);
        }
        let pooled = h.value.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let feature = match &self.feature_quant {
            // The teacher's feature quantizer works in every mode: it is the teacher's own layer.
            Some(q) => {
                q.forward(pooled, if mode == QuantMode::Float { QuantMode::Quantize } else { mode }).value
            }
            None => pooled,
        };
        NetOutput { logits: self.fc.forward(&feature, mode), feature }
    }

    /// The network's activation quantizers with their names (for tests and export).
    pub fn act_quantizers(&self) -> Vec<(&'static str, &ActQuant)> {
        let mut v = vec![("stem", &self.stem.q)];
        for b in &self.blocks {
            v.push(("conv1", &b.conv1.q));
            v.push(("conv2", &b.conv2.q));
            if let Some(sc) = &b.shortcut {
                v.push(("shortcut", &sc.q));
            }
            v.push(("out", &b.out));
        }
        v
    }

    /// The network's quantized convolutions (stem first).
    pub fn convs(&self) -> Vec<&QConv2d> {
        let mut v = vec![&self.stem.conv];
        for b in &self.blocks {
            v.extend([&b.conv1.conv, &b.conv2.conv]);
            if let Some(sc) = &b.shortcut {
                v.push(&sc.conv);
            }
        }
        v
    }

    /// The classifier.
    pub fn fc(&self) -> &QLinear {
        &self.fc
    }
}
