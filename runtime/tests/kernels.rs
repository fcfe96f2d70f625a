//! The integer kernels against naive references written from the arithmetic contract (`reference/mod.rs`).
//!
//! Every op gets at least 1,000 random cases: bit-widths 1-8, odd shapes, strides 1-3, asymmetric padding,
//! grouped, depthwise and pointwise convolutions, kernels 1x1 to 5x5 (non-square included), and requantization
//! params over the whole `i32` range. Generators keep every accumulator inside the bound the load-time
//! validation proves (`fan_in * max_input * max_weight <= i32::MAX`) and assert it. Outputs are compared bit
//! for bit. `worked_example_from_docs` ties `docs/arithmetic.md` to the kernels.

mod reference;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use qfd_runtime::format::{Clamp, FcOutput, Padding, Window};
use qfd_runtime::kernels::{self, ConvGeometry, FcInput, Hwc, PoolGeometry};
use qfd_runtime::requant::{ChannelRequant, RequantParams, MAX_OFFSET, MAX_SHIFT, MIN_SHIFT};
use qfd_runtime::weights::{pack_codes, packed_len, PackedWeights};
use qfd_runtime::{Codes, CodesMut};
use reference as r;
use reference::Tensor;

const I32_MAX: i64 = i32::MAX as i64;

/// Cases per property (the issue asks for at least 1,000 per op).
const CASES: u32 = 4000;

