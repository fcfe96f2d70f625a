//! The vision transformer body (FQ-ViT's integer-only form, `docs/transformers.md`): after the patch
//! embedding (the network's stem), a depthwise 3x3 position encoding added to the embedding, pre-norm
//! transformer blocks on a residual stream quantized with power-of-two factors ([`ptf`]), and a final
//! LayerNorm; the network's head pools its tokens and classifies.
//!
//! Tokens are the pixels of an `[N, C, H, W]` tensor, so `Q`, `K`, `V`, the projection and the MLP are 1x1
//! convolutions with a bias, exactly the integer graph's ops. Per block:
//! `x = x + proj(attention(LN1(x)))`, `x = x + fc2(GELU(fc1(LN2(x))))`. Every stored tensor has its
//! quantizer; Q, K and V have whole zero points (post-training quantization sets them so), as the integer
//! attention products subtract them; the softmax is the integer one ([`softmax`]).

pub mod ptf;
pub mod softmax;

use qfd_runtime::kernels::ProbCodes;
use tch::{nn, Kind, Tensor};

use self::ptf::PtfQuant;
use super::{ConvBnQ, IntegerOp, IntegerOps, NetSpec};
use crate::train::quant::{ActQuant, ConvShape, QConv2d, QTensor, QuantMode};

pub use qfd_codegen::synth::VitShape;

/// LayerNorm's `eps` in full precision; the quantized network, like the integer one, has none.
const LN_EPS: f64 = 1e-6;

/// The GELU the network and its integer table use (PyTorch's `tanh` form).
pub fn gelu(x: f64) -> f64 {
    qfd_codegen::fixed_point::gelu_tanh(x)
}

/// A LayerNorm over the channels (dimension 1) and the quantizer of its output.
#[derive(Debug)]
pub struct LayerNormQ {
    /// `[C]`.
    pub gamma: Tensor,
    /// `[C]`.
    pub beta: Tensor,
    /// The output's quantizer.
    pub q: ActQuant,
}

impl LayerNormQ {
    fn new(path: &nn::Path, channels: i64, bits: u8) -> Self {
        LayerNormQ {
            gamma: path.var("weight", &[channels], nn::Init::Const(1.0)),
            beta: path.var("bias", &[channels], nn::Init::Const(0.0)),
            q: ActQuant::new(&(path / "q"), bits),
        }
    }

    /// `q(gamma * (x - mean) / std + beta)` over each token's channels.
    pub fn forward(&self, x: &Tensor, mode: QuantMode) -> QTensor {
        let centred = x - x.mean_dim(&[1i64][..], true, Kind::Float);
        let var = centred.square().mean_dim(&[1i64][..], true, Kind::Float);
        let var = if mode.is_float() { var + LN_EPS } else { var.clamp_min(1e-20) };
        let y = centred * var.rsqrt() * self.gamma.reshape([1, -1, 1, 1]) + self.beta.reshape([1, -1, 1, 1]);
        self.q.forward(y, mode)
    }
}

/// One pre-norm transformer block.
#[derive(Debug)]
pub struct Block {
    /// Module path, `blocks.<i>`.
    pub name: String,
    /// LayerNorm before attention.
    pub norm1: LayerNormQ,
    /// Queries.
    pub q: ConvBnQ,
    /// Keys.
    pub k: ConvBnQ,
    /// Values.
    pub v: ConvBnQ,
    /// Quantizer of the attention logits `Q K^T / sqrt(d)`.
    pub scores: ActQuant,
    /// Quantizer of the probabilities times `V`.
    pub values: ActQuant,
    /// Output projection.
    pub proj: ConvBnQ,
    /// The stream after the attention residual.
    pub add1: PtfQuant,
    /// LayerNorm before the MLP.
    pub norm2: LayerNormQ,
    /// MLP expansion.
    pub fc1: ConvBnQ,
    /// Quantizer of `GELU(fc1)`.
    pub gelu: ActQuant,
    /// MLP projection.
    pub fc2: ConvBnQ,
    /// The stream after the MLP residual.
    pub add2: PtfQuant,
}

/// A 1x1 convolution (a token-wise linear layer).
fn pointwise(cin: i64, cout: i64) -> ConvShape {
    ConvShape { cin, cout, kernel: 1, stride: 1, padding: 0, groups: 1 }
}

impl Block {
    fn new(path: &nn::Path, name: String, spec: &NetSpec) -> Self {
        let dim = spec.vit.dim as i64;
        let hidden = dim * spec.vit.mlp_ratio as i64;
        let (w, a) = (spec.weight_bits, spec.act_bits);
        let linear = |p: &str, cin, cout| ConvBnQ::with_bias(&(path / p), pointwise(cin, cout), w, a);
        Block {
            name,
            norm1: LayerNormQ::new(&(path / "norm1"), dim, a),
            q: linear("q", dim, dim),
            k: linear("k", dim, dim),
            v: linear("v", dim, dim),
            scores: ActQuant::new(&(path / "scores"), 8),
            values: ActQuant::new(&(path / "values"), a),
            proj: linear("proj", dim, dim),
            add1: PtfQuant::new(&(path / "add1"), dim, a),
            norm2: LayerNormQ::new(&(path / "norm2"), dim, a),
            fc1: linear("fc1", dim, hidden),
            gelu: ActQuant::new(&(path / "gelu"), a),
            fc2: linear("fc2", hidden, dim),
            add2: PtfQuant::new(&(path / "add2"), dim, a),
        }
    }

