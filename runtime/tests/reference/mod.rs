//! Naive references for the integer kernels, written from the arithmetic contract (`docs/arithmetic.md`).
//!
//! Nothing here calls a kernel or a runtime helper: only the public data types ([`RequantParams`], [`Window`],
//! [`Clamp`], [`FcOutput`]) are used. Weights are unpacked from the documented storage layout, every sum is
//! formed in `i128` straight from the definition (`sum(x * w)` with `w = 2k - (2^bits - 1)`, padding read as
//! code 0), and the rounding is spelled out as "divide the magnitude, round half up, put the sign back".
//!
//! Shared by `tests/kernels.rs` and `tests/requant.rs` through `mod reference;`.
#![allow(dead_code)]

pub mod transformer;

use qfd_runtime::format::{Clamp, FcOutput, Window};
use qfd_runtime::requant::RequantParams;

/// Smallest shift of the contract (divisor `2^62`).
pub const REF_MIN_SHIFT: i32 = -31;
/// Largest shift of the contract (divisor `2^1`).
pub const REF_MAX_SHIFT: i32 = 30;
/// The contract's bound on the offset: `|offset| < 2^62`.
pub const REF_OFFSET_LIMIT: i128 = 1 << 62;

/// `2^bits - 1`.
pub fn max_code(bits: u8) -> i32 {
    assert!((1..=8).contains(&bits), "bits {bits} outside 1-8");
    (1i32 << bits) - 1
}

/// The odd integer a weight code stands for: `2k - (2^bits - 1)`.
pub fn weight_value(code: u8, bits: u8) -> i32 {
    assert!(code as i32 <= max_code(bits), "code {code} does not fit {bits} bits");
    2 * code as i32 - max_code(bits)
}

/// Codes per storage byte: `8 / bits` for 1, 2 and 4 bits, one per byte otherwise.
pub fn codes_per_byte(bits: u8) -> usize {
    if bits == 1 || bits == 2 || bits == 4 {
        8 / bits as usize
    } else {
        1
    }
}

/// Packs codes LSB-first, as the format documents (an independent writer, to cross-check `pack_codes`).
pub fn pack(codes: &[u8], bits: u8) -> Vec<u8> {
    let per = codes_per_byte(bits);
    let mut out = vec![0u8; codes.len().div_ceil(per)];
    for (i, &k) in codes.iter().enumerate() {
        assert!(k as i32 <= max_code(bits));
        let bit = (i % per) * bits as usize;
        out[i / per] |= ((k as u32) << bit) as u8;
    }
    out
}

/// Reads `count` codes back from the storage layout.
pub fn unpack(data: &[u8], bits: u8, count: usize) -> Vec<u8> {
    let per = codes_per_byte(bits);
    assert!(data.len() * per >= count, "{} bytes cannot hold {count} codes of {bits} bits", data.len());
    (0..count)
        .map(|i| {
            let byte = data[i / per] as u32;
            if per == 1 {
                byte as u8
            } else {
                let bit = (i % per) * bits as usize;
                ((byte >> bit) % (1u32 << bits)) as u8
            }
        })
        .collect()
}

/// Unpacks and maps codes to their odd integer weights.
pub fn unpack_values(data: &[u8], bits: u8, count: usize) -> Vec<i32> {
    unpack(data, bits, count).into_iter().map(|k| weight_value(k, bits)).collect()
}

/// Saturates to `i32`.
pub fn sat_i32(x: i128) -> i32 {
    if x > i32::MAX as i128 {
        i32::MAX
    } else if x < i32::MIN as i128 {
        i32::MIN
    } else {
        x as i32
    }
}

/// `num / 2^exp` rounded to the nearest integer, exact halves away from zero.
pub fn div_pow2_round_half_away(num: i128, exp: u32) -> i128 {
    assert!(exp < 100);
    let den = 1i128 << exp;
    let mag = num.abs();
    let (q, r) = (mag / den, mag % den);
    // Round the magnitude: up when the remainder is at least half the divisor (so exact halves go up).
    let rounded = if 2 * r >= den { q + 1 } else { q };
    if num < 0 {
        -rounded
    } else {
        rounded
    }
}

