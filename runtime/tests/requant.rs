//! Requantization: edge cases of the one rounding rule, a 10,000-case property against an `i128` reference
//! written from the contract (`reference/mod.rs`), and the 13-byte record encoding.

mod reference;

use proptest::prelude::*;
use qfd_runtime::requant::{
    logit, requantize, requantize_to_code, ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES, MAX_OFFSET,
    MAX_SHIFT, MIN_SHIFT,
};
use reference as r;

fn rq(acc: i32, offset: i64, multiplier: i32, shift: i8) -> i32 {
    let p = RequantParams { offset, multiplier, shift };
    let got = requantize(acc, p);
    assert_eq!(got, r::requant(acc as i128, p), "reference disagrees for acc {acc}, {p:?}");
    got
}

/// Multiplier 0.5 in Q31.
const HALF: i32 = 1 << 30;

#[test]
fn shift_range_is_the_documented_one() {
    assert_eq!((MIN_SHIFT, MAX_SHIFT), (-31, 30));
    assert_eq!(CHANNEL_RECORD_BYTES, 13);
    assert!(RequantParams { offset: 0, multiplier: 0, shift: MIN_SHIFT }.is_valid());
    assert!(RequantParams { offset: 0, multiplier: 0, shift: MAX_SHIFT }.is_valid());
    assert!(!RequantParams { offset: 0, multiplier: 0, shift: MIN_SHIFT - 1 }.is_valid());
    assert!(!RequantParams { offset: 0, multiplier: 0, shift: MAX_SHIFT + 1 }.is_valid());
}

#[test]
fn offset_range_is_the_documented_one() {
    assert_eq!(MAX_OFFSET, (1i64 << 62) - 1);
    let p = |offset| RequantParams { offset, multiplier: 0, shift: 0 };
    for ok in [0, 1, -1, MAX_OFFSET, -MAX_OFFSET] {
        assert!(p(ok).offset_in_range(), "{ok}");
    }
    for bad in [1i64 << 62, -(1i64 << 62), i64::MAX, i64::MIN] {
        assert!(!p(bad).offset_in_range(), "{bad}");
    }
}

#[test]
fn exact_halves_round_away_from_zero() {
    // acc * 0.5: 0.5 -> 1, 1.5 -> 2, 2.5 -> 3 (not half-to-even), and the mirror images.
    for (acc, want) in [(1, 1), (3, 2), (5, 3), (7, 4), (-1, -1), (-3, -2), (-5, -3), (-7, -4)] {
        assert_eq!(rq(acc, 0, HALF, 0), want, "{acc} * 0.5");
    }
    // Just below and just above a half.
    assert_eq!(rq(1, 0, HALF - 1, 0), 0);
    assert_eq!(rq(1, 0, HALF + 1, 0), 1);
    assert_eq!(rq(-1, 0, HALF - 1, 0), 0);
    assert_eq!(rq(-1, 0, HALF + 1, 0), -1);
    // A tie reached through the offset: (-21 * 1610612736 + 83214991360) / 2^32 = 11.5 (the docs' worked
    // example, an offset of 51 2/3 accumulator units) and its mirrors.
    assert_eq!(rq(-21, 83_214_991_360, 1_610_612_736, -1), 12);
    assert_eq!(rq(21, -83_214_991_360, 1_610_612_736, -1), -12);
    assert_eq!(rq(21, 83_214_991_360, -1_610_612_736, -1), 12);
    // Ties made by the offset alone (half a code is 2^30 product units at shift 0), and just beside them.
    assert_eq!(rq(0, 1 << 30, HALF, 0), 1);
    assert_eq!(rq(0, -(1 << 30), HALF, 0), -1);
    assert_eq!(rq(0, (1 << 30) - 1, HALF, 0), 0);
    assert_eq!(rq(0, 1 - (1 << 30), HALF, 0), 0);
    // acc * 0.5 + 0.25 (2^29 product units): 0.75 -> 1, -0.25 -> 0, -1.25 -> -1; and acc * 0.5 - 0.5.
    assert_eq!(rq(1, 1 << 29, HALF, 0), 1);
    assert_eq!(rq(-1, 1 << 29, HALF, 0), 0);
    assert_eq!(rq(-3, 1 << 29, HALF, 0), -1); // -1.25
    assert_eq!(rq(-2, -(1 << 29), HALF, 0), -1); // -1.25
    assert_eq!(rq(-2, -(1 << 30), HALF, 0), -2); // -1.5
}

