//! Real scales to the runtime's fixed-point form.

use qfd_runtime::kernels::ExpParams;
use qfd_runtime::requant::{RequantParams, MAX_OFFSET, MAX_SHIFT, MIN_SHIFT};
use qfd_runtime::weights::max_code;

/// The Q31 multiplier and shift closest to `scale`: `scale ~= multiplier / 2^31 * 2^shift`.
///
/// The multiplier is normalised to `[2^30, 2^31)` in magnitude (keeping the sign of `scale`) when the shift
/// range allows; scales below `2^MIN_SHIFT / 2` lose precision gracefully and round to 0. Returns `None` for a
/// non-finite scale or one too large to represent (`>= 2^MAX_SHIFT`).
pub fn quantize_multiplier(scale: f64) -> Option<(i32, i8)> {
    if !scale.is_finite() {
        return None;
    }
    if scale == 0.0 {
        return Some((0, 0));
    }
    let magnitude = scale.abs();
    // magnitude = frac * 2^exp with frac in [0.5, 1).
    let mut exp = magnitude.log2().floor() as i32 + 1;
    let mut frac = magnitude / 2f64.powi(exp);
    if frac >= 1.0 {
        frac /= 2.0;
        exp += 1;
    }
    if exp > MAX_SHIFT as i32 {
        return None;
    }
    if exp < MIN_SHIFT as i32 {
        frac /= 2f64.powi(MIN_SHIFT as i32 - exp);
        exp = MIN_SHIFT as i32;
    }
    let mut m = (frac * 2f64.powi(31)).round() as i64;
    if m == 1i64 << 31 {
        m /= 2;
        exp += 1;
        if exp > MAX_SHIFT as i32 {
            return None;
        }
    }
    let m = if scale < 0.0 { -m } else { m };
    Some((m as i32, exp as i8))
}

/// Requantization that maps `acc` to `round(scale * acc + offset)`: the offset goes into product units,
/// `round(offset * 2^(31 - shift))`, so its fraction is kept to half a product unit (`2^-(32 - shift)` of an
/// output code). Returns `None` when the scale is unrepresentable or zero, or the offset in product units
/// exceeds [`MAX_OFFSET`] (`|offset| >= 2^62`).
pub fn requant_for(scale: f64, offset: f64) -> Option<RequantParams> {
    let (multiplier, shift) = quantize_multiplier(scale)?;
    if multiplier == 0 {
        return None;
    }
    let product = (offset * 2f64.powi(31 - shift as i32)).round();
    // `MAX_OFFSET as f64` rounds up to 2^62: below it, `product` is a whole number of at most `MAX_OFFSET`.
    if product.is_nan() || product.abs() >= MAX_OFFSET as f64 {
        return None;
    }
    Some(RequantParams { offset: product as i64, multiplier, shift })
}

/// Fraction bits of the softmax exponential's grid: `x0` is then within 1/256 of a logit step of `-ln 2`.
pub const EXP_FRACTION: u8 = 8;
/// I-BERT's second-degree polynomial for `exp(p)` on `(-ln 2, 0]`: `EXP_SQUARE * (p^2 + EXP_LINEAR * p) + 1`
/// (within 0.33% of `exp`).
pub const EXP_SQUARE: f64 = 0.35815147;
/// See [`EXP_SQUARE`].
pub const EXP_LINEAR: f64 = 0.96963238 / 0.35815147;
/// The largest power of two of an exponential term (`c << 30`), as FQ-ViT uses.
pub const EXP_MAX_SHIFT: u8 = 30;