/// The requantization of the contract:
/// `saturate_i32(round_half_away((acc * multiplier + offset) / 2^(31 - shift)))`, all of it exact.
pub fn requant(acc: i128, p: RequantParams) -> i32 {
    let shift = p.shift as i32;
    assert!((REF_MIN_SHIFT..=REF_MAX_SHIFT).contains(&shift), "shift {shift} outside the contract");
    let offset = p.offset as i128;
    assert!(offset.abs() < REF_OFFSET_LIMIT, "offset {offset} outside the contract");
    let sum = acc * p.multiplier as i128 + offset;
    sat_i32(div_pow2_round_half_away(sum, (31 - shift) as u32))
}

/// The logit of a logits layer: `saturate_i32(acc + offset)`, the offset in accumulator units.
pub fn logit(acc: i128, p: RequantParams) -> i32 {
    sat_i32(acc + p.offset as i128)
}

/// [`requant`] then the output clamp.
pub fn requant_code(acc: i128, p: RequantParams, clamp: Clamp) -> u8 {
    assert!(clamp.min <= clamp.max);
    requant(acc, p).clamp(clamp.min as i32, clamp.max as i32) as u8
}

/// An accumulator of the contract: the exact sum, which must fit `i32` (the load-time proof guarantees it).
fn acc_i32(acc: i128) -> i128 {
    assert!(acc >= i32::MIN as i128 && acc <= i32::MAX as i128, "accumulator {acc} does not fit i32");
    acc
}

/// Output extent of a window along one axis, or `None` when the window does not fit.
pub fn out_extent(n: usize, before: u8, after: u8, k: u8, s: u8) -> Option<usize> {
    let padded = n + before as usize + after as usize;
    if k == 0 || s == 0 || padded < k as usize {
        None
    } else {
        Some((padded - k as usize) / s as usize + 1)
    }
}

/// Output `[Ho, Wo]` of a window over `[H, W]`.
pub fn out_hw(window: &Window, h: usize, w: usize) -> [usize; 2] {
    let p = window.padding;
    [
        out_extent(h, p.top, p.bottom, window.kernel[0], window.stride[0]).expect("window does not fit"),
        out_extent(w, p.left, p.right, window.kernel[1], window.stride[1]).expect("window does not fit"),
    ]
}

/// A tensor of codes, `H x W x C`, channel fastest.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    /// Codes.
    pub data: &'a [u8],
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Tensor<'_> {
    /// The code at `(y, x, c)` of the zero-padded tensor: 0 outside `[0, H) x [0, W)`.
    pub fn at(&self, y: isize, x: isize, c: usize) -> i128 {
        if y < 0 || x < 0 || y >= self.h as isize || x >= self.w as isize {
            0
        } else {
            self.data[(y as usize * self.w + x as usize) * self.c + c] as i128
        }
    }

    /// Whether `(y, x)` lies inside the tensor (not in padding).
    pub fn inside(&self, y: isize, x: isize) -> bool {
        y >= 0 && x >= 0 && y < self.h as isize && x < self.w as isize
    }

    fn check(&self) {
        assert_eq!(self.data.len(), self.h * self.w * self.c, "tensor data does not match its shape");
    }
}

/// Top-left input coordinate of the window for output `(oy, ox)` (may be negative: padding).
fn window_origin(window: &Window, oy: usize, ox: usize) -> (isize, isize) {
    (
        (oy * window.stride[0] as usize) as isize - window.padding.top as isize,
        (ox * window.stride[1] as usize) as isize - window.padding.left as isize,
    )
}

/// 2-D convolution with `groups` groups, weights `[Cout][kh][kw][Cin / groups]` packed at `bits`, one
/// requantization per output channel. Returns `Ho x Wo x Cout` codes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: Tensor<'_>,
    window: &Window,
    groups: usize,
    cout: usize,
    weights: &[u8],
    bits: u8,
    requant: &[RequantParams],
    clamp: Clamp,
) -> Vec<u8> {
    input.check();
    assert!(groups > 0 && input.c.is_multiple_of(groups) && cout.is_multiple_of(groups));
    assert_eq!(requant.len(), cout);
    let (cin_g, cout_g) = (input.c / groups, cout / groups);
    let [kh, kw] = [window.kernel[0] as usize, window.kernel[1] as usize];
    let w = unpack_values(weights, bits, cout * kh * kw * cin_g);
    let [ho, wo] = out_hw(window, input.h, input.w);
    let mut out = Vec::with_capacity(ho * wo * cout);
    for oy in 0..ho {
        for ox in 0..wo {
            let (y0, x0) = window_origin(window, oy, ox);
            for (o, &p) in requant.iter().enumerate() {
                let g = o / cout_g;
                let mut acc = 0i128;
                for ky in 0..kh {
                    for kx in 0..kw {
                        for ci in 0..cin_g {
                            let x = input.at(y0 + ky as isize, x0 + kx as isize, g * cin_g + ci);
                            let wi = ((o * kh + ky) * kw + kx) * cin_g + ci;
                            acc += x * w[wi] as i128;
                        }
                    }
                }
                out.push(requant_code(acc_i32(acc), p, clamp));
            }
        }
    }
    out
}

