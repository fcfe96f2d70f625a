//! The architectures of the training graph, with parameter names following the module path
//! (`layer1.0.conv1.weight`), so checkpoints read like the model and the exporter can find each layer.
//!
//! Every stored tensor has its own activation quantizer (see [`quant`](super::quant)); the layout mirrors
//! the integer graph `qfd-codegen` builds:
//! - stem: raw pixels `p / 255`, zero-padded, normalised with a per-channel mean and one shared std (so the
//!   normalisation folds exactly into the first layer's bias and scale), 8-bit conv, BN, ReLU, quantizer;
//! - ResNet basic block (He et al.): `conv1-BN-ReLU-q1`, `conv2-BN-q2`, shortcut = the block input's value or
//!   `1x1 conv-BN-q`, `ReLU(q2 + shortcut)`, quantizer; both branches reach the add as codes;
//! - MobileNetV1/V2 (see [`mobilenet`]): the stem has stride 2 and `scaled(32, width)` channels; depthwise
//!   convs are grouped [`QConv2d`]s; V2's projections are quantized without ReLU and its residual add
//!   quantizes the sum of the two values, without ReLU;
//! - vision transformer (see [`vit`]): the stem is the patch embedding (no padding), then the
//!   position encoding, transformer blocks and a final LayerNorm;
//! - head: mean of the last tensor's values over the pixels (the pooled feature), optionally quantized (the
//!   QFD teacher's feature quantizer), then an 8-bit fully connected layer.

use std::rc::Rc;

mod integer_ops;
mod mobilenet;
mod resnet;
pub mod vit;

pub use integer_ops::{IntegerOp, IntegerOps};

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::ewgs::GradTape;
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
    /// Channel width multiplier of the MobileNets (ResNets ignore it).
    pub width: f64,
    /// EWGS gradient scaling with this `delta` in training passes; `None` for the straight-through gradient.
    pub ewgs_delta: Option<f64>,
    /// The vision transformer's shape (other architectures ignore it).
    pub vit: vit::VitShape,
    /// Log2 (Log-Int-Softmax) attention probabilities in the quantized vision transformer; linear codes of
    /// the activation bit-width otherwise.
    pub log2_softmax: bool,
}

/// Outputs of a forward pass.
#[derive(Debug)]
pub struct NetOutput {
    /// `[N, classes]`.
    pub logits: Tensor,
    /// Pooled feature `[N, F]` (quantized when the network has a feature quantizer).
    pub feature: Tensor,
}

/// Momentum of the BatchNorm running statistics (PyTorch's default).
const BN_MOMENTUM: f64 = 0.1;

/// BatchNorm's `eps` (PyTorch's default), which the exporter folds with the running variance.
pub const BN_EPS: f64 = 1e-5;

/// Zero padding of the raw pixels before the stem (whose conv then has no padding of its own).
pub const STEM_PADDING: i64 = 1;

/// Bits of the first conv and last FC: 8 unless float.
fn edge_bits(spec: &NetSpec) -> Option<u8> {
    (!spec.fp_first_last).then_some(8)
}

/// The per-channel affine map after a convolution.
#[derive(Debug)]
pub enum ConvAffine {
    /// A BatchNorm (the CNNs, and a vision transformer's patch embedding and position encoding).
    BatchNorm(nn::BatchNorm),
    /// A bias (a vision transformer's token-wise linear layers).
    Bias(Tensor),
}

/// A conv, its BatchNorm (or bias) and the quantizer of its output.
#[derive(Debug)]
pub struct ConvBnQ {
    /// The convolution.
    pub conv: QConv2d,
    /// Its BatchNorm or bias.
    pub affine: ConvAffine,
    /// The quantizer of the output.
    pub q: ActQuant,
    /// Whether a ReLU precedes the quantizer.
    pub relu: bool,
}

impl ConvBnQ {
    fn new(path: &nn::Path, shape: ConvShape, wbits: Option<u8>, abits: u8, relu: bool) -> Self {
        Self::from_conv(path, QConv2d::new(&(path / "conv"), shape, wbits), abits, relu)
    }

