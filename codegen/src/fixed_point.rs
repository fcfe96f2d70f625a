//! Real scales to the runtime's fixed-point form.

use qfd_runtime::requant::{RequantParams, MAX_OFFSET, MAX_SHIFT, MIN_SHIFT};

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
}