#[test]
fn ties_at_both_ends_of_the_shift_range() {
    // MAX_SHIFT: divisor 2^1.
    assert_eq!(rq(1, 0, 1, MAX_SHIFT), 1);
    assert_eq!(rq(-1, 0, 1, MAX_SHIFT), -1);
    assert_eq!(rq(3, 0, 1, MAX_SHIFT), 2);
    assert_eq!(rq(-3, 0, 1, MAX_SHIFT), -2);
    assert_eq!(rq(2, 0, 1, MAX_SHIFT), 1);
    // MIN_SHIFT: divisor 2^62; (-2^31) * (-2^30) = 2^61 is exactly half of it.
    assert_eq!(rq(i32::MIN, 0, -HALF, MIN_SHIFT), 1);
    assert_eq!(rq(i32::MIN, 0, HALF, MIN_SHIFT), -1);
    assert_eq!(rq(i32::MIN, 0, -HALF + 1, MIN_SHIFT), 0);
    assert_eq!(rq(i32::MIN, 0, HALF - 1, MIN_SHIFT), 0);
}

#[test]
fn negative_accumulators_and_multipliers() {
    assert_eq!(rq(-1000, 0, HALF, 0), -500);
    assert_eq!(rq(1000, 0, -HALF, 0), -500);
    assert_eq!(rq(-1000, 0, -HALF, 0), 500);
    assert_eq!(rq(-1001, 0, HALF, 0), -501); // -500.5
    assert_eq!(rq(-1001, 0, -HALF, 0), 501); // 500.5
    assert_eq!(rq(-999, 0, -HALF, 0), 500); // 499.5
                                            // 0.25 with a negative accumulator rounds to zero, not to -1.
    assert_eq!(rq(-1, 0, HALF, -1), 0);
    // -0.75 rounds to -1.
    assert_eq!(rq(-3, 0, HALF, -1), -1);
    // A negative offset can make a positive accumulator negative: (10 - 30) * 0.5.
    assert_eq!(rq(10, -30 * HALF as i64, HALF, 0), -10);
}

#[test]
fn multiplier_zero_leaves_the_rounded_offset() {
    for acc in [i32::MIN, -1, 0, 1, i32::MAX] {
        for shift in [MIN_SHIFT, 0, MAX_SHIFT] {
            assert_eq!(rq(acc, 0, 0, shift), 0);
        }
        // (2^62 - 1) / 2^62 rounds to 1; / 2^31 it is 2^31 - 2^-31, which rounds to 2^31 and saturates.
        assert_eq!(rq(acc, MAX_OFFSET, 0, MIN_SHIFT), 1);
        assert_eq!(rq(acc, -MAX_OFFSET, 0, MIN_SHIFT), -1);
        assert_eq!(rq(acc, MAX_OFFSET, 0, 0), i32::MAX);
        assert_eq!(rq(acc, -MAX_OFFSET, 0, 0), i32::MIN);
        assert_eq!(rq(acc, 3 << 29, 0, 0), 1); // 0.75
    }
}

