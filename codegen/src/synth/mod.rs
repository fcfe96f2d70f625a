//! Synthetic models: the reference architectures with random weights and plausible requantization.
//!
//! They let the runtime, the firmware and the benchmarks run real topologies before a trained model exists.
//! "Plausible" means each layer's requantization spreads its outputs over the code range (about half the
//! ReLU outputs at 0, a few saturated), so every kernel does representative work.
//!
//! Topologies follow the papers with PyTorch's padding convention (`k / 2` on every side):
//! - `resnet8`: MLPerf Tiny's image-classification ResNet (16/32/64 channels, 12.50 M MACs at 32x32x3);
//! - `resnet20`: He et al.'s CIFAR ResNet (3 stages of 3 basic blocks), the QFD paper's model;
//! - `mobilenetv1`: Howard et al., `--width 0.25` at 96x96x3 is MLPerf Tiny's visual wake words model;
//! - `mobilenetv2`: Sandler et al., inverted residuals with linear bottlenecks.
//!
//! First conv reads 8-bit pixels with 8-bit weights, the classifier has 8-bit weights (as in
//! `docs/architecture.md`: first and last layers stay at 8 bits); inner
//! layers use the requested bits. Downsampling shortcuts are 1x1 convolutions.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use qfd_runtime::format::{Clamp, FcOutput, Padding, Window};
use qfd_runtime::requant::RequantParams;
use qfd_runtime::weights::max_code;

pub use crate::arch::VitShape;
use crate::arch::{
    mobilenet_v2_last_channels, scaled_channels, MOBILENET_STEM_CHANNELS, MOBILENET_V1_BLOCKS,
    MOBILENET_V2_STAGES,
};
use crate::fixed_point::{quantize_multiplier, requant_for};
use crate::graph::{ConvSpec, FcSpec, Graph, GraphError, GraphMeta, ValueId};

mod fixture;
mod vit;

pub use fixture::all_ops;

/// The architectures the SDK knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// MLPerf Tiny ResNet-8.
    ResNet8,
    /// CIFAR ResNet-20.
    ResNet20,
    /// MobileNetV1 with a width multiplier.
    MobileNetV1,
    /// MobileNetV2 with a width multiplier.
    MobileNetV2,
    /// A vision transformer of the integer transformer ops ([`VitShape`]).
    Vit,
}

impl Arch {
    /// Every architecture, for help texts.
    pub const ALL: [Arch; 5] =
        [Arch::ResNet8, Arch::ResNet20, Arch::MobileNetV1, Arch::MobileNetV2, Arch::Vit];

    /// The name used on the command line and in model metadata.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet8 => "resnet8",
            Arch::ResNet20 => "resnet20",
            Arch::MobileNetV1 => "mobilenetv1",
            Arch::MobileNetV2 => "mobilenetv2",
            Arch::Vit => "vit",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Arch::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<_> = Arch::ALL.iter().map(|a| a.name()).collect();
            format!("unknown architecture '{s}' (expected one of: {})", names.join(", "))
        })
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Architecture.
    pub arch: Arch,
    /// Input `[H, W, C]`.
    pub input: [usize; 3],
    /// Inner weight bits (1-8).
    pub weight_bits: u8,
    /// Inner activation bits (1-8).
    pub act_bits: u8,
    /// Width multiplier (MobileNets; ignored by ResNets).
    pub width: f32,
    /// The transformer's shape (`vit` only).
    pub vit: VitShape,
    /// Number of classes.
    pub classes: usize,
    /// Random seed.
    pub seed: u64,
}

impl SynthConfig {
    /// Defaults for an architecture: W8A8, width 1, 10 classes, seed 0.
    pub fn new(arch: Arch, input: [usize; 3]) -> Self {
        SynthConfig {
            arch,
            input,
            weight_bits: 8,
            act_bits: 8,
            width: 1.0,
            vit: VitShape::default(),
            classes: 10,
            seed: 0,
        }
    }
}