    /// The layer around `conv`, which was built under `path / "conv"`.
    fn from_conv(path: &nn::Path, conv: QConv2d, abits: u8, relu: bool) -> Self {
        let cout = conv.shape.cout;
        ConvBnQ {
            conv,
            // BatchNorm scales start at 1 as in PyTorch (tch's default draws them from U(0, 1)).
            affine: ConvAffine::BatchNorm(nn::batch_norm2d(
                path / "bn",
                cout,
                nn::BatchNormConfig {
                    ws_init: nn::Init::Const(1.0),
                    momentum: BN_MOMENTUM,
                    eps: BN_EPS,
                    ..Default::default()
                },
            )),
            q: ActQuant::new(&(path / "q"), abits),
            relu,
        }
    }

    /// A convolution with `bits`-bit weights per output channel and a bias (no ReLU).
    fn with_bias(path: &nn::Path, shape: ConvShape, bits: u8, abits: u8) -> Self {
        ConvBnQ {
            conv: QConv2d::per_channel(&(path / "conv"), shape, bits),
            affine: ConvAffine::Bias(path.var("bias", &[shape.cout], nn::Init::Const(0.0))),
            q: ActQuant::new(&(path / "q"), abits),
            relu: false,
        }
    }

    /// Its BatchNorm, if it has one.
    pub fn batch_norm(&self) -> Option<&nn::BatchNorm> {
        match &self.affine {
            ConvAffine::BatchNorm(bn) => Some(bn),
            ConvAffine::Bias(_) => None,
        }
    }

    /// The layer before its quantizer: `relu?(BN(conv(x)))`.
    pub fn pre_activation(&self, x: &QTensor, train: bool, mode: QuantMode) -> Tensor {
        let y = channels_last(&self.conv.forward(x, mode));
        let y = match &self.affine {
            ConvAffine::BatchNorm(bn) => bn.forward_t(&y, train),
            ConvAffine::Bias(b) => y + b.reshape([1, -1, 1, 1]),
        };
        if self.relu {
            y.relu()
        } else {
            y
        }
    }

    /// The layer's stored output: `q(relu?(BN(conv(x))))`.
    pub fn forward(&self, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        self.q.forward(self.pre_activation(x, train, mode), mode)
    }
}

/// `x` (`[N, C, H, W]`) stored channels-last (NHWC), the layout oneDNN's and cuDNN's convolutions run
/// fastest in (a ResNet-20 QFD step on 2 CPU cores: about a fifth faster). A convolution keeps its input's
/// layout and elementwise ops keep theirs, so only the first conv's output is copied; for a tensor already
/// channels-last this is no copy. tch has no memory-format argument, hence the permutes.
fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn conv_shape(cin: i64, cout: i64, kernel: i64, stride: i64) -> ConvShape {
    ConvShape { cin, cout, kernel, stride, padding: kernel / 2, groups: 1 }
}

/// The layers between the stem and the head.
#[derive(Debug)]
enum Body {
    ResNet(resnet::ResNet),
    MobileNetV1(mobilenet::MobileNetV1),
    /// Boxed: its last layer makes it much larger than the others.
    MobileNetV2(Box<mobilenet::MobileNetV2>),
    Vit(Box<vit::Vit>),
}

impl Body {
    /// Channels of the last tensor (the pooled feature's width).
    fn channels(&self) -> i64 {
        match self {
            Body::ResNet(b) => b.channels(),
            Body::MobileNetV1(b) => b.channels(),
            Body::MobileNetV2(b) => b.channels(),
            Body::Vit(b) => b.channels(),
        }
    }

    /// Its blocks, as block-wise replacement swaps them (see [`Net::blocks`]).
    fn len(&self) -> usize {
        match self {
            Body::ResNet(b) => b.len(),
            Body::MobileNetV1(b) => b.len(),
            Body::MobileNetV2(b) => b.len(),
            Body::Vit(b) => b.len(),
        }
    }