#[test]
fn multiplier_i32_min_is_minus_one() {
    assert_eq!(rq(1, 0, i32::MIN, 0), -1);
    assert_eq!(rq(-1, 0, i32::MIN, 0), 1);
    assert_eq!(rq(12345, 0, i32::MIN, 0), -12345);
    // -1.5 -> -2 and 1.5 -> 2.
    assert_eq!(rq(3, 0, i32::MIN, -1), -2);
    assert_eq!(rq(-3, 0, i32::MIN, -1), 2);
    // i32::MIN * i32::MIN = 2^62 is exact; / 2^31 = 2^31 saturates to i32::MAX.
    assert_eq!(rq(i32::MIN, 0, i32::MIN, 0), i32::MAX);
    // ... and / 2^62 is exactly 1.
    assert_eq!(rq(i32::MIN, 0, i32::MIN, MIN_SHIFT), 1);
    assert_eq!(rq(i32::MAX, 0, i32::MIN, MIN_SHIFT), -1); // -(2^31 - 1) / 2^31 = -0.99999...
}

#[test]
fn results_saturate_to_i32() {
    // (2^31 - 1)^2 / 2 is far above i32::MAX.
    assert_eq!(rq(i32::MAX, 0, i32::MAX, MAX_SHIFT), i32::MAX);
    assert_eq!(rq(i32::MAX, 0, i32::MIN, MAX_SHIFT), i32::MIN);
    assert_eq!(rq(i32::MIN, 0, i32::MAX, MAX_SHIFT), i32::MIN);
    assert_eq!(rq(i32::MIN, 0, i32::MIN, MAX_SHIFT), i32::MAX);
    // Just at the edge: 2^31 - 1 times 1.0 (Q31 i32::MAX is 1 - 2^-31, so use a scale of exactly 1).
    assert_eq!(rq(i32::MAX, 0, HALF, 1), i32::MAX);
    assert_eq!(rq(i32::MIN, 0, HALF, 1), i32::MIN);
    // 2.0 scale: saturates.
    assert_eq!(rq(i32::MAX, 0, HALF, 2), i32::MAX);
    assert_eq!(rq(i32::MIN, 0, HALF, 2), i32::MIN);
    assert_eq!(rq(HALF, 0, HALF, 2), i32::MAX); // 2^31
    assert_eq!(rq(-HALF, 0, HALF, 2), i32::MIN); // -2^31 fits exactly
}

#[test]
fn the_offset_is_added_to_the_exact_product() {
    // Nothing is saturated before the final result: (2^31 - 1) * 2^30 - 2^61 = -2^30, i.e. -0.5 -> -1.
    assert_eq!(rq(i32::MAX, -(1 << 61), HALF, 0), -1);
    assert_eq!(rq(i32::MIN, 1 << 61, -HALF, 0), i32::MAX); // 2^61 + 2^61 = 2^62: 2^31 saturates
    assert_eq!(rq(i32::MIN, -(1 << 61), HALF, 0), i32::MIN); // -2^62 / 2^31 = -2^31 fits exactly
                                                             // -2^61 + 2^61 + 2^30 is half a code: one product unit less is not.
    assert_eq!(rq(i32::MIN, (1 << 61) + (1 << 30), HALF, 0), 1);
    assert_eq!(rq(i32::MIN, (1 << 61) + (1 << 30) - 1, HALF, 0), 0);
}

#[test]
fn no_intermediate_overflow_at_the_extremes() {
    // |acc * multiplier| up to 2^62 plus |offset| up to 2^62 - 1: the sum nearly fills an i64, and adding
    // half the divisor (2^61 at MIN_SHIFT) to it would overflow. The rounding must not.
    assert_eq!(rq(i32::MIN, MAX_OFFSET, i32::MIN, MIN_SHIFT), 2); // (2^63 - 1) / 2^62 = 2 - 2^-62
    assert_eq!(rq(i32::MAX, MAX_OFFSET, i32::MAX, MIN_SHIFT), 2); // (2^63 - 2^32) / 2^62
    assert_eq!(rq(i32::MIN, -MAX_OFFSET, i32::MAX, MIN_SHIFT), -2); // (-2^63 + 2^31 + 1) / 2^62
    assert_eq!(rq(i32::MAX, -MAX_OFFSET, i32::MIN, MIN_SHIFT), -2);
    // (2^31 - 1) * 2^31 + (2^61 + 2^31) = 2^62 + 2^61 is 1.5 at MIN_SHIFT, a tie rounded away to 2 (and
    // mirrored to -2); with the product's sign flipped the sum is -2^61 + 2^32, -0.5 + 2^-30 -> 0.
    let rest = (1i64 << 61) + (1 << 31);
    assert_eq!(rq(-i32::MAX, rest, i32::MIN, MIN_SHIFT), 2);
    assert_eq!(rq(i32::MAX, -rest, i32::MIN, MIN_SHIFT), -2);
    assert_eq!(rq(i32::MAX, rest, i32::MIN, MIN_SHIFT), 0);
    // The other end of the shift range saturates.
    assert_eq!(rq(i32::MAX, MAX_OFFSET, i32::MAX, MAX_SHIFT), i32::MAX);
    assert_eq!(rq(i32::MIN, -MAX_OFFSET, i32::MAX, MAX_SHIFT), i32::MIN);
}