    fn forward(&self, x: &QTensor, vit: &Vit, train: bool, mode: QuantMode) -> QTensor {
        let heads = vit.shape.heads as i64;
        let normed = self.norm1.forward(&x.value, mode);
        let [q, k, v] = [&self.q, &self.k, &self.v].map(|l| l.forward(&normed, train, mode));
        let logits = self.scores.forward(attention_logits(&q.value, &k.value, heads), mode);
        let probs = vit.softmax(&self.scores, &logits, mode);
        let mixed = self.values.forward(mix_values(&probs, &v.value), mode);
        let attended = self.proj.forward(&mixed, train, mode);
        let x = self.add1.forward(&x.value + &attended.value, mode);
        let hidden = self.fc1.forward(&self.norm2.forward(&x.value, mode), train, mode);
        let activated = self.gelu.forward(hidden.value.gelu("tanh"), mode);
        let out = self.fc2.forward(&activated, train, mode);
        self.add2.forward(&x.value + &out.value, mode)
    }
}

/// `[N, C, H, W]` as `[N, heads, C / heads, H * W]`: each head's channels of every token.
fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let [n, c, h, w] = x.size4().unwrap_or((0, 0, 0, 0)).into();
    x.reshape([n, heads, c / heads, h * w])
}

/// `Q K^T / sqrt(d)` of each head: `[N, heads, T, T]`, row `i` the query token, column `j` the key.
pub fn attention_logits(q: &Tensor, k: &Tensor, heads: i64) -> Tensor {
    let (q, k) = (split_heads(q, heads), split_heads(k, heads));
    let d = q.size()[2] as f64;
    q.transpose(2, 3).matmul(&k) / d.sqrt()
}

/// Probabilities times `V`, back in `V`'s `[N, C, H, W]` shape.
pub fn mix_values(probs: &Tensor, v: &Tensor) -> Tensor {
    let heads = probs.size()[1];
    let heads_v = split_heads(v, heads);
    // [N, heads, d, T] = V [N, heads, d, T] x P^T [N, heads, T, T].
    heads_v.matmul(&probs.transpose(2, 3)).reshape(v.size())
}

/// The transformer after the patch embedding.
#[derive(Debug)]
pub struct Vit {
    /// Its shape.
    pub shape: VitShape,
    /// The depthwise 3x3 position encoding, reading the embedding.
    pub pos: ConvBnQ,
    /// The stream after adding the position encoding to the embedding.
    pub pos_add: PtfQuant,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// The final LayerNorm, which the head pools.
    pub norm: LayerNormQ,
    /// The attention probabilities' codes in the quantized network.
    pub probs: ProbCodes,
}

impl Vit {
    pub(super) fn new(path: &nn::Path, spec: &NetSpec) -> Self {
        let dim = spec.vit.dim as i64;
        let (w, a) = (spec.weight_bits, spec.act_bits);
        let depthwise = ConvShape { cin: dim, cout: dim, kernel: 3, stride: 1, padding: 1, groups: dim };
        let pos_path = path / "pos_embed";
        Vit {
            shape: spec.vit,
            pos: ConvBnQ::from_conv(
                &pos_path,
                QConv2d::per_channel(&(&pos_path / "conv"), depthwise, w),
                a,
                false,
            ),
            pos_add: PtfQuant::new(&(path / "pos_add"), dim, a),
            blocks: (0..spec.vit.depth)
                .map(|i| Block::new(&(path / "blocks" / i), format!("blocks.{i}"), spec))
                .collect(),
            norm: LayerNormQ::new(&(path / "norm"), dim, a),
            probs: if spec.log2_softmax { ProbCodes::Log2 } else { ProbCodes::Linear { bits: a } },
        }
    }

    /// The attention probabilities of quantized logits: in the float modes the float softmax; otherwise the
    /// integer softmax's values with the float softmax's gradient.
    fn softmax(&self, quant: &ActQuant, logits: &QTensor, mode: QuantMode) -> Tensor {
        let float = logits.value.softmax(-1, Kind::Float);
        if mode.is_float() {
            return float;
        }
        let levels = ((1u32 << quant.bits) - 1) as f64;
        let step = (quant.bounds.upper.double_value(&[0]) - quant.bounds.lower.double_value(&[0])) / levels;
        let tokens = logits.value.size().last().copied().unwrap_or(0) as usize;
        match softmax::exp_params(step, tokens) {
            Ok(exp) => {
                let codes = tch::no_grad(|| (&logits.norm * levels).round());
                let exact = softmax::prob_values(&softmax::prob_codes(&codes, exp, self.probs), self.probs);
                &float + (exact - &float).detach()
            }
            // Export refuses such a grid, naming the layer; training goes on in float.
            Err(_) => float,
        }
    }