/// Why a synthetic model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The topology does not fit the input (e.g. too small for its strides).
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Builds the synthetic model described by `config`.
pub fn synth(config: &SynthConfig) -> Result<Graph, SynthError> {
    let bad = |m: String| Err(SynthError::Config(m));
    if !(1..=8).contains(&config.weight_bits) || !(1..=8).contains(&config.act_bits) {
        return bad(format!("bits must be 1-8, got W{}A{}", config.weight_bits, config.act_bits));
    }
    if config.input.contains(&0) || config.input[2] > 4 {
        return bad(format!("input {:?} must be non-empty with 1-4 channels", config.input));
    }
    if !(config.width > 0.0 && config.width <= 4.0) {
        return bad(format!("width {} must be in (0, 4]", config.width));
    }
    if config.classes == 0 || config.classes > u16::MAX as usize {
        return bad(format!("classes {} must be 1-65535", config.classes));
    }
    let mut b = Builder::new(config);
    let x = b.graph.input_id();
    let features = match config.arch {
        Arch::ResNet8 => b.resnet(x, &[16, 32, 64], 1)?,
        Arch::ResNet20 => b.resnet(x, &[16, 32, 64], 3)?,
        Arch::MobileNetV1 => b.mobilenet_v1(x)?,
        Arch::MobileNetV2 => b.mobilenet_v2(x)?,
        Arch::Vit => b.vit(x)?,
    };
    b.classifier(features)?;
    Ok(b.graph)
}

fn window(k: u8, s: u8) -> Window {
    let p = k / 2;
    Window { kernel: [k, k], stride: [s, s], padding: Padding { top: p, left: p, bottom: p, right: p } }
}

/// How a layer's outputs are distributed over the code range.
#[derive(Clone, Copy, PartialEq)]
enum OutputKind {
    /// After a ReLU: code 0 is the real 0, about half the outputs are 0.
    Relu,
    /// No ReLU (before a residual add, or a linear bottleneck): codes centred on the middle of the range.
    Centred,
}

/// One convolution of a synthetic topology.
struct ConvLayer {
    out_channels: usize,
    kernel: u8,
    stride: u8,
    /// One group per input channel (then `out_channels` must equal the input channels).
    depthwise: bool,
    /// `kernel / 2` pixels of padding on every side (else none).
    padded: bool,
    weight_bits: u8,
    kind: OutputKind,
}

impl ConvLayer {
    fn new(out_channels: usize, kernel: u8, stride: u8, weight_bits: u8, kind: OutputKind) -> Self {
        ConvLayer { out_channels, kernel, stride, depthwise: false, padded: true, weight_bits, kind }
    }

    /// Non-overlapping `patch x patch` patches, each embedded in `out_channels` (8-bit weights, no ReLU).
    fn patches(out_channels: usize, patch: u8) -> Self {
        ConvLayer { padded: false, ..ConvLayer::new(out_channels, patch, patch, 8, OutputKind::Centred) }
    }

    /// A 3x3 depthwise convolution followed by a ReLU.
    fn depthwise(channels: usize, stride: u8, weight_bits: u8) -> Self {
        ConvLayer { depthwise: true, ..ConvLayer::new(channels, 3, stride, weight_bits, OutputKind::Relu) }
    }
}

struct Builder<'c> {
    cfg: &'c SynthConfig,
    graph: Graph,
    rng: SmallRng,
    /// Mean square of each value's codes, to size the next layer's requantization.
    mean_square: Vec<f64>,
}

impl<'c> Builder<'c> {
    fn new(cfg: &'c SynthConfig) -> Self {
        let meta = GraphMeta {
            arch: cfg.arch.name().to_string(),
            dataset: "synthetic".to_string(),
            weight_bits: cfg.weight_bits,
            act_bits: cfg.act_bits,
            mean: vec![0.5; cfg.input[2]],
            std: vec![0.25; cfg.input[2]],
            logit_scale: 1.0,
            class_names: (0..cfg.classes).map(|i| format!("class{i}")).collect(),
            fake_quant_accuracy: None,
            integer_accuracy: None,
        };
        let graph = Graph::new(cfg.input, 8, meta);
        // Uniform 8-bit pixels: E[x^2] = 255^2 / 3.
        Builder { cfg, graph, rng: SmallRng::seed_from_u64(cfg.seed), mean_square: vec![255.0 * 255.0 / 3.0] }
    }

    fn track(&mut self, id: ValueId, bits: u8, kind: OutputKind) -> ValueId {
        let l = max_code(bits) as f64;
        // Half-normal codes after ReLU, centred ones otherwise (spread about a quarter of the range).
        let ms = match kind {
            OutputKind::Relu => l * l * 0.08,
            OutputKind::Centred => l * l * 0.3,
        };
        self.mean_square.resize(id.0 + 1, 0.0);
        self.mean_square[id.0] = ms;
        id
    }

    fn random_codes(&mut self, n: usize, bits: u8) -> Vec<u8> {
        (0..n).map(|_| self.rng.gen_range(0..=max_code(bits)) as u8).collect()
    }

