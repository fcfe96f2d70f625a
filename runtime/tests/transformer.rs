//! The transformer kernels (LayerNorm, softmax, the attention products, the per-channel add, the table
//! lookup) against naive references written from the arithmetic contract (`reference/transformer.rs`),
//! bit for bit, and the integer LayerNorm and exponential against floating point, to show they compute
//! what they stand for.

mod reference;

use proptest::prelude::*;
use qfd_codegen::fixed_point::{EXP_LINEAR, EXP_SQUARE};
use qfd_runtime::format::Clamp;
use qfd_runtime::kernels::reference as k;
use qfd_runtime::kernels::reference::{AttentionShape, ExpParams, ProbCodes, PtfInput};
use qfd_runtime::requant::{ChannelRequant, RequantParams};
use qfd_runtime::{Codes, CodesMut};
use reference::transformer as r;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A requantization that maps accumulators of magnitude about `typical` onto a span of about 256 codes,
/// centred at a random code.
fn requant(typical: f64) -> impl Strategy<Value = RequantParams> {
    (0.25f64..4.0, -64.0f64..320.0, any::<bool>()).prop_map(move |(gain, centre, negative)| {
        let scale = gain * 128.0 / typical.max(1.0);
        let shift = scale.log2().floor() as i32 + 1;
        let multiplier = (scale / 2f64.powi(shift) * 2f64.powi(31)).round().min(i32::MAX as f64) as i32;
        let n = 31 - shift;
        RequantParams {
            offset: (centre * 2f64.powi(n)).round() as i64,
            multiplier: if negative { -multiplier } else { multiplier },
            shift: shift as i8,
        }
    })
}

fn records(params: &[RequantParams]) -> Vec<u8> {
    params.iter().flat_map(|p| p.to_record()).collect()
}

const FULL: Clamp = Clamp { min: 0, max: 255 };

/// Random bytes from a seed (xorshift), for tensors larger than proptest should shrink.
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let x = &mut self.0;
                *x |= 1;
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                (*x >> 32) as u8
            })
            .collect()
    }
}