    /// Block `i` on its input.
    fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        match self {
            Body::ResNet(b) => b.block(i, x, train, mode),
            Body::MobileNetV1(b) => b.block(i, x, train, mode),
            Body::MobileNetV2(b) => b.block(i, x, train, mode),
            Body::Vit(b) => b.block(i, x, train, mode),
        }
    }

    /// The quantizer of block `i`'s output (`None` for a transformer's stream).
    fn block_output(&self, i: usize) -> Option<&ActQuant> {
        match self {
            Body::ResNet(b) => Some(b.block_output(i)),
            Body::MobileNetV1(b) => Some(b.block_output(i)),
            Body::MobileNetV2(b) => Some(b.block_output(i)),
            Body::Vit(b) => b.block_output(i),
        }
    }

    fn act_quantizers<'a>(&'a self, v: &mut Vec<(&'static str, &'a ActQuant)>) {
        match self {
            Body::ResNet(b) => b.act_quantizers(v),
            Body::MobileNetV1(b) => b.act_quantizers(v),
            Body::MobileNetV2(b) => b.act_quantizers(v),
            Body::Vit(b) => b.act_quantizers(v),
        }
    }

    fn integer_ops<'a>(&'a self, ops: &mut IntegerOps<'a>, input: usize) -> usize {
        match self {
            Body::ResNet(b) => b.integer_ops(ops, input),
            Body::MobileNetV1(b) => b.integer_ops(ops, input),
            Body::MobileNetV2(b) => b.integer_ops(ops, input),
            Body::Vit(b) => b.integer_ops(ops, input),
        }
    }

    fn conv_layers<'a>(&'a self, v: &mut Vec<&'a ConvBnQ>) {
        match self {
            Body::ResNet(b) => b.conv_layers(v),
            Body::MobileNetV1(b) => b.conv_layers(v),
            Body::MobileNetV2(b) => b.conv_layers(v),
            Body::Vit(b) => b.conv_layers(v),
        }
    }
}

/// A network of the SDK's architectures with quantizable layers.
#[derive(Debug)]
pub struct Net {
    /// What it was built from.
    pub spec: NetSpec,
    stem: ConvBnQ,
    body: Body,
    feature_quant: Option<ActQuant>,
    fc: QLinear,
    mean: Tensor,
    tape: Option<Rc<GradTape>>,
}

impl Net {
    /// Builds the network's variables under `path`.
    pub fn new(path: &nn::Path, spec: &NetSpec) -> Result<Self, String> {
        if spec.mean.len() != spec.input[0] as usize {
            return Err(format!("{} mean values for {} input channels", spec.mean.len(), spec.input[0]));
        }
        let mobile = matches!(spec.arch, Arch::MobileNetV1 | Arch::MobileNetV2);
        if mobile && !(spec.width > 0.0 && spec.width <= 4.0) {
            return Err(format!("width {} must be in (0, 4]", spec.width));
        }
        let (stem, body) = match spec.arch {
            Arch::Vit => Self::vit_parts(path, spec)?,
            _ => {
                let (stem_channels, stem_stride) = if mobile {
                    (mobilenet::stem_channels(spec.width), 2)
                } else {
                    (resnet::ResNet::STEM, 1)
                };
                // The stem pads before normalising (see the module docs), so its conv has no padding.
                let stem_shape =
                    ConvShape { padding: 0, ..conv_shape(spec.input[0], stem_channels, 3, stem_stride) };
                let stem = ConvBnQ::new(&(path / "conv1"), stem_shape, edge_bits(spec), spec.act_bits, true);
                let body = match spec.arch {
                    Arch::ResNet8 => Body::ResNet(resnet::ResNet::new(path, spec, 1)),
                    Arch::ResNet20 => Body::ResNet(resnet::ResNet::new(path, spec, 3)),
                    Arch::MobileNetV1 => Body::MobileNetV1(mobilenet::MobileNetV1::new(path, spec)),
                    _ => Body::MobileNetV2(Box::new(mobilenet::MobileNetV2::new(path, spec))),
                };
                (stem, body)
            }
        };
        let cin = body.channels();
        let feature_quant = spec.feature_bits.map(|bits| ActQuant::new(&(path / "feature_q"), bits));
        let fc = QLinear::new(&(path / "fc"), cin, spec.classes, edge_bits(spec));
        let mean = Tensor::from_slice(&spec.mean)
            .to_kind(Kind::Float)
            .reshape([1, -1, 1, 1])
            .to_device(path.device());
        let tape = spec.ewgs_delta.map(GradTape::new);
        Ok(Net { spec: spec.clone(), stem, body, feature_quant, fc, mean, tape })
    }