    pub(super) fn channels(&self) -> i64 {
        self.shape.dim as i64
    }

    /// Blocks: the position encoding, the transformer blocks, the final LayerNorm.
    pub(super) fn len(&self) -> usize {
        self.blocks.len() + 2
    }

    /// Block `i` on its input.
    pub(super) fn block(&self, i: usize, x: &QTensor, train: bool, mode: QuantMode) -> QTensor {
        if i == 0 {
            let pos = self.pos.forward(x, train, mode);
            self.pos_add.forward(&x.value + &pos.value, mode)
        } else if i <= self.blocks.len() {
            self.blocks[i - 1].forward(x, self, train, mode)
        } else {
            self.norm.forward(&x.value, mode)
        }
    }

    /// The quantizer of block `i`'s output, where it is a plain one (the stream's is a [`PtfQuant`]).
    pub(super) fn block_output(&self, i: usize) -> Option<&ActQuant> {
        (i == self.blocks.len() + 1).then_some(&self.norm.q)
    }

    /// Every [`PtfQuant`] of the stream, in order.
    pub fn stream_quantizers(&self) -> Vec<&PtfQuant> {
        let mut v = vec![&self.pos_add];
        for b in &self.blocks {
            v.extend([&b.add1, &b.add2]);
        }
        v
    }

    pub(super) fn act_quantizers<'a>(&'a self, v: &mut Vec<(&'static str, &'a ActQuant)>) {
        v.push(("pos_embed", &self.pos.q));
        for b in &self.blocks {
            v.extend([
                ("norm1", &b.norm1.q),
                ("q", &b.q.q),
                ("k", &b.k.q),
                ("v", &b.v.q),
                ("scores", &b.scores),
                ("values", &b.values),
                ("proj", &b.proj.q),
                ("norm2", &b.norm2.q),
                ("fc1", &b.fc1.q),
                ("gelu", &b.gelu),
                ("fc2", &b.fc2.q),
            ]);
        }
        v.push(("norm", &self.norm.q));
    }

    pub(super) fn conv_layers<'a>(&'a self, v: &mut Vec<&'a ConvBnQ>) {
        v.push(&self.pos);
        for b in &self.blocks {
            v.extend([&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2]);
        }
    }

    /// Integer ops of the transformer, as [`Block::forward`] computes them, reading the embedding `x`.
    pub(super) fn integer_ops<'a>(&'a self, ops: &mut IntegerOps<'a>, x: usize) -> usize {
        let heads = self.shape.heads;
        let pos = ops.conv("pos_embed".into(), x, &self.pos);
        let mut stream = ops.stream_add("pos_add".into(), [x, pos], &self.pos_add);
        for b in &self.blocks {
            let name = &b.name;
            let normed = ops.push(IntegerOp::LayerNorm {
                name: format!("{name}.norm1"),
                input: stream,
                norm: &b.norm1,
            });
            let [q, k, v] = [("q", &b.q), ("k", &b.k), ("v", &b.v)]
                .map(|(n, l)| ops.conv(format!("{name}.attn.{n}"), normed, l));
            let logits = ops.push(IntegerOp::AttentionScores {
                name: format!("{name}.attn.scores"),
                inputs: [q, k],
                heads,
                quant: &b.scores,
            });
            let probs = ops.push(IntegerOp::Softmax {
                name: format!("{name}.attn.softmax"),
                input: logits,
                probs: self.probs,
            });
            let mixed = ops.push(IntegerOp::AttentionValues {
                name: format!("{name}.attn.values"),
                inputs: [probs, v],
                heads,
                probs: self.probs,
                quant: &b.values,
            });
            let attended = ops.conv(format!("{name}.attn.proj"), mixed, &b.proj);
            stream = ops.stream_add(format!("{name}.add1"), [stream, attended], &b.add1);
            let normed = ops.push(IntegerOp::LayerNorm {
                name: format!("{name}.norm2"),
                input: stream,
                norm: &b.norm2,
            });
            let hidden = ops.conv(format!("{name}.mlp.fc1"), normed, &b.fc1);
            let activated = ops.push(IntegerOp::Lookup {
                name: format!("{name}.mlp.gelu"),
                input: hidden,
                function: gelu,
                quant: &b.gelu,
            });
            let out = ops.conv(format!("{name}.mlp.fc2"), activated, &b.fc2);
            stream = ops.stream_add(format!("{name}.add2"), [stream, out], &b.add2);
        }
        ops.push(IntegerOp::LayerNorm { name: "norm".into(), input: stream, norm: &self.norm })
    }
}