    /// Per-channel requantization mapping the accumulator's spread onto the output range.
    fn requant(
        &mut self,
        channels: usize,
        acc_std: f64,
        out_bits: u8,
        kind: OutputKind,
    ) -> Vec<RequantParams> {
        let l = max_code(out_bits) as f64;
        (0..channels)
            .map(|_| {
                let jitter = self.rng.gen_range(0.8..1.25);
                let scale = l / (2.5 * acc_std.max(1.0)) * jitter;
                let offset = match kind {
                    // The + 0.4 keeps 1-bit outputs from being mostly 0; it is lost in the noise at more bits.
                    OutputKind::Relu => self.rng.gen_range(-0.1..0.1) * l + 0.4,
                    OutputKind::Centred => l / 2.0,
                };
                requant_for(scale, offset).unwrap_or(RequantParams { offset: 0, multiplier: 0, shift: 0 })
            })
            .collect()
    }

    fn conv(&mut self, name: &str, x: ValueId, layer: ConvLayer) -> Result<ValueId, SynthError> {
        let ConvLayer { out_channels, kernel, stride, depthwise, padded, weight_bits: wbits, kind } = layer;
        let cin = self.graph.value(x).map(|v| v.shape[2]).unwrap_or(0);
        let groups = if depthwise { cin } else { 1 };
        let fan_in = kernel as usize * kernel as usize * cin / groups.max(1);
        let codes = self.random_codes(out_channels * fan_in, wbits);
        let lw = max_code(wbits) as f64;
        // Odd-grid weights uniform on {-(L-1), ..., L-1}: E[w^2] = L(L+1)/3 - ... ~ (L-1)^2 / 3 + 1/3.
        let w_ms = (lw * lw + 2.0 * lw) / 3.0;
        let acc_std = (fan_in as f64 * self.mean_square[x.0] * w_ms).sqrt();
        let abits = self.cfg.act_bits;
        let requant = self.requant(out_channels, acc_std, abits, kind);
        let clamp = Clamp { min: 0, max: max_code(abits) as u8 };
        let spec = ConvSpec {
            out_channels,
            window: if padded {
                window(kernel, stride)
            } else {
                Window { padding: Padding::default(), ..window(kernel, stride) }
            },
            groups,
            weight_bits: wbits,
            weight_codes: codes,
            requant,
            clamp,
            out_bits: abits,
        };
        let id = self.graph.conv2d(name, x, spec)?;
        Ok(self.track(id, abits, kind))
    }

    /// `relu?(value(a) + value(b))` where each input is Relu or Centred codes with unit scale.
    fn residual(
        &mut self,
        name: &str,
        a: (ValueId, OutputKind),
        b: (ValueId, OutputKind),
        out: OutputKind,
    ) -> Result<ValueId, SynthError> {
        let bits = self.cfg.act_bits;
        let l = max_code(bits) as f64;
        let zero = |k: OutputKind| if k == OutputKind::Centred { l / 2.0 } else { 0.0 };
        // The sum spans about twice one input's range; scale it back by 1/2 (1/1.5 after a ReLU).
        let (scale, out_zero) = match out {
            OutputKind::Relu => (1.0 / 1.5, 0.0),
            OutputKind::Centred => (0.5, l / 2.0),
        };
        const FRACTION_BITS: i32 = 12;
        let w = (scale * (1 << FRACTION_BITS) as f64).round() as i32;
        // The constant term in whole units of the common step, then in the requantization's product units.
        let bias =
            (out_zero * (1 << FRACTION_BITS) as f64 - (zero(a.1) + zero(b.1)) * w as f64).round() as i64;
        let (multiplier, shift) = quantize_multiplier(2f64.powi(-FRACTION_BITS)).unwrap_or((0, 0));
        let requant = RequantParams { offset: bias * multiplier as i64, multiplier, shift };
        let clamp = Clamp { min: 0, max: l as u8 };
        let id = self.graph.add(name, [a.0, b.0], [w, w], requant, clamp, bits)?;
        Ok(self.track(id, bits, out))
    }

