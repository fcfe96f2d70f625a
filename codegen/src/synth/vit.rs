//! The synthetic vision transformer: a patch embedding, a depthwise position encoding, then pre-norm
//! transformer blocks on a residual stream coded with power-of-two factors per channel (PTF), log2
//! softmax codes (Log-Int-Softmax) and a GELU table, then a LayerNorm, mean pooling and the classifier.
//!
//! Per block: `x + proj(attention(LN(x)))`, then `x + fc2(GELU(fc1(LN(x))))`, with `Q`, `K`, `V`, the
//! projection and the MLP as 1x1 convolutions over the token grid.

use rand::Rng;

use qfd_runtime::format::Clamp;
use qfd_runtime::kernels::ProbCodes;
use qfd_runtime::requant::RequantParams;
use qfd_runtime::weights::max_code;

use super::{Builder, ConvLayer, OutputKind, SynthError};
use crate::fixed_point::{exp_params_for, gelu_tanh, lookup_table, requant_for, CodeGrid};
use crate::graph::{AttentionSpec, LayerNormSpec, ValueId};

/// Real value of one logit code: logits span about +-10.
const LOGIT_SCALE: f64 = 0.08;
/// Largest power-of-two factor of the residual stream (FQ-ViT's `K`).
const PTF_MAX_SHIFT: u8 = 3;

/// The residual stream: codes with one zero point (the middle code) and a power-of-two factor per channel.
struct Stream {
    id: ValueId,
    shifts: Vec<u8>,
}