/// The input of a fully connected layer: codes or `i32` sums.
#[derive(Debug, Clone, Copy)]
pub enum FcIn<'a> {
    /// Activation codes.
    Codes(&'a [u8]),
    /// `i32` sums.
    Sums(&'a [i32]),
}

impl FcIn<'_> {
    fn values(&self) -> Vec<i128> {
        match self {
            FcIn::Codes(c) => c.iter().map(|&x| x as i128).collect(),
            FcIn::Sums(s) => s.iter().map(|&x| x as i128).collect(),
        }
    }
}

/// Fully connected layer, weights `[outputs][N]`. Codes outputs are returned as `i32` (`0..=255`), logits
/// are `saturate_i32(acc + offset)`.
pub fn fully_connected(
    input: FcIn<'_>,
    weights: &[u8],
    bits: u8,
    requant: &[RequantParams],
    kind: FcOutput,
    outputs: usize,
) -> Vec<i32> {
    let x = input.values();
    let n = x.len();
    assert_eq!(requant.len(), outputs);
    let w = unpack_values(weights, bits, outputs * n);
    (0..outputs)
        .map(|o| {
            let acc = acc_i32((0..n).map(|i| x[i] * w[o * n + i] as i128).sum());
            match kind {
                FcOutput::Codes(clamp) => requant_code(acc, requant[o], clamp) as i32,
                FcOutput::Logits => logit(acc, requant[o]),
            }
        })
        .collect()
}

/// Residual add: `clamp(requant(a * weights[0] + b * weights[1]))` element by element.
pub fn add(a: &[u8], b: &[u8], weights: [i32; 2], p: RequantParams, clamp: Clamp) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let acc = x as i128 * weights[0] as i128 + y as i128 * weights[1] as i128;
            requant_code(acc_i32(acc), p, clamp)
        })
        .collect()
}

/// Max pool: the largest code among the window's cells inside the input (padding cells are ignored; a window
/// with no cell inside yields 0).
pub fn max_pool(input: Tensor<'_>, window: &Window) -> Vec<u8> {
    input.check();
    let [ho, wo] = out_hw(window, input.h, input.w);
    let mut out = Vec::with_capacity(ho * wo * input.c);
    for oy in 0..ho {
        for ox in 0..wo {
            let (y0, x0) = window_origin(window, oy, ox);
            for c in 0..input.c {
                let mut m = 0i128;
                for ky in 0..window.kernel[0] as isize {
                    for kx in 0..window.kernel[1] as isize {
                        if input.inside(y0 + ky, x0 + kx) {
                            m = m.max(input.at(y0 + ky, x0 + kx, c));
                        }
                    }
                }
                out.push(m as u8);
            }
        }
    }
    out
}

/// Average pool: the window sum over the zero-padded input, requantized (the divisor lives in `p`).
pub fn avg_pool(input: Tensor<'_>, window: &Window, p: RequantParams, clamp: Clamp) -> Vec<u8> {
    input.check();
    let [ho, wo] = out_hw(window, input.h, input.w);
    let mut out = Vec::with_capacity(ho * wo * input.c);
    for oy in 0..ho {
        for ox in 0..wo {
            let (y0, x0) = window_origin(window, oy, ox);
            for c in 0..input.c {
                let mut sum = 0i128;
                for ky in 0..window.kernel[0] as isize {
                    for kx in 0..window.kernel[1] as isize {
                        sum += input.at(y0 + ky, x0 + kx, c);
                    }
                }
                out.push(requant_code(acc_i32(sum), p, clamp));
            }
        }
    }
    out
}

/// Global sum pool: `out[c] = sum over all pixels of in[y][x][c]`.
pub fn global_sum_pool(input: Tensor<'_>) -> Vec<i32> {
    input.check();
    (0..input.c)
        .map(|c| {
            let mut s = 0i128;
            for y in 0..input.h as isize {
                for x in 0..input.w as isize {
                    s += input.at(y, x, c);
                }
            }
            acc_i32(s) as i32
        })
        .collect()
}
