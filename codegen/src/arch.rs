//! The published architecture tables, in one place: the synthetic models here and the trainer's graphs in
//! `qfd-host` both build from them, so the trained network and the integer graph cannot drift apart.

/// MobileNetV1's depthwise-separable blocks (Howard et al., Table 1): (pointwise channels, depthwise stride).
pub const MOBILENET_V1_BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// MobileNetV2's stages (Sandler et al., Table 2): (expansion t, channels c, repeats n, first stride s).
pub const MOBILENET_V2_STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Output channels of both MobileNets' stem before scaling.
pub const MOBILENET_STEM_CHANNELS: usize = 32;

/// Channels scaled by the width multiplier, rounded to a multiple of 8 and never below 90% of the scaled
/// value (the MobileNet papers' `make_divisible`). Computed in `f32` so every caller agrees on every width.
pub fn scaled_channels(c: usize, width: f32) -> usize {
    let v = c as f32 * width;
    let r = (((v + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (r as f32) < 0.9 * v {
        r + 8
    } else {
        r
    }
}

/// Channels of MobileNetV2's last 1x1 conv: 1280, scaled only for widths above 1.
pub fn mobilenet_v2_last_channels(width: f32) -> usize {
    if width > 1.0 {
        scaled_channels(1280, width)
    } else {
        1280
    }
}

/// A vision transformer's shape: non-overlapping `patch x patch` patches embedded in `dim` channels, then
/// `depth` blocks of `heads`-head self-attention and an MLP `mlp_ratio` times wider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitShape {
    /// Patch side in pixels.
    pub patch: usize,
    /// Embedding width (channels of every token).
    pub dim: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads (divides `dim`).
    pub heads: usize,
    /// Hidden width of the MLP over `dim`.
    pub mlp_ratio: usize,
}

impl VitShape {
    /// Why this shape cannot take a `height x width` input, if it cannot: the patch must divide both sides
    /// (1-16 pixels), the heads the width (at most 1024), and depth and MLP ratio be at least 1.
    pub fn check(&self, height: usize, width: usize) -> Result<(), String> {
        let p = self.patch;
        if p == 0 || p > 16 || !height.is_multiple_of(p) || !width.is_multiple_of(p) {
            return Err(format!("patch {p} must be 1-16 and divide the input {height}x{width}"));
        }
        if self.heads == 0
            || !self.dim.is_multiple_of(self.heads)
            || self.dim > 1024
            || self.depth == 0
            || self.mlp_ratio == 0
        {
            return Err(format!(
                "width {} must be a multiple of the heads {} (at most 1024), with depth and MLP ratio from 1",
                self.dim, self.heads
            ));
        }
        Ok(())
    }
}

impl Default for VitShape {
    /// Sized for a microcontroller: patch 4 (49 tokens at 28x28), width 64, depth 4, 4 heads, MLP 4x (the
    /// smallest shape we found to reach 90% on Fashion-MNIST; MLP 2x stops at about 89.4%).
    fn default() -> Self {
        VitShape { patch: 4, dim: 64, depth: 4, heads: 4, mlp_ratio: 4 }
    }
}
