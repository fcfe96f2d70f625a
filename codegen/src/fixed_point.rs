//! Real scales to the runtime's fixed-point form.

use qfd_runtime::requant::{RequantParams, MAX_SHIFT, MIN_SHIFT};

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

/// Requantization that maps `acc` to `round(scale * acc + offset)`: the offset becomes a bias in accumulator
/// units, `round(offset / scale)`. Returns `None` when the scale is unrepresentable, zero, or the bias would
/// not fit `i32`.
pub fn requant_for(scale: f64, offset: f64) -> Option<RequantParams> {
    let (multiplier, shift) = quantize_multiplier(scale)?;
    if multiplier == 0 {
        return None;
    }
    let bias = (offset / scale).round();
    if !(i32::MIN as f64..=i32::MAX as f64).contains(&bias) {
        return None;
    }
    Some(RequantParams { bias: bias as i32, multiplier, shift })
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
}