#[test]
fn shift_extremes() {
    // MIN_SHIFT divides by 2^62: (2^31 - 1)^2 / 2^62 = 0.99999999953 -> 1.
    assert_eq!(rq(i32::MAX, 0, i32::MAX, MIN_SHIFT), 1);
    assert_eq!(rq(i32::MAX, 0, -i32::MAX, MIN_SHIFT), -1);
    assert_eq!(rq(1, 0, i32::MAX, MIN_SHIFT), 0);
    assert_eq!(rq(-1, 0, i32::MAX, MIN_SHIFT), 0);
    assert_eq!(rq(HALF, 0, HALF, MIN_SHIFT), 0); // 2^60 / 2^62 = 0.25
                                                 // MAX_SHIFT divides by 2: the multiplier acts as `m / 2`.
    assert_eq!(rq(1, 0, 2, MAX_SHIFT), 1);
    assert_eq!(rq(7, 0, 2, MAX_SHIFT), 7);
    assert_eq!(rq(7, 0, 1, MAX_SHIFT), 4); // 3.5
    assert_eq!(rq(-7, 0, 1, MAX_SHIFT), -4); // -3.5
    assert_eq!(rq(1000, 0, 3, MAX_SHIFT), 1500);
}

#[test]
fn clamp_to_codes() {
    let p = RequantParams { offset: 0, multiplier: HALF, shift: 0 };
    assert_eq!(requantize_to_code(-100, p, 0, 15), 0);
    assert_eq!(requantize_to_code(100, p, 0, 15), 15);
    assert_eq!(requantize_to_code(13, p, 0, 15), 7); // 6.5 -> 7
    assert_eq!(requantize_to_code(13, p, 9, 15), 9); // a ReLU-raised lower clamp
    assert_eq!(requantize_to_code(i32::MAX, p, 0, 255), 255);
    assert_eq!(requantize_to_code(i32::MIN, p, 0, 255), 0);
    assert_eq!(requantize_to_code(13, p, 4, 4), 4);
}

/// TFLite / CMSIS-NN's two-step rule (saturating rounding doubling high multiply, then rounding divide by a
/// power of two), for non-positive shifts, written here only to show why the contract does not use it.
fn tflite_two_step(x: i32, multiplier: i32, shift: i8) -> i32 {
    assert!(shift <= 0);
    let high = if x == i32::MIN && multiplier == i32::MIN {
        i32::MAX
    } else {
        let ab = x as i64 * multiplier as i64;
        let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
        ((ab + nudge) / (1i64 << 31)) as i32
    };
    let exponent = (-shift) as u32;
    if exponent == 0 {
        return high;
    }
    let mask = (1i32 << exponent) - 1;
    let remainder = high & mask;
    let threshold = (mask >> 1) + (high < 0) as i32;
    (high >> exponent) + (remainder > threshold) as i32
}