/// The integer exponential's constants for logit codes of scale `scale`, in rows of `row_len` logits:
/// `x0`, `b` and `c` on a grid [`EXP_FRACTION`] bits finer than the logits, and the largest shift
/// `n <= 30` that keeps a row's sum below `2^62`. `None` for a scale too small or not positive.
pub fn exp_params_for(scale: f64, row_len: usize) -> Option<ExpParams> {
    if !(scale.is_finite() && scale > 0.0) || row_len == 0 {
        return None;
    }
    let grid = scale / 2f64.powi(EXP_FRACTION as i32);
    let x0 = (-std::f64::consts::LN_2 / grid).floor();
    let b = (EXP_LINEAR / grid).floor();
    let c = (1.0 / (EXP_SQUARE * grid * grid)).floor();
    if x0 < i32::MIN as f64 || c >= 2f64.powi(62) || c < 1.0 {
        return None;
    }
    let mut p =
        ExpParams { fraction: EXP_FRACTION, x0: x0 as i32, b: b as i64, c: c as i64, shift: EXP_MAX_SHIFT };
    while (row_len as u128).saturating_mul(p.term_bound()) > 1 << 62 {
        p.shift = p.shift.checked_sub(1)?;
    }
    Some(p)
}

/// Codes on an affine grid: code `k` stands for `scale * (k - zero)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeGrid {
    /// Real value of one code step.
    pub scale: f64,
    /// The code of the real 0.
    pub zero: i32,
    /// Bit-width of the codes.
    pub bits: u8,
}

/// The lookup table of `f` from `input` codes to `output` codes: entry `k` is `f` of code `k`'s value,
/// rounded onto the output grid and clamped to its codes.
pub fn lookup_table(f: impl Fn(f64) -> f64, input: CodeGrid, output: CodeGrid) -> Vec<u8> {
    let top = max_code(output.bits) as f64;
    (0..=max_code(input.bits))
        .map(|k| {
            let y = f(input.scale * (k - input.zero) as f64);
            ((y / output.scale).round() + output.zero as f64).clamp(0.0, top) as u8
        })
        .collect()
}