    /// A vision transformer's stem (the patch embedding: a convolution with stride equal to its kernel,
    /// per-channel weights, a BatchNorm and a ReLU) and body, after checking its shape.
    fn vit_parts(path: &nn::Path, spec: &NetSpec) -> Result<(ConvBnQ, Body), String> {
        let vit = spec.vit;
        let [_, h, w] = spec.input.map(|d| d as usize);
        vit.check(h, w)?;
        let patch = vit.patch as i64;
        let shape = ConvShape {
            cin: spec.input[0],
            cout: vit.dim as i64,
            kernel: patch,
            stride: patch,
            padding: 0,
            groups: 1,
        };
        let stem_path = path / "patch_embed";
        let conv = match edge_bits(spec) {
            Some(bits) => QConv2d::per_channel(&(&stem_path / "conv"), shape, bits),
            None => QConv2d::new(&(&stem_path / "conv"), shape, None),
        };
        // With a ReLU, the embedding's codes start at the real 0, so the position encoding's zero padding
        // (code 0 on the device) is the float model's zero padding too.
        let stem = ConvBnQ::from_conv(&stem_path, conv, spec.act_bits, true);
        Ok((stem, Body::Vit(Box::new(vit::Vit::new(path, spec)))))
    }

    /// The first layer's name in the integer graph.
    pub fn stem_name(&self) -> &'static str {
        match self.spec.arch {
            Arch::Vit => "patch_embed",
            _ => "conv1",
        }
    }

    /// Zero padding of the raw pixels before the stem: [`STEM_PADDING`], none before a patch embedding.
    pub fn stem_padding(&self) -> i64 {
        match self.spec.arch {
            Arch::Vit => 0,
            _ => STEM_PADDING,
        }
    }

    /// The vision transformer's body, if this network is one.
    pub fn vit(&self) -> Option<&vit::Vit> {
        match &self.body {
            Body::Vit(v) => Some(v),
            _ => None,
        }
    }

    /// Forward pass on pixels `p / 255` (`[N, C, H, W]` floats in `[0, 1]`); a training pass records its
    /// roundings for [`Net::backward`] when the network scales gradients with EWGS.
    pub fn forward(&self, pixels: &Tensor, train: bool, mode: QuantMode) -> NetOutput {
        match &self.tape {
            Some(tape) if train => tape.record(|| self.forward_pass(pixels, train, mode)),
            _ => self.forward_pass(pixels, train, mode),
        }
    }

    /// Back-propagates `loss` of the last training pass, with EWGS scaling if the network uses it.
    pub fn backward(&self, loss: &Tensor) -> Result<(), tch::TchError> {
        match &self.tape {
            Some(tape) => tape.backward(loss),
            None => loss.f_backward(),
        }
    }

    /// [`Net::forward`], also returning every block's input (see [`Net::blocks`]): `inputs[i]` is what block
    /// `i` read, the stem's the padded, normalised pixels.
    pub fn forward_keeping_inputs(
        &self,
        pixels: &Tensor,
        train: bool,
        mode: QuantMode,
    ) -> (NetOutput, Vec<QTensor>) {
        let pass = || {
            let mut inputs = vec![self.stem_input(pixels)];
            for i in 0..self.blocks() - 1 {
                let next = self.block(i, &inputs[i], train, mode);
                inputs.push(next);
            }
            (self.head(&inputs[self.blocks() - 1], mode), inputs)
        };
        match &self.tape {
            Some(tape) if train => tape.record(pass),
            _ => pass(),
        }
    }

    fn forward_pass(&self, pixels: &Tensor, train: bool, mode: QuantMode) -> NetOutput {
        self.forward_from(0, self.stem_input(pixels), train, mode)
    }

    /// Blocks, as block-wise replacement training swaps them between a quantized network and its
    /// full-precision partner: the stem (block 0), each block of the body (a ResNet basic block, a
    /// MobileNet depthwise-separable or inverted-residual block, MobileNetV2's `conv_last`), and the head
    /// (global pool and classifier, the last).
    pub fn blocks(&self) -> usize {
        self.body.len() + 2
    }

    /// What the stem reads: the pixels zero-padded and normalised (see the module docs).
    pub fn stem_input(&self, pixels: &Tensor) -> QTensor {
        let x = pixels.constant_pad_nd([self.stem_padding(); 4]);
        QTensor::float((x - &self.mean) / self.spec.std)
    }

    /// Block `i` (any but the head) on its input.
    pub fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        match i {
            0 => self.stem.forward(x, train, mode),
            _ => self.body.block(i - 1, x, train, mode),
        }
    }

    /// The quantizer of block `i`'s output (any but the head): the quantizer that puts what block `i + 1`
    /// reads on this network's grid.
    pub fn block_output_quantizer(&self, i: usize) -> Option<&ActQuant> {
        match i {
            0 => Some(&self.stem.q),
            _ => self.body.block_output(i - 1),
        }
    }

    /// Blocks `i..` on block `i`'s input `x`.
    pub fn forward_from(&self, i: usize, x: QTensor, train: bool, mode: QuantMode) -> NetOutput {
        let mut h = x;
        for b in i..self.blocks() - 1 {
            h = self.block(b, &h, train, mode);
        }
        self.head(&h, mode)
    }

    /// The head on the last block's output: the pooled feature (quantized for a QFD teacher) and the logits.
    pub fn head(&self, h: &QTensor, mode: QuantMode) -> NetOutput {
        let pooled = h.value.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let feature = match &self.feature_quant {
            // The teacher's feature quantizer works in every mode: it is the teacher's own layer.
            Some(q) => q.forward(pooled, if mode.is_float() { QuantMode::Quantize } else { mode }).value,
            None => pooled,
        };
        NetOutput { logits: self.fc.forward(&feature, mode), feature }
    }

    /// The network's activation quantizers with their names (for tests and export).
    pub fn act_quantizers(&self) -> Vec<(&'static str, &ActQuant)> {
        let mut v = vec![("stem", &self.stem.q)];
        self.body.act_quantizers(&mut v);
        v
    }

    /// The integer graph this network becomes (see [`IntegerOp`]), mirroring [`Net::forward`] op for op.
    pub fn integer_ops(&self) -> Vec<IntegerOp<'_>> {
        let mut ops = IntegerOps::default();
        let x = ops.conv(self.stem_name().into(), 0, &self.stem);
        let x = self.body.integer_ops(&mut ops, x);
        let pooled = ops.push(IntegerOp::GlobalPool { input: x });
        ops.push(IntegerOp::Classifier { input: pooled, fc: &self.fc });
        ops.ops
    }

    /// Whether the pooled feature is quantized (a QFD teacher): an op the integer format does not have.
    pub fn has_feature_quantizer(&self) -> bool {
        self.feature_quant.is_some()
    }

    /// The network's convolutions with their BatchNorms and output quantizers (stem first).
    pub fn conv_layers(&self) -> Vec<&ConvBnQ> {
        let mut v = vec![&self.stem];
        self.body.conv_layers(&mut v);
        v
    }

    /// The network's quantized convolutions (stem first).
    pub fn convs(&self) -> Vec<&QConv2d> {
        self.conv_layers().into_iter().map(|l| &l.conv).collect()
    }

    /// Re-estimates every BatchNorm's running statistics as the plain average over `batches` of the batch
    /// statistics of training mode, with the weights as they are. Oscillating quantized weights leave
    /// exponential running averages that no longer match the network (Nagel et al., "Overcoming Oscillations
    /// in Quantization-Aware Training", 2022); the exported model folds these statistics.
    pub fn reestimate_batch_norm<'a>(&self, batches: impl IntoIterator<Item = &'a Tensor>, mode: QuantMode) {
        let bns: Vec<&nn::BatchNorm> =
            self.conv_layers().into_iter().filter_map(|l| l.batch_norm()).collect();
        let zero = |bn: &nn::BatchNorm| {
            let _ = bn.running_mean.shallow_clone().zero_();
            let _ = bn.running_var.shallow_clone().zero_();
        };
        let mut sums: Vec<(Tensor, Tensor)> =
            bns.iter().map(|bn| (bn.running_mean.zeros_like(), bn.running_var.zeros_like())).collect();
        let mut n = 0.0;
        tch::no_grad(|| {
            for images in batches {
                // From zero, one update leaves `BN_MOMENTUM * batch statistic` in the running buffers.
                bns.iter().for_each(|bn| zero(bn));
                self.forward(images, true, mode);
                for (bn, (mean, var)) in bns.iter().zip(&mut sums) {
                    *mean += &bn.running_mean / BN_MOMENTUM;
                    *var += &bn.running_var / BN_MOMENTUM;
                }
                n += 1.0;
            }
            if n > 0.0 {
                for (bn, (mean, var)) in bns.iter().zip(&sums) {
                    bn.running_mean.shallow_clone().copy_(&(mean / n));
                    bn.running_var.shallow_clone().copy_(&(var / n));
                }
            }
        });
    }

    /// The classifier.
    pub fn fc(&self) -> &QLinear {
        &self.fc
    }
}