#[test]
fn single_rounding_differs_from_tflite_double_rounding() {
    // 1 * 0.5 / 2 = 0.25: TFLite rounds 0.5 up to 1, then 1 / 2 = 0.5 up to 1 again. Exact rounding gives 0.
    assert_eq!(tflite_two_step(1, HALF, -1), 1);
    assert_eq!(rq(1, 0, HALF, -1), 0);
    // Where neither step rounds, both agree.
    assert_eq!(tflite_two_step(8, HALF, -1), 2);
    assert_eq!(rq(8, 0, HALF, -1), 2);
}

// ---------------------------------------------------------------------------------------------------------
// Properties.

fn edgy_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => any::<i32>(),
        2 => -1000..=1000i32,
        1 => prop_oneof![
            Just(i32::MIN),
            Just(i32::MIN + 1),
            Just(-1),
            Just(0),
            Just(1),
            Just(i32::MAX - 1),
            Just(i32::MAX),
            Just(1 << 30),
            Just(-(1 << 30)),
        ],
    ]
}

/// Offsets in the contract's range `|offset| < 2^62`, often at its ends or of a realistic size.
fn edgy_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -MAX_OFFSET..=MAX_OFFSET,
        2 => -(1i64 << 40)..=(1i64 << 40),
        2 => -1000..=1000i64,
        1 => prop_oneof![
            Just(-MAX_OFFSET),
            Just(MAX_OFFSET),
            Just(0),
            Just(1 << 61),
            Just(-(1 << 61)),
            Just(1 << 30),
            Just(-(1 << 30)),
        ],
    ]
}