/// GELU in PyTorch's `tanh` form (what synthetic models tabulate; trained ones tabulate their own).
pub fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qfd_runtime::requant::requantize;

    #[test]
    fn multiplier_reproduces_scale() {
        for &s in &[1.0, 0.5, 0.3, 1e-3, 1e-7, 3.75, -0.25, 1000.0, 2f64.powi(-40)] {
            let (m, shift) = quantize_multiplier(s).unwrap();
            let back = m as f64 / 2f64.powi(31) * 2f64.powi(shift as i32);
            assert!((back - s).abs() <= s.abs() * 1e-9 + 2f64.powi(-62), "{s} -> {m} {shift} -> {back}");
        }
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(2f64.powi(40)), None);
    }

    #[test]
    fn requant_for_rounds_affine_map() {
        let p = requant_for(0.01, 7.0).unwrap();
        for acc in [-1000, -3, 0, 1, 49, 50, 51, 12345] {
            let want = (0.01 * acc as f64 + 7.0).round() as i32;
            let got = requantize(acc, p);
            assert!((got - want).abs() <= 1, "acc {acc}: {got} vs {want}");
        }
    }

    #[test]
    fn the_offset_keeps_its_fraction() {
        // 0.5 * acc + 0.2: an offset of 0.4 accumulator units, which a whole-unit bias would round to 0 (and
        // then -1 * 0.5 = -0.5 would round to -1).
        let p = requant_for(0.5, 0.2).unwrap();
        assert_eq!(p, RequantParams { offset: 429_496_730, multiplier: 1 << 30, shift: 0 });
        for (acc, want) in [(-3, -1), (-1, 0), (0, 0), (1, 1), (2, 1), (3, 2), (-2, -1), (-4, -2)] {
            assert_eq!(requantize(acc, p), want, "0.5 * {acc} + 0.2");
        }
        // Exact halves of the real value still round away from zero: 0.25 * acc + 0.25.
        let p = requant_for(0.25, 0.25).unwrap();
        assert_eq!([1, -3, 5, -5].map(|acc| requantize(acc, p)), [1, -1, 2, -1]);
    }

    #[test]
    fn requant_for_is_within_half_a_code_of_the_real_map() {
        // A small LCG: scales over many binades, offsets with fractions, accumulators of either sign.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let scale = 2f64.powf(-30.0 * next()) * if next() < 0.2 { -1.0 } else { 1.0 };
            let offset = (next() - 0.3) * 300.0;
            let acc = ((next() - 0.5) * 2.0 * 2f64.powi(30) * next().powi(4)) as i32;
            // The offset is at most about 2^31 accumulator units (|offset| < 2^62 product units, |multiplier|
            // >= 2^30), as an i32 bias in accumulator units was.
            let Some(p) = requant_for(scale, offset) else {
                assert!((offset / scale).abs() > 2f64.powi(31), "{scale}, {offset} refused");
                continue;
            };
            checked += 1;
            let real = scale * acc as f64 + offset;
            let got = requantize(acc, p) as f64;
            // Off by at most half a code, plus the 31-bit multiplier's relative error.
            let slack = 1e-9 * (1.0 + (scale * acc as f64).abs());
            assert!(
                (got - real).abs() <= 0.5 + slack,
                "{scale} * {acc} + {offset} = {real} -> {got} ({p:?})"
            );
        }
        assert!(checked > 15_000, "only {checked} cases");
    }

    #[test]
    fn offsets_beyond_the_range_are_refused() {
        // Scale 1 is 2^30 / 2^31 * 2^1: 2^30 product units per code.
        let p = requant_for(1.0, (1u64 << 32) as f64 - 1.0).unwrap();
        assert_eq!(p.offset, (1i64 << 62) - (1 << 30));
        assert!(p.offset_in_range());
        assert_eq!(requant_for(1.0, (1u64 << 32) as f64), None);
        assert_eq!(requant_for(-1.0, -((1u64 << 32) as f64)), None);
        // A tiny scale needs a large shift, so even a modest offset overflows the product units.
        assert_eq!(requant_for(1e-9, 1e9), None);
        assert_eq!(requant_for(0.5, f64::NAN), None);
        assert_eq!(requant_for(0.5, f64::INFINITY), None);
        assert_eq!(requant_for(0.0, 1.0), None);
    }

    #[test]
    fn exp_params_keep_a_row_below_two_to_the_62() {
        for (scale, n) in [(0.08, 49), (0.001, 49), (0.5, 1024), (0.02, 197)] {
            let p = exp_params_for(scale, n).unwrap();
            assert!(n as u128 * p.term_bound() <= 1 << 62, "{scale} {n}: {p:?}");
            assert!(p.shift >= 16, "{scale} {n}: too few halvings ({p:?})");
            // x0 is within one grid step of -ln 2 / scale.
            let grid = scale / 256.0;
            assert!((p.x0 as f64 * grid + std::f64::consts::LN_2).abs() <= grid);
        }
        assert_eq!(exp_params_for(0.0, 49), None);
        assert_eq!(exp_params_for(f64::NAN, 49), None);
        assert_eq!(exp_params_for(0.1, 0), None);
    }

    #[test]
    fn lookup_tables_round_onto_the_output_grid() {
        let input = CodeGrid { scale: 0.05, zero: 128, bits: 8 };
        let output = CodeGrid { scale: 0.02, zero: 10, bits: 8 };
        let table = lookup_table(gelu_tanh, input, output);
        assert_eq!(table.len(), 256);
        assert_eq!(table[128], 10, "gelu(0) = 0 is the output's zero point");
        // gelu(0.05 * (255 - 128)) = gelu(6.35) ~ 6.35, beyond the output's 4.9: clamped to 255.
        assert_eq!(table[255], 255);
        // The smallest value, near -0.17 at x ~ -0.75: code 10 - 8.5 -> 1 or 2.
        assert!(table.iter().all(|&k| k >= 1));
        assert!(table.windows(2).skip(128).all(|w| w[0] <= w[1]), "increasing above 0");
    }
}