    /// ResNet: a 3x3 stem, then `blocks` basic blocks per stage; stages after the first halve the resolution.
    fn resnet(&mut self, x: ValueId, stages: &[usize], blocks: usize) -> Result<ValueId, SynthError> {
        let (w, relu, centred) = (self.cfg.weight_bits, OutputKind::Relu, OutputKind::Centred);
        let mut x = self.conv("conv1", x, ConvLayer::new(stages[0], 3, 1, 8, relu))?;
        for (s, &channels) in stages.iter().enumerate() {
            for blk in 0..blocks {
                let name = format!("layer{}.{blk}", s + 1);
                let stride = if s > 0 && blk == 0 { 2 } else { 1 };
                let h =
                    self.conv(&format!("{name}.conv1"), x, ConvLayer::new(channels, 3, stride, w, relu))?;
                let h = self.conv(&format!("{name}.conv2"), h, ConvLayer::new(channels, 3, 1, w, centred))?;
                let in_channels = self.graph.value(x).map(|v| v.shape[2]).unwrap_or(0);
                let shortcut = if stride != 1 || in_channels != channels {
                    let sc = self.conv(
                        &format!("{name}.shortcut"),
                        x,
                        ConvLayer::new(channels, 1, stride, w, centred),
                    )?;
                    (sc, centred)
                } else {
                    (x, relu)
                };
                x = self.residual(&format!("{name}.add"), (h, centred), shortcut, relu)?;
            }
        }
        Ok(x)
    }

    fn mobilenet_v1(&mut self, x: ValueId) -> Result<ValueId, SynthError> {
        let (w, relu, width) = (self.cfg.weight_bits, OutputKind::Relu, self.cfg.width);
        let mut x = self.conv(
            "conv1",
            x,
            ConvLayer::new(scaled_channels(MOBILENET_STEM_CHANNELS, width), 3, 2, 8, relu),
        )?;
        for (i, &(c, s)) in MOBILENET_V1_BLOCKS.iter().enumerate() {
            let s = s as u8;
            let cin = self.graph.value(x).map(|v| v.shape[2]).unwrap_or(0);
            x = self.conv(&format!("blocks.{i}.dw"), x, ConvLayer::depthwise(cin, s, w))?;
            x = self.conv(
                &format!("blocks.{i}.pw"),
                x,
                ConvLayer::new(scaled_channels(c, width), 1, 1, w, relu),
            )?;
        }
        Ok(x)
    }

    fn mobilenet_v2(&mut self, x: ValueId) -> Result<ValueId, SynthError> {
        let (w, relu, centred, width) =
            (self.cfg.weight_bits, OutputKind::Relu, OutputKind::Centred, self.cfg.width);
        let mut x = self.conv(
            "conv1",
            x,
            ConvLayer::new(scaled_channels(MOBILENET_STEM_CHANNELS, width), 3, 2, 8, relu),
        )?;
        let mut block = 0;
        for &(t, c, n, s) in &MOBILENET_V2_STAGES {
            let s = s as u8;
            for i in 0..n {
                let name = format!("blocks.{block}");
                let stride = if i == 0 { s } else { 1 };
                let cin = self.graph.value(x).map(|v| v.shape[2]).unwrap_or(0);
                let cout = scaled_channels(c, width);
                let mut h = x;
                if t != 1 {
                    h = self.conv(&format!("{name}.expand"), h, ConvLayer::new(cin * t, 1, 1, w, relu))?;
                }
                h = self.conv(&format!("{name}.dw"), h, ConvLayer::depthwise(cin * t, stride, w))?;
                h = self.conv(&format!("{name}.project"), h, ConvLayer::new(cout, 1, 1, w, centred))?;
                x = if stride == 1 && cin == cout {
                    // The block input is centred too (the previous block's linear output), except after the stem.
                    let input_kind = if block == 0 { relu } else { centred };
                    self.residual(&format!("{name}.add"), (h, centred), (x, input_kind), centred)?
                } else {
                    h
                };
                block += 1;
            }
        }
        let last = mobilenet_v2_last_channels(width);
        self.conv("conv_last", x, ConvLayer::new(last, 1, 1, w, relu))
    }

    /// Global sum pool, then an 8-bit fully connected layer to logits.
    fn classifier(&mut self, x: ValueId) -> Result<ValueId, SynthError> {
        let pooled = self.graph.global_sum_pool("pool", x)?;
        let n = self.graph.value(pooled).map(|v| v.shape[2]).unwrap_or(0);
        let classes = self.cfg.classes;
        let weight_codes = self.random_codes(classes * n, 8);
        let requant: Vec<RequantParams> = (0..classes)
            .map(|_| RequantParams { offset: self.rng.gen_range(-1000..1000), multiplier: 0, shift: 0 })
            .collect();
        let spec = FcSpec {
            outputs: classes,
            weight_bits: 8,
            weight_codes,
            requant,
            output: FcOutput::Logits,
            out_bits: 8,
        };
        Ok(self.graph.fully_connected("fc", pooled, spec)?)
    }
}