fn shift() -> impl Strategy<Value = i8> {
    prop_oneof![6 => MIN_SHIFT..=MAX_SHIFT, 1 => Just(MIN_SHIFT), 1 => Just(MAX_SHIFT), 1 => Just(0)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn requantize_matches_i128_reference(
        acc in edgy_i32(),
        offset in edgy_offset(),
        multiplier in edgy_i32(),
        shift in shift(),
        (lo, hi) in (any::<u8>(), any::<u8>()),
    ) {
        let p = RequantParams { offset, multiplier, shift };
        prop_assert_eq!(requantize(acc, p), r::requant(acc as i128, p));
        let (min, max) = (lo.min(hi), lo.max(hi));
        let clamp = qfd_runtime::format::Clamp { min, max };
        prop_assert_eq!(requantize_to_code(acc, p, min, max), r::requant_code(acc as i128, p, clamp));
        prop_assert_eq!(logit(acc, p), r::logit(acc as i128, p));
    }

    /// Any `i64` offset at all: the logit still saturates exactly.
    #[test]
    fn logit_saturates_for_any_offset(acc in edgy_i32(), offset in any::<i64>()) {
        let p = RequantParams { offset, multiplier: 0, shift: 0 };
        prop_assert_eq!(logit(acc, p), r::logit(acc as i128, p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Exact ties built on purpose at every divisor `2^n`, `n = 31 - shift` in `1..=62`: the quotient is
    /// `odd / 2`, which must round to `(odd + sign(odd)) / 2`, times the multiplier's sign.
    #[test]
    fn every_exact_tie_rounds_away_from_zero(
        n in 1u32..=62,
        odd_half in -(1i64 << 29)..(1i64 << 29),
        negative_multiplier in any::<bool>(),
    ) {
        // x * m = +-odd * 2^(n-1). For n <= 31 take |m| = 2^(n-1) and x = odd; beyond, m = i32::MIN (-2^31)
        // and x = odd * 2^(n-32), with |odd| reduced so that x fits i32.
        let (m, extra) = if n <= 31 {
            ((if negative_multiplier { -1 } else { 1 }) << (n - 1), 0)
        } else {
            (i32::MIN as i64, n - 32)
        };
        let odd = (2 * odd_half + 1) % (1i64 << (31 - extra)); // still odd: the modulus is even
        let x = odd << extra;
        prop_assert_eq!(x * m, (odd * m.signum()) << (n - 1));
        let p = RequantParams { offset: 0, multiplier: m as i32, shift: (31 - n as i32) as i8 };
        let away = (odd + odd.signum()) / 2 * m.signum();
        prop_assert_eq!(requantize(x as i32, p) as i64, away);
        prop_assert_eq!(r::requant(x as i128, p) as i64, away);
    }

    /// Exact ties reached through the offset: for any accumulator and multiplier, the offset that puts
    /// `acc * multiplier + offset` on `odd * 2^(n-1)` (when that offset is in range) rounds away from zero.
    #[test]
    fn ties_through_the_offset_round_away_from_zero(
        n in 1u32..=62,
        acc in edgy_i32(),
        multiplier in edgy_i32(),
        odd_half in any::<i32>(),
    ) {
        let odd = 2 * (odd_half as i64 >> (n.saturating_sub(30))) + 1;
        let target = (odd as i128) << (n - 1);
        let offset = target - acc as i128 * multiplier as i128;
        prop_assume!(offset.abs() <= MAX_OFFSET as i128);
        let p = RequantParams { offset: offset as i64, multiplier, shift: (31 - n as i32) as i8 };
        let away = ((odd + odd.signum()) / 2).clamp(i32::MIN as i64, i32::MAX as i64);
        prop_assert_eq!(requantize(acc, p) as i64, away);
        prop_assert_eq!(r::requant(acc as i128, p) as i64, away);
    }

    #[test]
    fn record_round_trip(offset in any::<i64>(), multiplier in any::<i32>(), shift in any::<i8>()) {
        let p = RequantParams { offset, multiplier, shift };
        let rec = p.to_record();
        // The documented layout: offset LE, multiplier LE, shift as one byte.
        prop_assert_eq!(&rec[0..8], &offset.to_le_bytes()[..]);
        prop_assert_eq!(&rec[8..12], &multiplier.to_le_bytes()[..]);
        prop_assert_eq!(rec[12], shift as u8);
        prop_assert_eq!(RequantParams::from_record(&rec), p);
        prop_assert_eq!(p.is_valid(), (MIN_SHIFT..=MAX_SHIFT).contains(&shift));
        prop_assert_eq!(p.offset_in_range(), offset.unsigned_abs() < 1u64 << 62);
    }

    #[test]
    fn any_record_bytes_round_trip(bytes in any::<[u8; CHANNEL_RECORD_BYTES]>()) {
        prop_assert_eq!(RequantParams::from_record(&bytes).to_record(), bytes);
    }

    #[test]
    fn channel_table_get(
        params in prop::collection::vec(
            (any::<i64>(), any::<i32>(), MIN_SHIFT..=MAX_SHIFT)
                .prop_map(|(offset, multiplier, shift)| RequantParams { offset, multiplier, shift }),
            0..20,
        )
    ) {
        let records: Vec<u8> = params.iter().flat_map(|p| p.to_record()).collect();
        let table = ChannelRequant { records: &records };
        prop_assert_eq!(table.len(), params.len());
        prop_assert_eq!(table.is_empty(), params.is_empty());
        for (c, p) in params.iter().enumerate() {
            prop_assert_eq!(table.get(c), *p);
        }
        prop_assert_eq!(table.iter().collect::<Vec<_>>(), params);
    }
}

#[test]
fn channel_table_get_reads_the_right_record() {
    let a = RequantParams { offset: -7, multiplier: i32::MIN, shift: MIN_SHIFT };
    let b = RequantParams { offset: i64::MAX, multiplier: 1, shift: MAX_SHIFT };
    let records: Vec<u8> = [a, b].iter().flat_map(|p| p.to_record()).collect();
    assert_eq!(records.len(), 2 * CHANNEL_RECORD_BYTES);
    let table = ChannelRequant { records: &records };
    assert_eq!((table.get(0), table.get(1)), (a, b));
    assert_eq!(table.len(), 2);
}

#[test]
#[should_panic]
fn channel_table_get_past_the_end_panics() {
    let records = RequantParams { offset: 0, multiplier: 0, shift: 0 }.to_record();
    ChannelRequant { records: &records }.get(1);
}