/// Unpacks `count` codes of `bits` bits.
fn codes_of(bytes: &[u8], bits: u8, count: usize) -> Vec<u8> {
    let codes = Codes::new(bytes, bits);
    (0..count).map(|i| codes.get(i)).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Square roots and the LayerNorm.

#[test]
fn isqrt_is_the_floor_square_root() {
    for v in 0..200_000u64 {
        assert_eq!(k::isqrt(v) as u128, r::floor_sqrt(v as u128), "isqrt({v})");
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = x >> (x % 40);
        assert_eq!(k::isqrt(v) as u128, r::floor_sqrt(v as u128), "isqrt({v})");
    }
    for v in [u64::MAX, u64::MAX - 1, 1 << 62, (1 << 62) - 1, 1 << 63] {
        assert_eq!(k::isqrt(v) as u128, r::floor_sqrt(v as u128), "isqrt({v})");
    }
}

#[test]
fn inverse_sqrt_has_thirty_bits() {
    for v in (1u64..5000).chain((0..50).map(|b| (1u64 << b) + 12345 % (1u64 << b).max(1))) {
        let (inv, shift) = k::inverse_sqrt(v);
        let got = inv as f64 / 2f64.powi(shift as i32);
        let want = 1.0 / (v as f64).sqrt();
        assert!((got / want - 1.0).abs() < 2e-9, "1/sqrt({v}): {got} against {want}");
    }
}

prop_compose! {
    /// Tokens of PTF-coded channels: a zero point, a shift per channel and a requantization per channel
    /// (the normalized value is at most `sqrt(C)` in units of `2^16`).
    fn layer_norm_case()(tokens in 1usize..5, channels in 1usize..80, max_shift in 0u8..=7)
        (codes in prop::collection::vec(any::<u8>(), tokens * channels),
         zero in any::<u8>(),
         shifts in prop::collection::vec(0..=max_shift, channels),
         requant in prop::collection::vec(requant(65536.0), channels),
         channels in Just(channels))
        -> (Vec<u8>, usize, u8, Vec<u8>, Vec<RequantParams>) {
        (codes, channels, zero, shifts, requant)
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn layer_norm_matches_the_reference((codes, channels, zero, shifts, requant) in layer_norm_case()) {
        let table = records(&requant);
        let input = PtfInput { zero, shifts: &shifts };
        let tokens = codes.len() / channels;
        let mut out = vec![0u8; codes.len()];
        let x = Codes::new(&codes, 8);
        k::layer_norm(x, tokens, channels, input, ChannelRequant { records: &table }, FULL, CodesMut::new(&mut out, 8));
        prop_assert_eq!(out, r::layer_norm(&codes, channels, zero, &shifts, &requant, FULL));
    }

    #[test]
    fn layer_norm_normalizes(channels in 2usize..300, seed in any::<u64>(), zero in any::<u8>(), max_shift in 0u8..=3) {
        // Channels of mixed spread, as a residual stream has: what the integers give against `(x - mean) / std`.
        let mut rng = Rng(seed);
        let codes = rng.bytes(channels);
        let shifts: Vec<u8> = rng.bytes(channels).iter().map(|x| x % (max_shift + 1)).collect();
        let x: Vec<f64> =
            codes.iter().zip(&shifts).map(|(&k, &s)| (k as f64 - zero as f64) * (1 << s) as f64).collect();
        let mean = x.iter().sum::<f64>() / channels as f64;
        let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / channels as f64).sqrt();
        let mut got = vec![0i32; channels];
        let input = PtfInput { zero, shifts: &shifts };
        k::layer_norm_accumulate(Codes::new(&codes, 8), 1, channels, input, |i, v| got[i] = v);
        for (c, &v) in got.iter().enumerate() {
            let want = if std == 0.0 { 0.0 } else { (x[c] - mean) / std * 65536.0 };
            prop_assert!((v as f64 - want).abs() <= 1.0, "channel {}: {} against {}", c, v, want);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The exponential and the softmax.

/// The constants for the logit scale `s` on a grid of `2^fraction` steps per code (export's rule,
/// `qfd_codegen::fixed_point::exp_params_for`, with the fraction bits and shift free).
fn exp_params(s: f64, fraction: u8, shift: u8) -> ExpParams {
    let g = s / 2f64.powi(fraction as i32);
    ExpParams {
        fraction,
        x0: (-std::f64::consts::LN_2 / g).floor() as i32,
        b: (EXP_LINEAR / g).floor() as i64,
        c: (1.0 / (EXP_SQUARE * g * g)).floor() as i64,
        shift,
    }
}

#[test]
fn the_integer_exponential_follows_exp() {
    for s in [0.02, 0.05, 0.1, 0.2, 0.5] {
        let p = exp_params(s, 8, 24);
        let top = p.exp(0) as f64;
        for d in (-400..=0).rev() {
            let want = (d as f64 * s).exp();
            if want < 1e-6 {
                break;
            }
            let got = p.exp(d) as f64 / top;
            // I-BERT's polynomial is within 0.331% of exp on a halving interval; the grid's `x0` is off
            // by less than one part in `|x0|` (1/177 at s = 0.5), once per halving.
            let halvings = -(d as f64) * s / std::f64::consts::LN_2;
            let tolerance = 0.0034 + (halvings + 1.0) / p.x0.unsigned_abs() as f64;
            assert!((got / want - 1.0).abs() < tolerance, "s {s}, d {d}: {got} against {want}");
        }
    }
}

prop_compose! {
    fn exp_case()(s in 0.01f64..0.6, fraction in 0u8..=8, shift in 8u8..=24) -> ExpParams {
        exp_params(s, fraction, shift)
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn exp_matches_the_reference(p in exp_case(), d in -4000i32..=0) {
        let want = r::exp_term(d as i128, &p);
        prop_assert_eq!(p.exp(d) as u128, want);
    }

    #[test]
    fn probability_codes_match_the_reference(e in any::<u64>(), extra in any::<u64>(), bits in 1u8..=8) {
        let (e, sum) = (e >> 2, (e >> 2).saturating_add(extra >> 2));
        prop_assert_eq!(k::log2_code(e, sum), r::log2_code(e as u128, sum as u128));
        if sum > 0 {
            prop_assert_eq!(k::linear_code(e, sum, bits), r::linear_code(e as u128, sum as u128, bits));
        }
    }

    #[test]
    fn softmax_matches_the_reference(
        rows in 1usize..6, n in 1usize..70, p in exp_case(), seed in any::<u64>(), log2 in any::<bool>(),
        bits in 2u8..=8,
    ) {
        let codes = Rng(seed).bytes(rows * n);
        let probs = if log2 { ProbCodes::Log2 } else { ProbCodes::Linear { bits } };
        let mut out = vec![0u8; rows * n];
        k::softmax(Codes::new(&codes, 8), rows, n, p, probs, CodesMut::new(&mut out, probs.bits()));
        let got = codes_of(&out, probs.bits(), rows * n);
        for (row, (x, got)) in codes.chunks(n).zip(got.chunks(n)).enumerate() {
            let max = *x.iter().max().unwrap() as i128;
            let terms: Vec<u128> = x.iter().map(|&v| r::exp_term(v as i128 - max, &p)).collect();
            let sum: u128 = terms.iter().sum();
            let code = |e: u128| if log2 { r::log2_code(e, sum) } else { r::linear_code(e, sum, bits) };
            let want: Vec<u8> = terms.iter().map(|&e| code(e)).collect();
            prop_assert_eq!(got, &want[..], "row {}", row);
        }
    }
}

#[test]
fn log2_probabilities_are_the_nearest_powers_of_two() {
    // Softmax of a row of logits against float: each code is the power of two nearest the probability,
    // midpoints at 1.5 * 2^-k, apart from probabilities within 2% of a midpoint (the exponential's error).
    let s = 0.08;
    let p = exp_params(s, 8, 24);
    let x: Vec<u8> = (0..64u32).map(|i| ((i * 37 + 11) % 97) as u8 + 100).collect();
    let mut out = vec![0u8; x.len()];
    k::softmax(Codes::new(&x, 8), 1, x.len(), p, ProbCodes::Log2, CodesMut::new(&mut out, 4));
    let got = codes_of(&out, 4, x.len());
    let max = *x.iter().max().unwrap() as f64;
    let exps: Vec<f64> = x.iter().map(|&v| ((v as f64 - max) * s).exp()).collect();
    let total: f64 = exps.iter().sum();
    let mut checked = 0;
    for (j, e) in exps.iter().enumerate() {
        let ratio = total / e;
        let k = (0..15).take_while(|&i| ratio >= 1.5 * 2f64.powi(i)).count() as u8;
        let near_midpoint = (0..16).any(|i| (ratio / (1.5 * 2f64.powi(i)) - 1.0).abs() < 0.02);
        if !near_midpoint {
            assert_eq!(got[j], k, "logit {j}: ratio {ratio}");
            checked += 1;
        }
    }
    assert!(checked > 48, "only {checked} of 64 probabilities away from a midpoint");
}

// ---------------------------------------------------------------------------------------------------------
// Attention products, the per-channel add and the lookup.

prop_compose! {
    fn attention_case()(tokens in 1usize..20, heads in 1usize..5, d in 1usize..20)
        (q in prop::collection::vec(any::<u8>(), tokens * heads * d),
         kv in prop::collection::vec(any::<u8>(), tokens * heads * d),
         p in prop::collection::vec(any::<u8>(), heads * tokens * tokens),
         zeros in any::<[u8; 2]>(),
         shape in Just(AttentionShape { tokens, heads, head_dim: d }))
        -> (AttentionShape, Vec<u8>, Vec<u8>, Vec<u8>, [u8; 2]) {
        (shape, q, kv, p, zeros)
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn attention_scores_match_the_reference((shape, q, kc, _, zeros) in attention_case(), rq in requant(20000.0)) {
        let mut out = vec![0u8; shape.scores()];
        k::attention_scores(Codes::new(&q, 8), Codes::new(&kc, 8), shape, zeros, rq, FULL, CodesMut::new(&mut out, 8));
        let want: Vec<u8> = r::scores(&q, &kc, shape.tokens, shape.heads, shape.head_dim, zeros)
            .into_iter().map(|acc| reference::requant_code(acc, rq, FULL)).collect();
        prop_assert_eq!(out, want);
    }

    #[test]
    fn attention_values_match_the_reference(
        (shape, _, v, p, zeros) in attention_case(), log2 in any::<bool>(), rq in requant(200000.0),
    ) {
        let (probs, bits) = if log2 { (ProbCodes::Log2, 4) } else { (ProbCodes::Linear { bits: 8 }, 8) };
        let p: Vec<u8> = p.iter().map(|&x| if log2 { x % 16 } else { x }).collect();
        let mut packed = vec![0u8; p.len()];
        let mut writer = CodesMut::new(&mut packed, bits);
        p.iter().enumerate().for_each(|(i, &x)| writer.set(i, x));
        let mut out = vec![0u8; shape.tokens * shape.channels()];
        let (p_codes, v_codes) = (Codes::new(&packed, bits), Codes::new(&v, 8));
        k::attention_values(p_codes, v_codes, shape, probs, zeros[0], rq, FULL, CodesMut::new(&mut out, 8));
        let want: Vec<u8> = r::values(&p, &v, shape.tokens, shape.heads, shape.head_dim, log2, zeros[0])
            .into_iter().map(|acc| reference::requant_code(acc, rq, FULL)).collect();
        prop_assert_eq!(out, want);
    }

    #[test]
    fn channel_add_matches_the_reference(
        channels in 1usize..40, tokens in 1usize..6, seed in any::<u64>(), weights in any::<[i16; 2]>(),
        shifted in any::<[bool; 2]>(), rq in prop::collection::vec(requant(30000.0), 40),
    ) {
        let len = channels * tokens;
        let mut rng = Rng(seed);
        let (a, b) = (rng.bytes(len), rng.bytes(len));
        let shifts: [Vec<u8>; 2] =
            shifted.map(|on| if on { rng.bytes(channels).iter().map(|x| x % 4).collect() } else { vec![] });
        let weights = weights.map(|w| w as i32);
        let table = records(&rq[..channels]);
        let mut out = vec![0u8; len];
        k::channel_add(Codes::new(&a, 8), Codes::new(&b, 8), len, channels, weights, [&shifts[0], &shifts[1]],
            ChannelRequant { records: &table }, FULL, CodesMut::new(&mut out, 8));
        let shift = |s: &Vec<u8>, c: usize| s.get(c).copied().unwrap_or(0);
        let want: Vec<u8> = (0..len).map(|i| {
            let c = i % channels;
            let x = (a[i] as i128) << shift(&shifts[0], c);
            let y = (b[i] as i128) << shift(&shifts[1], c);
            let acc = x * weights[0] as i128 + y * weights[1] as i128;
            reference::requant_code(acc, rq[c], FULL)
        }).collect();
        prop_assert_eq!(out, want);
    }

    #[test]
    fn lookup_reads_the_table(
        codes in prop::collection::vec(0u8..16, 1..100), table in prop::collection::vec(0u8..16, 16),
    ) {
        let mut packed = vec![0u8; codes.len().div_ceil(2)];
        let mut writer = CodesMut::new(&mut packed, 4);
        codes.iter().enumerate().for_each(|(i, &x)| writer.set(i, x));
        let mut out = vec![0u8; codes.len()];
        k::lookup(Codes::new(&packed, 4), codes.len(), &table, CodesMut::new(&mut out, 8));
        prop_assert_eq!(out, codes.iter().map(|&x| table[x as usize]).collect::<Vec<_>>());
    }
}