impl Builder<'_> {
    fn half_code(&self) -> u8 {
        (max_code(self.cfg.act_bits) as f64 / 2.0).round() as u8
    }

    fn full_clamp(&self) -> Clamp {
        Clamp { min: 0, max: max_code(self.cfg.act_bits) as u8 }
    }

    /// `requant_for(scale, offset)`, or a zero scale if it is unrepresentable.
    fn requant_or_zero(scale: f64, offset: f64) -> RequantParams {
        requant_for(scale, offset).unwrap_or(RequantParams { offset: 0, multiplier: 0, shift: 0 })
    }

    /// The residual add onto the stream: `(a - z) 2^shift_a + 2 (b - z)` over two, requantized per channel
    /// onto new power-of-two factors.
    fn residual_ptf(&mut self, name: &str, a: (ValueId, &[u8]), b: ValueId) -> Result<Stream, SynthError> {
        let channels = self.graph.value(b).map(|v| v.shape[2]).unwrap_or(0);
        let z = self.half_code() as f64;
        let shifts: Vec<u8> = (0..channels).map(|_| self.rng.gen_range(0..=PTF_MAX_SHIFT)).collect();
        let requant: Vec<RequantParams> = (0..channels)
            .map(|c| {
                let shift_a = a.1.get(c).copied().unwrap_or(0);
                let scale = 2f64.powi(-(shifts[c] as i32 + 1));
                Self::requant_or_zero(scale, z - (z * 2f64.powi(shift_a as i32) + 2.0 * z) * scale)
            })
            .collect();
        let (clamp, bits) = (self.full_clamp(), self.cfg.act_bits);
        let id = self.graph.channel_add(
            name,
            [a.0, b],
            [1, 2],
            [a.1.to_vec(), Vec::new()],
            &requant,
            (clamp, bits),
        )?;
        self.track(id, bits, OutputKind::Centred);
        Ok(Stream { id, shifts })
    }

    /// LayerNorm of the stream onto centred codes (+-2.5 standard deviations over the code range).
    fn layer_norm(&mut self, name: &str, x: &Stream) -> Result<ValueId, SynthError> {
        let l = max_code(self.cfg.act_bits) as f64;
        let requant = (0..x.shifts.len())
            .map(|_| Self::requant_or_zero(l / 5.0 / 65536.0 * self.rng.gen_range(0.8..1.25), l / 2.0))
            .collect();
        let spec = LayerNormSpec {
            zero: self.half_code(),
            shifts: x.shifts.clone(),
            requant,
            clamp: self.full_clamp(),
            out_bits: self.cfg.act_bits,
        };
        let id = self.graph.layer_norm(name, x.id, spec)?;
        Ok(self.track(id, self.cfg.act_bits, OutputKind::Centred))
    }

    /// Multi-head self-attention of `x` (already normalized): `Q`, `K`, `V`, logits, log2 probabilities,
    /// probabilities times `V`, and the output projection.
    fn attention(&mut self, name: &str, x: ValueId) -> Result<ValueId, SynthError> {
        let (w, bits, centred) = (self.cfg.weight_bits, self.cfg.act_bits, OutputKind::Centred);
        let vit = self.cfg.vit;
        let [h, wd, dim] = self.graph.value(x).map(|v| v.shape).unwrap_or([0; 3]);
        let tokens = h * wd;
        let q = self.conv(&format!("{name}.q"), x, ConvLayer::new(dim, 1, 1, w, centred))?;
        let k = self.conv(&format!("{name}.k"), x, ConvLayer::new(dim, 1, 1, w, centred))?;
        let v = self.conv(&format!("{name}.v"), x, ConvLayer::new(dim, 1, 1, w, centred))?;
        let (l, zero) = (max_code(bits) as f64, self.half_code());
        // Centred codes: mean square 0.3 L^2, of which 0.25 L^2 is the mean.
        let spread = 0.05 * l * l;
        let acc_std = ((dim / vit.heads) as f64).sqrt() * spread;
        let spec = AttentionSpec {
            heads: vit.heads,
            requant: Self::requant_or_zero(l / (5.0 * acc_std), l / 2.0),
            clamp: self.full_clamp(),
            out_bits: 8,
        };
        let logits = self.graph.attention_scores(&format!("{name}.scores"), [q, k], [zero, zero], spec)?;
        let exp = exp_params_for(LOGIT_SCALE, tokens)
            .ok_or_else(|| SynthError::Config(format!("{tokens} tokens are too many for one softmax row")))?;
        let probs = self.graph.softmax(&format!("{name}.softmax"), logits, exp, ProbCodes::Log2)?;
        // The output is the probability-weighted mean of V's codes: scale 2^-14, V's zero point back on.
        let spec = AttentionSpec {
            requant: Self::requant_or_zero(2f64.powi(-14), zero as f64),
            out_bits: bits,
            ..spec
        };
        let mixed = self.graph.attention_values(
            &format!("{name}.values"),
            [probs, v],
            ProbCodes::Log2,
            zero,
            spec,
        )?;
        self.track(mixed, bits, centred);
        self.conv(&format!("{name}.proj"), mixed, ConvLayer::new(dim, 1, 1, w, centred))
    }

    /// The MLP: `fc2(GELU(fc1(x)))`, the GELU a table from `fc1`'s codes (+-4) to codes of `[-0.17, 4]`.
    fn mlp(&mut self, name: &str, x: ValueId) -> Result<ValueId, SynthError> {
        let (w, bits, centred) = (self.cfg.weight_bits, self.cfg.act_bits, OutputKind::Centred);
        let dim = self.graph.value(x).map(|v| v.shape[2]).unwrap_or(0);
        let hidden = self.conv(
            &format!("{name}.fc1"),
            x,
            ConvLayer::new(dim * self.cfg.vit.mlp_ratio, 1, 1, w, centred),
        )?;
        let (l, zero) = (max_code(bits) as f64, self.half_code() as i32);
        let input = CodeGrid { scale: 4.0 / (l / 2.0), zero, bits };
        let out_scale = 4.2 / l;
        let output = CodeGrid { scale: out_scale, zero: (0.17 / out_scale).round() as i32, bits };
        let gelu = self.graph.lookup(
            &format!("{name}.gelu"),
            hidden,
            lookup_table(gelu_tanh, input, output),
            bits,
        )?;
        self.track(gelu, bits, OutputKind::Relu);
        self.conv(&format!("{name}.fc2"), gelu, ConvLayer::new(dim, 1, 1, w, centred))
    }

    /// The transformer; returns the final LayerNorm's codes (the classifier pools them).
    pub(super) fn vit(&mut self, x: ValueId) -> Result<ValueId, SynthError> {
        let vit = self.cfg.vit;
        let [h, w, _] = self.cfg.input;
        vit.check(h, w).map_err(SynthError::Config)?;
        let embed = self.conv("patch_embed", x, ConvLayer::patches(vit.dim, vit.patch as u8))?;
        let depthwise = ConvLayer::depthwise(vit.dim, 1, self.cfg.weight_bits);
        let pos = self.conv("pos_embed", embed, ConvLayer { kind: OutputKind::Centred, ..depthwise })?;
        let mut stream = self.residual_ptf("pos_add", (embed, &[]), pos)?;
        for i in 0..vit.depth {
            let name = format!("blocks.{i}");
            let normed = self.layer_norm(&format!("{name}.norm1"), &stream)?;
            let attended = self.attention(&format!("{name}.attn"), normed)?;
            stream = self.residual_ptf(&format!("{name}.add1"), (stream.id, &stream.shifts), attended)?;
            let normed = self.layer_norm(&format!("{name}.norm2"), &stream)?;
            let mlp = self.mlp(&format!("{name}.mlp"), normed)?;
            stream = self.residual_ptf(&format!("{name}.add2"), (stream.id, &stream.shifts), mlp)?;
        }
        self.layer_norm("norm", &stream)
    }
}