fn config() -> ProptestConfig {
    // No failure persistence: a failure prints its shrunk case, which then becomes a named regression test.
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------------------
// Building kernel inputs.

/// Weight bytes as the kernel reads them, written by the runtime's own packer.
fn kernel_weights(codes: &[u8], bits: u8) -> Vec<u8> {
    let mut out = vec![0u8; packed_len(codes.len(), bits)];
    pack_codes(codes, bits, &mut out);
    out
}

/// A per-channel requantization table (13-byte records).
fn records(params: &[RequantParams]) -> Vec<u8> {
    params.iter().flat_map(|p| p.to_record()).collect()
}

fn hwc(t: &Tensor<'_>) -> Hwc {
    Hwc::new(t.h, t.w, t.c)
}

/// Runs a kernel into an output buffer pre-filled with `0x00` and again with `0xff`, and checks both runs
/// agree: every output byte is written, whatever the buffer held.
fn run_twice(len: usize, mut kernel: impl FnMut(&mut [u8])) -> Vec<u8> {
    let mut a = vec![0x00u8; len];
    let mut b = vec![0xffu8; len];
    kernel(&mut a);
    kernel(&mut b);
    assert_eq!(a, b, "the kernel left some output bytes unwritten");
    a
}

/// Codes as the arena stores them at `bits` bits (packed at 1, 2 and 4).
fn stored(codes: &[u8], bits: u8) -> Vec<u8> {
    kernel_weights(codes, bits)
}

/// Runs `kernel` twice into `len` codes of `bits` bits, stored as the arena stores them, over two different
/// fills, checks that both runs wrote the same codes, and returns them a byte each.
fn run_codes(len: usize, bits: u8, mut kernel: impl FnMut(CodesMut<'_>)) -> Vec<u8> {
    let n = packed_len(len, bits);
    let (mut a, mut b) = (vec![0x00u8; n], vec![0xffu8; n]);
    kernel(CodesMut::new(&mut a, bits));
    kernel(CodesMut::new(&mut b, bits));
    let unpack = |s: &[u8]| (0..len).map(|i| Codes::new(s, bits).get(i)).collect::<Vec<u8>>();
    let (a, b) = (unpack(&a), unpack(&b));
    assert_eq!(a, b, "the kernel left some output codes unwritten");
    a
}

/// The fewest bits whose codes reach `max`.
fn bits_for(max: u8) -> u8 {
    (1..=8).find(|&b| r::max_code(b) >= max as i32).unwrap_or(8)
}

fn i32s_le(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn le_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Generators.

/// Codes of `bits` bits: mostly uniform, sometimes all at the extremes (worst-case accumulators).
fn codes(bits: u8, len: usize) -> impl Strategy<Value = Vec<u8>> {
    let max = r::max_code(bits) as u8;
    prop_oneof![
        8 => prop::collection::vec(0..=max, len),
        1 => prop::collection::vec(prop_oneof![Just(0u8), Just(max)], len),
        1 => Just(vec![max; len]),
    ]
}

/// A shift that maps a typical accumulator magnitude onto the `out_bits` code range (multipliers are about
/// 0.5-1 in Q31), so that many outputs land inside the clamp rather than on it.
fn center_shift(out_bits: u8, typical_acc: f64) -> i32 {
    out_bits as i32 - 1 - typical_acc.max(1.0).log2().round() as i32
}

/// Requantization params for accumulators of typical magnitude `typical` and proven bound `acc_bound`.
///
/// Three in four are "realistic": a shift that maps `typical` onto the `out_bits` code range
/// ([`center_shift`]), a normalised multiplier (`|m| >= 2^30`) of either sign, an offset of the accumulator's
/// typical size leaning positive (as a ReLU network's), with a fraction of an accumulator unit. The rest are
/// "wild": shifts anywhere in the range and at both ends, any multiplier including 0, +-1, `i32::MIN` and
/// `i32::MAX`, offsets of up to the accumulator bound in accumulator units, anywhere in the contract's
/// `|offset| <= MAX_OFFSET` and at its ends, or small ones within the load-time proof's headroom (the offsets a
/// logits layer may have).
fn requant_params(out_bits: u8, typical: f64, acc_bound: i64) -> impl Strategy<Value = RequantParams> {
    assert!((0..=I32_MAX).contains(&acc_bound), "accumulator bound {acc_bound} does not fit i32");
    let center = center_shift(out_bits, typical);
    let (lo, hi) = (MIN_SHIFT as i32, MAX_SHIFT as i32);
    let near = ((center - 2).clamp(lo, hi) as i8)..=((center + 2).clamp(lo, hi) as i8);
    let b = acc_bound as f64;
    let t = (typical.round() as i64).clamp(1, acc_bound.max(2) / 2) as f64;
    let headroom = I32_MAX - acc_bound;

    let realistic = (
        (-t..=2.0 * t).prop_map(Offset::Units),
        prop_oneof![3 => (1i32 << 30)..=i32::MAX, 1 => i32::MIN..=-(1i32 << 30)],
        near.clone(),
    );
    let wild = (
        prop_oneof![
            (-b..=b).prop_map(Offset::Units),
            (-MAX_OFFSET..=MAX_OFFSET).prop_map(Offset::Raw),
            (-headroom..=headroom).prop_map(Offset::Raw),
            prop_oneof![Just(0), Just(MAX_OFFSET), Just(-MAX_OFFSET)].prop_map(Offset::Raw),
        ],
        prop_oneof![
            2 => any::<i32>(),
            1 => prop_oneof![Just(0), Just(1), Just(-1), Just(i32::MIN), Just(i32::MAX)],
            1 => (1i32 << 30)..=i32::MAX,
        ],
        prop_oneof![2 => near, 2 => MIN_SHIFT..=MAX_SHIFT, 1 => Just(MIN_SHIFT), 1 => Just(MAX_SHIFT)],
    );
    prop_oneof![3 => realistic, 1 => wild].prop_map(|(offset, multiplier, shift)| RequantParams {
        offset: offset.product_units(multiplier),
        multiplier,
        shift,
    })
}

/// How a generated offset is given.
#[derive(Debug, Clone, Copy)]
enum Offset {
    /// In accumulator units (any fraction), to be multiplied by the multiplier.
    Units(f64),
    /// Already in product units.
    Raw(i64),
}

impl Offset {
    /// The offset in product units, kept within `MAX_OFFSET`.
    fn product_units(self, multiplier: i32) -> i64 {
        let raw = match self {
            Offset::Units(u) => (u * multiplier as f64).round() as i64,
            Offset::Raw(r) => r,
        };
        raw.clamp(-MAX_OFFSET, MAX_OFFSET)
    }
}

/// A clamp within the output bit-width: often the full range, otherwise any `min <= max`.
fn clamp(bits: u8) -> impl Strategy<Value = Clamp> {
    let max = r::max_code(bits) as u8;
    prop_oneof![
        2 => Just(Clamp { min: 0, max }),
        3 => (0..=max, 0..=max).prop_map(|(a, b)| Clamp { min: a.min(b), max: a.max(b) }),
    ]
}

/// Kernel 1..=kmax on each axis (non-square included), stride 1-3, padding `0..k` on each side separately.
fn window(kmax: u8) -> impl Strategy<Value = Window> {
    (1..=kmax, 1..=kmax, 1u8..=3, 1u8..=3).prop_flat_map(|(kh, kw, sh, sw)| {
        (0..kh, 0..kw, 0..kh, 0..kw).prop_map(move |(top, left, bottom, right)| Window {
            kernel: [kh, kw],
            stride: [sh, sw],
            padding: Padding { top, left, bottom, right },
        })
    })
}

/// Input extents `1..=9` for which the window fits.
fn extents(win: &Window) -> impl Strategy<Value = (usize, usize)> {
    let p = win.padding;
    let hmin = (win.kernel[0] as usize).saturating_sub(p.top as usize + p.bottom as usize).max(1);
    let wmin = (win.kernel[1] as usize).saturating_sub(p.left as usize + p.right as usize).max(1);
    (hmin..=9usize, wmin..=9usize)
}

#[derive(Debug, Clone, Copy)]
enum ConvKind {
    /// `groups` in 1-3, `Cin / groups` and `Cout / groups` in 1-7, kernels up to 5x5.
    Grouped,
    /// `groups == Cin == Cout` in 1-7, kernels up to 5x5.
    Depthwise,
    /// 1x1 kernels, `groups` in 1-3.
    Pointwise,
    /// `groups == 1`, `Cin` in 1-24 (multiples of 4 more often: the im2col's whole-word path), `Cout` in 1-9,
    /// kernels up to 3x3: the shapes the im2col variant runs.
    Dense,
}

#[derive(Debug, Clone)]
struct ConvCase {
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    groups: usize,
    window: Window,
    weight_bits: u8,
    act_bits: u8,
    out_bits: u8,
    input: Vec<u8>,
    weight_codes: Vec<u8>,
    requant: Vec<RequantParams>,
    clamp: Clamp,
}

fn conv_case(kind: ConvKind) -> impl Strategy<Value = ConvCase> {
    let (channels, win) = match kind {
        ConvKind::Grouped => ((1usize..=3, 1usize..=7, 1usize..=7).boxed(), window(5).boxed()),
        ConvKind::Depthwise => ((1usize..=7).prop_map(|c| (c, 1, 1)).boxed(), window(5).boxed()),
        ConvKind::Pointwise => ((1usize..=3, 1usize..=7, 1usize..=7).boxed(), window(1).boxed()),
        ConvKind::Dense => {
            let cin = prop_oneof![1 => 1usize..=24, 1 => (1usize..=6).prop_map(|q| 4 * q)];
            ((Just(1usize), cin, 1usize..=9).boxed(), window(3).boxed())
        }
    };
    (channels, win, 1u8..=8, 1u8..=8, 1u8..=8)
        .prop_flat_map(|(channels, win, wb, ab, ob)| (Just((channels, win, wb, ab, ob)), extents(&win)))
        .prop_flat_map(|(((groups, cin_g, cout_g), window, weight_bits, act_bits, out_bits), (h, w))| {
            let (cin, cout) = (groups * cin_g, groups * cout_g);
            let taps = window.kernel[0] as usize * window.kernel[1] as usize;
            let fan_in = (taps * cin_g) as i64;
            let (amax, wmax) = (r::max_code(act_bits) as i64, r::max_code(weight_bits) as i64);
            let bound = fan_in * amax * wmax;
            assert!(bound <= I32_MAX, "generator: conv accumulator bound {bound} exceeds i32");
            let typical = (fan_in as f64).sqrt() * amax as f64 * wmax as f64 / 3.0;
            (
                Just((h, w, cin, cout, groups, window, weight_bits, act_bits, out_bits)),
                codes(act_bits, h * w * cin),
                codes(weight_bits, cout * taps * cin_g),
                prop::collection::vec(requant_params(out_bits, typical, bound), cout),
                clamp(out_bits),
            )
        })
        .prop_map(|(shape, input, weight_codes, requant, clamp)| {
            let (h, w, cin, cout, groups, window, weight_bits, act_bits, out_bits) = shape;
            ConvCase {
                h,
                w,
                cin,
                cout,
                groups,
                window,
                weight_bits,
                act_bits,
                out_bits,
                input,
                weight_codes,
                requant,
                clamp,
            }
        })
}

/// `(kernel output, reference output)` of a conv case.
fn run_conv(case: &ConvCase) -> (Vec<u8>, Vec<u8>) {
    // Inputs within their bit-widths, the clamp within the output's.
    assert!(case.input.iter().all(|&c| c as i32 <= r::max_code(case.act_bits)));
    assert!(case.weight_codes.iter().all(|&k| k as i32 <= r::max_code(case.weight_bits)));
    assert!(case.clamp.min <= case.clamp.max && case.clamp.max as i32 <= r::max_code(case.out_bits));
    let input = Tensor { data: &case.input, h: case.h, w: case.w, c: case.cin };
    let packed = kernel_weights(&case.weight_codes, case.weight_bits);
    let table = records(&case.requant);
    let [ho, wo] = r::out_hw(&case.window, case.h, case.w);
    let geo = ConvGeometry {
        input: hwc(&input),
        output: Hwc::new(ho, wo, case.cout),
        window: case.window,
        groups: case.groups,
        input_bits: case.act_bits,
    };
    let weights = PackedWeights { bits: case.weight_bits, data: &packed };
    let requant = ChannelRequant { records: &table };
    let mut scratch = garbage_scratch(&geo, case.weight_bits);
    let x = stored(&case.input, case.act_bits);
    let x = Codes::new(&x, case.act_bits);
    let got = run_codes(ho * wo * case.cout, case.out_bits, |out| {
        // The scratch starts at every alignment across cases.
        kernels::conv2d(x, &geo, weights, requant, case.clamp, out, &mut scratch[case.h % 4..])
    });
    let reference_kernel = run_codes(ho * wo * case.cout, case.out_bits, |out| {
        kernels::reference::conv2d(x, &geo, weights, requant, case.clamp, out)
    });
    let want = r::conv2d(
        input,
        &case.window,
        case.groups,
        case.cout,
        &packed,
        case.weight_bits,
        &case.requant,
        case.clamp,
    );
    assert_eq!(reference_kernel, want, "the reference kernel differs from the test's reference");
    (got, want)
}

/// Scratch of the size the selected conv variant needs (plus 3 spare bytes, so that callers can start it
/// at any alignment), filled with bytes that mean nothing.
fn garbage_scratch(geo: &ConvGeometry, weight_bits: u8) -> Vec<u8> {
    let n = kernels::conv_scratch_bytes(geo, weight_bits);
    (0..n + 3).map(|i| (i * 37 + 11) as u8).collect()
}

#[derive(Debug, Clone)]
enum FcCaseInput {
    Codes { bits: u8, codes: Vec<u8> },
    Sums(Vec<i32>),
}

#[derive(Debug, Clone)]
struct FcCase {
    input: FcCaseInput,
    outputs: usize,
    weight_bits: u8,
    weight_codes: Vec<u8>,
    requant: Vec<RequantParams>,
    kind: FcOutput,
}

/// `i32` sums within `[-bound, bound]`: signed, non-negative and small (as a global sum pool writes), or at
/// the bound itself.
fn sums(bound: i32, len: usize) -> impl Strategy<Value = Vec<i32>> {
    let small = bound.min(81 * 255);
    let one = prop_oneof![
        4 => -bound..=bound,
        3 => 0..=small,
        1 => Just(bound),
        1 => Just(-bound),
    ];
    prop_oneof![
        6 => prop::collection::vec(one, len),
        1 => Just(vec![bound; len]),
        1 => Just(vec![-bound; len]),
    ]
}

fn fc_case(sums_input: bool) -> impl Strategy<Value = FcCase> {
    let n = if sums_input { 1usize..=32 } else { 1usize..=96 };
    (n, 1usize..=10, 1u8..=8, 1u8..=8, 1u8..=8, any::<bool>())
        .prop_flat_map(move |(n, outputs, weight_bits, act_bits, out_bits, logits)| {
            let wmax = r::max_code(weight_bits) as i64;
            let (input, in_max) = if sums_input {
                let in_max = I32_MAX / (n as i64 * wmax);
                (sums(in_max as i32, n).prop_map(FcCaseInput::Sums).boxed(), in_max)
            } else {
                let in_max = r::max_code(act_bits) as i64;
                let input =
                    codes(act_bits, n).prop_map(move |codes| FcCaseInput::Codes { bits: act_bits, codes });
                (input.boxed(), in_max)
            };
            let bound = n as i64 * in_max * wmax;
            assert!(bound <= I32_MAX, "generator: fc accumulator bound {bound} exceeds i32");
            let typical = (n as f64).sqrt() * in_max as f64 * wmax as f64 / 3.0;
            let kind = if logits {
                Just(FcOutput::Logits).boxed()
            } else {
                clamp(out_bits).prop_map(FcOutput::Codes).boxed()
            };
            (
                input,
                Just(outputs),
                Just(weight_bits),
                codes(weight_bits, outputs * n),
                prop::collection::vec(requant_params(out_bits, typical, bound), outputs),
                kind,
            )
        })
        .prop_map(|(input, outputs, weight_bits, weight_codes, requant, kind)| FcCase {
            input,
            outputs,
            weight_bits,
            weight_codes,
            requant,
            kind,
        })
}

fn run_fc(case: &FcCase) -> (Vec<i32>, Vec<i32>) {
    let packed = kernel_weights(&case.weight_codes, case.weight_bits);
    let table = records(&case.requant);
    let weights = PackedWeights { bits: case.weight_bits, data: &packed };
    let requant = ChannelRequant { records: &table };
    let sum_bytes;
    let code_bytes;
    let (input, reference_input) = match &case.input {
        FcCaseInput::Codes { bits, codes } => {
            assert!(codes.iter().all(|&c| c as i32 <= r::max_code(*bits)));
            code_bytes = stored(codes, *bits);
            (
                FcInput::Codes { codes: Codes::new(&code_bytes, *bits), len: codes.len() },
                r::FcIn::Codes(codes),
            )
        }
        FcCaseInput::Sums(s) => {
            sum_bytes = le_bytes(s);
            (FcInput::SumsLe(&sum_bytes), r::FcIn::Sums(s))
        }
    };
    let fc = |bits: u8, out: &mut [u8]| {
        kernels::fully_connected(input, weights, requant, case.kind, case.outputs, bits, out)
    };
    let got = match case.kind {
        FcOutput::Codes(clamp) => {
            let bits = bits_for(clamp.max);
            let codes = run_codes(case.outputs, bits, |mut out| {
                let len = packed_len(case.outputs, bits);
                let mut bytes = vec![0u8; len];
                bytes.copy_from_slice(&out.as_codes().bytes()[..len]);
                fc(bits, &mut bytes);
                let got = Codes::new(&bytes, bits);
                (0..case.outputs).for_each(|i| out.set(i, got.get(i)));
            });
            codes.iter().map(|&c| c as i32).collect()
        }
        FcOutput::Logits => i32s_le(&run_twice(4 * case.outputs, |out| fc(8, out))),
    };
    let want = r::fully_connected(
        reference_input,
        &packed,
        case.weight_bits,
        &case.requant,
        case.kind,
        case.outputs,
    );
    (got, want)
}

#[derive(Debug, Clone)]
struct AddCase {
    a: Vec<u8>,
    b: Vec<u8>,
    /// The largest codes of `a` and `b` (their bit-widths).
    a_max: u8,
    b_max: u8,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
}

/// An input weight whose term stays within half of `i32::MAX` for codes up to `max`.
fn add_weight(max: i32) -> impl Strategy<Value = i32> {
    let lim = i32::MAX / 2 / max;
    prop_oneof![
        5 => -64..=64i32,
        2 => -lim..=lim,
        1 => Just(lim),
        1 => Just(-lim),
        1 => Just(0),
    ]
}

fn add_case() -> impl Strategy<Value = AddCase> {
    (1usize..=64, 1u8..=8, 1u8..=8, 1u8..=8)
        .prop_flat_map(|(len, a_bits, b_bits, out_bits)| {
            let (amax, bmax) = (r::max_code(a_bits), r::max_code(b_bits));
            (
                codes(a_bits, len),
                codes(b_bits, len),
                add_weight(amax),
                add_weight(bmax),
                Just((amax, bmax, out_bits)),
            )
        })
        .prop_flat_map(|(a, b, wa, wb, (amax, bmax, out_bits))| {
            let bound = amax as i64 * (wa as i64).abs() + bmax as i64 * (wb as i64).abs();
            assert!(bound <= I32_MAX, "generator: add accumulator bound {bound} exceeds i32");
            let typical = bound as f64 / 2.0;
            let maxes = (amax as u8, bmax as u8);
            (Just((a, b, maxes)), Just([wa, wb]), requant_params(out_bits, typical, bound), clamp(out_bits))
        })
        .prop_map(|((a, b, (a_max, b_max)), weights, requant, clamp)| AddCase {
            a,
            b,
            a_max,
            b_max,
            weights,
            requant,
            clamp,
        })
}

#[derive(Debug, Clone)]
struct PoolCase {
    h: usize,
    w: usize,
    c: usize,
    window: Window,
    act_bits: u8,
    input: Vec<u8>,
    requant: RequantParams,
    clamp: Clamp,
}

impl PoolCase {
    fn tensor(&self) -> Tensor<'_> {
        Tensor { data: &self.input, h: self.h, w: self.w, c: self.c }
    }

    fn geometry(&self) -> PoolGeometry {
        let [ho, wo] = r::out_hw(&self.window, self.h, self.w);
        PoolGeometry { input: hwc(&self.tensor()), output: Hwc::new(ho, wo, self.c), window: self.window }
    }
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (window(5), 1usize..=7, 1u8..=8, 1u8..=8)
        .prop_flat_map(|(win, c, ab, ob)| (Just((win, c, ab, ob)), extents(&win)))
        .prop_flat_map(|((window, c, act_bits, out_bits), (h, w))| {
            let taps = window.kernel[0] as i64 * window.kernel[1] as i64;
            let bound = taps * r::max_code(act_bits) as i64;
            assert!(bound <= I32_MAX);
            (
                Just((h, w, c, window, act_bits)),
                codes(act_bits, h * w * c),
                requant_params(out_bits, bound as f64 / 2.0, bound),
                clamp(out_bits),
            )
        })
        .prop_map(|((h, w, c, window, act_bits), input, requant, clamp)| PoolCase {
            h,
            w,
            c,
            window,
            act_bits,
            input,
            requant,
            clamp,
        })
}

/// Codes, their bit-width, and a random sub-range `start..start + x.len()` with inputs `x` for `dot_codes`.
fn packing_case() -> impl Strategy<Value = (u8, Vec<u8>, usize, Vec<u8>)> {
    (1u8..=8, 0usize..=40).prop_flat_map(|(bits, len)| {
        (Just(bits), codes(bits, len), 0..=len).prop_flat_map(move |(bits, codes, start)| {
            let x = prop::collection::vec(any::<u8>(), 0..=len - start);
            (Just(bits), Just(codes), Just(start), x)
        })
    })
}

// ---------------------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conv2d_grouped_matches_reference(case in conv_case(ConvKind::Grouped)) {
        let (got, want) = run_conv(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn conv2d_dense_matches_reference(case in conv_case(ConvKind::Dense)) {
        let (got, want) = run_conv(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn conv2d_depthwise_matches_reference(case in conv_case(ConvKind::Depthwise)) {
        prop_assert!(case.groups == case.cin && case.cin == case.cout);
        let (got, want) = run_conv(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn conv2d_pointwise_matches_reference(case in conv_case(ConvKind::Pointwise)) {
        let (got, want) = run_conv(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn fully_connected_codes_input_matches_reference(case in fc_case(false)) {
        let (got, want) = run_fc(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn fully_connected_sums_input_matches_reference(case in fc_case(true)) {
        let (got, want) = run_fc(&case);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn add_matches_reference(case in add_case()) {
        let (a_bits, b_bits, out_bits) = (bits_for(case.a_max), bits_for(case.b_max), bits_for(case.clamp.max));
        let (a, b) = (stored(&case.a, a_bits), stored(&case.b, b_bits));
        let (a, b) = (Codes::new(&a, a_bits), Codes::new(&b, b_bits));
        let got = run_codes(case.a.len(), out_bits, |out| {
            kernels::add(a, b, case.a.len(), case.weights, case.requant, case.clamp, out)
        });
        prop_assert_eq!(got, r::add(&case.a, &case.b, case.weights, case.requant, case.clamp));
    }

    #[test]
    fn max_pool_matches_reference(case in pool_case()) {
        let geo = case.geometry();
        let x = stored(&case.input, case.act_bits);
        let x = Codes::new(&x, case.act_bits);
        let got = run_codes(geo.output.elems(), case.act_bits, |out| kernels::max_pool(x, &geo, out));
        let max = r::max_code(case.act_bits);
        prop_assert!(got.iter().all(|&c| c as i32 <= max), "max pool left the input's bit-width");
        prop_assert_eq!(got, r::max_pool(case.tensor(), &case.window));
    }

    #[test]
    fn avg_pool_matches_reference(case in pool_case()) {
        let geo = case.geometry();
        let x = stored(&case.input, case.act_bits);
        let x = Codes::new(&x, case.act_bits);
        let got = run_codes(geo.output.elems(), bits_for(case.clamp.max), |out| {
            kernels::avg_pool(x, &geo, case.requant, case.clamp, out)
        });
        prop_assert_eq!(got, r::avg_pool(case.tensor(), &case.window, case.requant, case.clamp));
    }

    #[test]
    fn global_sum_pool_matches_reference(
        (h, w, c, bits, input) in (1usize..=16, 1usize..=16, 1usize..=16, 1u8..=8)
            .prop_flat_map(|(h, w, c, bits)| (Just(h), Just(w), Just(c), Just(bits), codes(bits, h * w * c)))
    ) {
        let tensor = Tensor { data: &input, h, w, c };
        let x = stored(&input, bits);
        let raw = run_twice(4 * c, |out| kernels::global_sum_pool(Codes::new(&x, bits), hwc(&tensor), out));
        prop_assert_eq!(i32s_le(&raw), r::global_sum_pool(tensor));
    }

    #[test]
    fn packing_matches_reference((bits, codes, start, x) in packing_case()) {
        // The runtime's packer writes the documented layout.
        let packed = kernel_weights(&codes, bits);
        prop_assert_eq!(&packed, &r::pack(&codes, bits));
        // Our unpacker reads back what we packed.
        prop_assert_eq!(&r::unpack(&packed, bits, codes.len()), &codes);
        // The runtime reads each code and value as the layout says.
        let weights = PackedWeights { bits, data: &packed };
        prop_assert_eq!(weights.capacity(), packed.len() * r::codes_per_byte(bits));
        prop_assert!(weights.capacity() >= codes.len());
        for (i, &k) in codes.iter().enumerate() {
            prop_assert_eq!(weights.code(i), k);
            prop_assert_eq!(weights.value(i), r::weight_value(k, bits));
        }
        // The code half of a dot product, from any offset.
        let want: i64 = x.iter().zip(&codes[start..]).map(|(&a, &k)| a as i64 * k as i64).sum();
        prop_assert_eq!(weights.dot_codes(&x, start) as i64, want);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Generator sanity: random requantization must not make the comparisons vacuous (all outputs on the clamp).

#[test]
fn generators_produce_outputs_inside_the_clamp() {
    let mut runner = TestRunner::deterministic();
    let strategy = conv_case(ConvKind::Grouped);
    let (mut inside, mut total) = (0usize, 0usize);
    for _ in 0..1000 {
        let case = strategy.new_tree(&mut runner).expect("generate a conv case").current();
        let (got, want) = run_conv(&case);
        assert_eq!(got, want);
        // Cases with the full output range: how often does the requantization land strictly inside it?
        if case.clamp.min == 0 && case.clamp.max as i32 == r::max_code(case.out_bits) && case.out_bits >= 2 {
            inside += got.iter().filter(|&&c| c > case.clamp.min && c < case.clamp.max).count();
            total += got.len();
        }
    }
    let share = inside as f64 / total as f64;
    assert!(share > 0.2, "only {:.1}% of conv outputs fall strictly inside the clamp", 100.0 * share);
}

// ---------------------------------------------------------------------------------------------------------
// Accumulators at the bound the load-time validation allows: `2 * sum(x * k)` overflows `i32` there, so the
// combine must wrap (an overflow check would panic in this test profile) and still be exact.

/// `N` with `N * 255 * 255 <= i32::MAX`: the widest 8-bit x 8-bit fan-in a model may have.
const WIDEST_FAN_IN: usize = (i32::MAX / (255 * 255)) as usize;
const WIDEST_ACC: i32 = WIDEST_FAN_IN as i32 * 255 * 255;

#[test]
fn fully_connected_at_the_accumulator_bound() {
    let n = WIDEST_FAN_IN;
    let input = vec![255u8; n];
    // Output 0: every weight +255; output 1: every weight -255.
    let mut codes = vec![255u8; n];
    codes.extend(vec![0u8; n]);
    let packed = kernel_weights(&codes, 8);
    let p = RequantParams { offset: 0, multiplier: 0, shift: 0 };
    let table = records(&[p, p]);
    let mut out = [0u8; 8];
    kernels::fully_connected(
        FcInput::Codes { codes: Codes::new(&input, 8), len: n },
        PackedWeights { bits: 8, data: &packed },
        ChannelRequant { records: &table },
        FcOutput::Logits,
        2,
        8,
        &mut out,
    );
    assert_eq!(i32s_le(&out), vec![WIDEST_ACC, -WIDEST_ACC]);
    let want = r::fully_connected(r::FcIn::Codes(&input), &packed, 8, &[p, p], FcOutput::Logits, 2);
    assert_eq!(want, vec![WIDEST_ACC, -WIDEST_ACC]);
}

#[test]
fn conv2d_at_the_accumulator_bound() {
    // A 1x1 conv over one pixel of `WIDEST_FAN_IN` channels. The offset brings the exact accumulator back to
    // 7, which the requantization passes through unchanged: any error in the accumulator shows.
    let cin = WIDEST_FAN_IN;
    let input = vec![255u8; cin];
    let mut codes = vec![255u8; cin];
    codes.extend(vec![0u8; cin]);
    let packed = kernel_weights(&codes, 8);
    // Scale 2^30 / 2^31 * 2^1 = 1: 2^30 product units per code.
    let identity = |units: i32| RequantParams { offset: (units as i64) << 30, multiplier: 1 << 30, shift: 1 };
    let params = [identity(7 - WIDEST_ACC), identity(7 + WIDEST_ACC)];
    let table = records(&params);
    let window = Window { kernel: [1, 1], stride: [1, 1], padding: Padding::default() };
    let geo = ConvGeometry {
        input: Hwc::new(1, 1, cin),
        output: Hwc::new(1, 1, 2),
        window,
        groups: 1,
        input_bits: 8,
    };
    let clamp = Clamp { min: 0, max: 255 };
    let mut out = [0u8; 2];
    let mut scratch = garbage_scratch(&geo, 8);
    kernels::conv2d(
        Codes::new(&input, 8),
        &geo,
        PackedWeights { bits: 8, data: &packed },
        ChannelRequant { records: &table },
        clamp,
        CodesMut::new(&mut out, 8),
        &mut scratch,
    );
    assert_eq!(out, [7, 7]);
    let tensor = Tensor { data: &input, h: 1, w: 1, c: cin };
    assert_eq!(r::conv2d(tensor, &window, 1, 2, &packed, 8, &params, clamp), vec![7, 7]);
}

#[test]
fn fully_connected_sums_at_the_accumulator_bound() {
    // One sum of magnitude `i32::MAX / 255` against 8-bit weights +255 and -255: `|acc| = 255 * s` is at the
    // bound, and for a negative sum `2 * sum(x * k)` overflows `i32` on the negative side.
    let s = i32::MAX / 255;
    let packed = kernel_weights(&[255, 0], 8);
    let p = RequantParams { offset: 0, multiplier: 0, shift: 0 };
    let table = records(&[p, p]);
    for sum in [s, -s] {
        let input = le_bytes(&[sum]);
        let mut out = [0u8; 8];
        kernels::fully_connected(
            FcInput::SumsLe(&input),
            PackedWeights { bits: 8, data: &packed },
            ChannelRequant { records: &table },
            FcOutput::Logits,
            2,
            8,
            &mut out,
        );
        let want = vec![255 * sum, -255 * sum];
        assert_eq!(i32s_le(&out), want);
        let reference = r::fully_connected(r::FcIn::Sums(&[sum]), &packed, 8, &[p, p], FcOutput::Logits, 2);
        assert_eq!(reference, want);
    }
}

#[test]
fn logits_saturate_acc_plus_offset() {
    // One input code 1 against weight +1 (1-bit code 1) and -1 (code 0): acc = +-1, offsets at the i32 ends
    // and beyond (a loaded model never has them: its logits bound includes |offset|).
    let packed = kernel_weights(&[1, 0], 1);
    for (offsets, want) in [
        ([i32::MAX as i64, i32::MIN as i64], [i32::MAX, i32::MIN]),
        ([MAX_OFFSET, -MAX_OFFSET], [i32::MAX, i32::MIN]),
        ([i64::MIN, i64::MAX], [i32::MIN, i32::MAX]),
        ([-(1i64 << 31), (1i64 << 31) - 1], [i32::MIN + 1, i32::MAX - 1]),
    ] {
        let params = offsets.map(|offset| RequantParams { offset, multiplier: 0, shift: 0 });
        let table = records(&params);
        let mut out = [0u8; 8];
        kernels::fully_connected(
            FcInput::Codes { codes: Codes::new(&[1], 1), len: 1 },
            PackedWeights { bits: 1, data: &packed },
            ChannelRequant { records: &table },
            FcOutput::Logits,
            2,
            8,
            &mut out,
        );
        assert_eq!(i32s_le(&out), want.to_vec(), "offsets {offsets:?}");
        let reference = r::fully_connected(r::FcIn::Codes(&[1]), &packed, 1, &params, FcOutput::Logits, 2);
        assert_eq!(reference, want.to_vec(), "offsets {offsets:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The worked example of docs/arithmetic.md.

const ARITHMETIC_MD: &str = include_str!("../../docs/arithmetic.md");

#[test]
fn worked_example_from_docs() {
    // Three 4-bit input codes, three 2-bit weight codes (one output channel).
    let x = [3u8, 15, 7];
    let k = [2u8, 0, 3];
    let packed = kernel_weights(&k, 2);
    assert_eq!(packed, vec![0x32]);
    assert_eq!(r::pack(&k, 2), vec![0b0011_0010]);
    let weights = PackedWeights { bits: 2, data: &packed };
    assert_eq!([weights.value(0), weights.value(1), weights.value(2)], [1, -3, 3]);
    // sum(x * k) = 27, sum(x) = 25, acc = 2 * 27 - 3 * 25 = -21 = 3 - 45 + 21.
    assert_eq!(weights.dot_codes(&x, 0), 27);
    let acc = -21;
    let p = RequantParams { offset: 74_625_056_768, multiplier: 1_610_612_736, shift: -1 };
    // The offset is 17.375 codes in product units (2^32 per code), 46 1/3 accumulator units.
    assert_eq!(74_625_056_768i64, 17 * (1 << 32) + 3 * (1 << 29));
    assert_eq!(74_625_056_768i64 * 3, 139 * 1_610_612_736);
    // acc * m + offset = -33822867456 + 74625056768 = 40802189312 = 9.5 * 2^32: a tie, rounded away from zero.
    assert_eq!(acc as i64 * 1_610_612_736, -33_822_867_456);
    assert_eq!(-33_822_867_456i64 + 74_625_056_768, 40_802_189_312);
    assert_eq!(40_802_189_312i64, 19 << 31);
    assert_eq!((40_802_189_312i64 + (1 << 31)) >> 32, 10);
    assert_eq!(qfd_runtime::requant::requantize(acc, p), 10);
    assert_eq!(r::requant(acc as i128, p), 10);
    // Format 1's whole-unit bias, round(46 1/3) = 46, folded into product units: 9.375, code 9.
    let whole_unit = RequantParams { offset: 46 * 1_610_612_736, ..p };
    assert_eq!(qfd_runtime::requant::requantize(acc, whole_unit), 9);
    // With offset -122943438848 (-76 1/3 units): -156766306304 = -36.5 * 2^32, rounded -37, clamped to 0.
    let negative = RequantParams { offset: -122_943_438_848, ..p };
    assert_eq!(-33_822_867_456i64 - 122_943_438_848, -156_766_306_304);
    assert_eq!(-156_766_306_304i64, -73 << 31);
    assert_eq!((-156_766_306_304i64 + (1 << 31) - 1) >> 32, -37);
    assert_eq!(qfd_runtime::requant::requantize(acc, negative), -37);
    assert_eq!(r::requant(acc as i128, negative), -37);
    assert_eq!(qfd_runtime::requant::requantize_to_code(acc, negative, 0, 15), 0);
    let clamp = Clamp { min: 0, max: 15 };
    let table = records(&[p]);
    let requant = ChannelRequant { records: &table };

    // As a 1x1 conv over one pixel of three channels.
    let window = Window { kernel: [1, 1], stride: [1, 1], padding: Padding::default() };
    let geo = ConvGeometry {
        input: Hwc::new(1, 1, 3),
        output: Hwc::new(1, 1, 1),
        window,
        groups: 1,
        input_bits: 4,
    };
    // The 4-bit codes as the arena stores them, two to a byte: 0xF3, 0x07.
    let xs = stored(&x, 4);
    assert_eq!(xs, vec![0xf3, 0x07]);
    let codes = Codes::new(&xs, 4);
    let mut out = [0u8; 1];
    let c = CodesMut::new(&mut out, 4);
    kernels::conv2d(codes, &geo, weights, requant, clamp, c, &mut garbage_scratch(&geo, 2));
    assert_eq!(out, [10]);
    let tensor = Tensor { data: &x, h: 1, w: 1, c: 3 };
    assert_eq!(r::conv2d(tensor, &window, 1, 1, &packed, 2, &[p], clamp), vec![10]);

    // As a fully connected layer: codes out; then logits out, with a logits record (offset 49 in
    // accumulator units): acc + offset = 28.
    let fc_in = FcInput::Codes { codes, len: 3 };
    kernels::fully_connected(fc_in, weights, requant, FcOutput::Codes(clamp), 1, 4, &mut out);
    assert_eq!(out, [10]);
    let logits_table = records(&[RequantParams { offset: 49, multiplier: 0, shift: 0 }]);
    let logits_requant = ChannelRequant { records: &logits_table };
    let mut logit = [0u8; 4];
    kernels::fully_connected(fc_in, weights, logits_requant, FcOutput::Logits, 1, 8, &mut logit);
    assert_eq!(i32::from_le_bytes(logit), 28);

    // Residual add: a = 9, b = 5, input weights [2, 3], acc = 33; offset -0.75 * 2^32, multiplier 2^30 with
    // shift -1: 33 * 2^30 - 0.75 * 2^32 = 7.5 * 2^32, a tie, rounded to 8.
    let add_p = RequantParams { offset: -3_221_225_472, multiplier: 1_073_741_824, shift: -1 };
    assert_eq!(-3_221_225_472i64, -3 << 30);
    assert_eq!(33 * 1_073_741_824i64 - 3_221_225_472, 32_212_254_720);
    assert_eq!(32_212_254_720i64, 15 << 31);
    let (a, b) = (Codes::new(&[9], 4), Codes::new(&[5], 4));
    let mut sum = [0u8; 1];
    kernels::add(a, b, 1, [2, 3], add_p, clamp, CodesMut::new(&mut sum, 4));
    assert_eq!(sum, [8]);
    assert_eq!(r::add(&[9], &[5], [2, 3], add_p, clamp), vec![8]);
    // With lA' = 0.16: offset round(-0.8 * 2^32) = -3435973837, sum 31997506355, 7.44999999995 -> 7; format
    // 1's bias round(-3.2) = -3 gave 7.5 -> 8.
    let add_16 = RequantParams { offset: -3_435_973_837, ..add_p };
    assert_eq!((-0.8f64 * 2f64.powi(32)).round() as i64, -3_435_973_837);
    assert_eq!(33 * 1_073_741_824i64 - 3_435_973_837, 31_997_506_355);
    kernels::add(a, b, 1, [2, 3], add_16, clamp, CodesMut::new(&mut sum, 4));
    assert_eq!(sum, [7]);
    assert_eq!(r::add(&[9], &[5], [2, 3], add_16, clamp), vec![7]);
    assert_eq!(r::add(&[9], &[5], [2, 3], RequantParams { offset: -3 << 30, ..add_p }, clamp), vec![8]);

    // The document states these same numbers.
    for line in [
        "input codes (4-bit): x = [3, 15, 7]",
        "weight codes (2-bit): k = [2, 0, 3]",
        "packed byte: 0x32 = 0b0011_0010",
        "weight values: w = 2k - 3 = [1, -3, 3]",
        "sum(x * k) = 27, sum(x) = 25",
        "accumulator: acc = 2 * 27 - 3 * 25 = -21",
        "requant: offset = 74625056768, multiplier = 1610612736, shift = -1",
        "divisor: 2^(31 - (-1)) = 2^32 = 4294967296   (offset = 17.375 * 2^32)",
        "product: acc * multiplier = -21 * 1610612736 = -33822867456",
        "sum: -33822867456 + 74625056768 = 40802189312",
        "exact quotient: 40802189312 / 4294967296 = 9.5 (a tie), rounded away from zero: 10",
        "(as implemented: (40802189312 + 2^31) >> 32 = 42949672960 >> 32 = 10)",
        "clamp [0, 15]",
        "final code: 10",
        "whole-unit bias `round(46 1/3) = 46`: `(-21 + 46) * 0.375 = 9.375`, code 9",
        "With `offset = -122943438848` instead (`-76 1/3` accumulator units), the sum is `-156766306304`, the quotient",
        "`-36.5`, a tie rounded to `-37` (as implemented: `(-156766306304 + 2^31 - 1) >> 32 = -37`)",
        "with `offset = 49`, `logit: acc + offset = 28`",
        "add inputs: a = 9, b = 5, input weights = [2, 3]",
        "add accumulator: 9 * 2 + 5 * 3 = 33",
        "add requant: offset = -3221225472, multiplier = 1073741824, shift = -1",
        "add sum: 33 * 1073741824 - 3221225472 = 32212254720",
        "add exact quotient: 32212254720 / 2^32 = 7.5 (a tie), rounded away from zero: 8",
        "add final code: 8",
        "`offset = round(-0.8 * 2^32) = -3435973837`, the sum",
        "`31997506355`, the quotient `7.44999999995`, code 7",
        "`round(-0.16 / 0.05) = round(-3.2) = -3`, gave `30 * 0.25 = 7.5` and code 8",
    ] {
        assert!(ARITHMETIC_MD.contains(line), "docs/arithmetic.md no longer states `{line}`");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Packed inputs read in place: 4-bit inputs against 4-bit weights (and 1 against 1) turn into lanes
// straight from the arena's words, and 2-bit inputs into the two-codes-per-lane format (1-bit ones there
// are unpacked first). The random cases
// above reach these forms only now and then; here every case does.

#[test]
fn packed_inputs_read_in_place_match_the_reference() {
    use qfd_runtime::kernels::select::{conv_variant, ConvVariant};
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut checked = 0;
    for case in 0..240 {
        let (wbits, abits) = [(4u8, 4u8), (1, 1), (2, 2), (2, 1)][case % 4];
        let per_word = if wbits == 2 { 16 } else { 32 / wbits as usize };
        let cin = per_word * (1 + case / 4 % 3);
        let k = [1 + (case / 12 % 3) as u8; 2];
        let stride = [1 + (case / 36 % 2) as u8; 2];
        let pad = (case / 72 % 2) as u8 * (k[0] / 2);
        let window =
            Window { kernel: k, stride, padding: Padding { top: pad, left: pad, bottom: pad, right: pad } };
        let (h, w, cout) = (3 + case % 5, 4 + case % 3, 1 + case % 7);
        let [ho, wo] = r::out_hw(&window, h, w);
        let geo = ConvGeometry {
            input: Hwc::new(h, w, cin),
            output: Hwc::new(ho, wo, cout),
            window,
            groups: 1,
            input_bits: abits,
        };
        let x: Vec<u8> = (0..h * w * cin).map(|_| (next() & r::max_code(abits) as u32) as u8).collect();
        let codes: Vec<u8> =
            (0..cout * geo.patch_len()).map(|_| (next() & r::max_code(wbits) as u32) as u8).collect();
        let packed = kernel_weights(&codes, wbits);
        let weights = PackedWeights { bits: wbits, data: &packed };
        // One output code per accumulator unit, centred: an accumulator off by one shows.
        let params: Vec<_> =
            (0..cout).map(|_| RequantParams { offset: 7 << 31, multiplier: 1 << 30, shift: 0 }).collect();
        let table = records(&params);
        let requant = ChannelRequant { records: &table };
        let clamp = Clamp { min: 0, max: 15 };
        let stored_x = stored(&x, abits);
        let input = Codes::new(&stored_x, abits);
        let mut scratch = garbage_scratch(&geo, wbits);
        let got = run_codes(ho * wo * cout, 4, |out| {
            kernels::conv2d(input, &geo, weights, requant, clamp, out, &mut scratch[case % 4..])
        });
        let tensor = Tensor { data: &x, h, w, c: cin };
        let want = r::conv2d(tensor, &window, 1, cout, &packed, wbits, &params, clamp);
        assert_eq!(got, want, "case {case}: W{wbits}A{abits}, {h}x{w}x{cin} -> {cout}, {window:?}");
        // 1-bit inputs against the two-codes-per-lane format are unpacked first (the fallback, checked too).
        let in_place = matches!(conv_variant(&geo, wbits), ConvVariant::Gemm(plan) if plan.direct);
        assert_eq!(in_place, abits == wbits, "case {case}: W{wbits}A{abits} read in place: {in_place}");
        checked += 1;
    }
    assert_eq!(checked, 240);
}
