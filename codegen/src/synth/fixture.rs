//! The fixture of every op kind that the robustness, fuzzing and code generation tests share.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use qfd_runtime::format::{Clamp, FcOutput, Padding, Window};
use qfd_runtime::requant::RequantParams;
use qfd_runtime::weights::max_code;

use crate::fixed_point::{quantize_multiplier, requant_for};
use crate::graph::{ConvSpec, FcSpec, Graph, GraphMeta};

/// A small model using every op kind (the reference architectures have no max or average pool), FC layers reading both codes and `i32` sums, a 6-bit input and weight
/// widths 2, 3, 5, 6 and 7: the fixture that robustness, fuzzing and code generation tests share.
/// The builder calls cannot fail for these fixed shapes.
pub fn all_ops(seed: u64) -> Graph {
    let mut rng = SmallRng::seed_from_u64(seed);
    let meta = GraphMeta {
        arch: "all-ops".into(),
        dataset: "synthetic".into(),
        weight_bits: 3,
        act_bits: 5,
        mean: vec![0.5; 2],
        std: vec![0.25; 2],
        logit_scale: 0.5,
        class_names: (0..5).map(|i| format!("c{i}")).collect(),
        fake_quant_accuracy: Some(0.5),
        integer_accuracy: None,
    };
    let mut g = Graph::new([10, 10, 2], 6, meta);
    let codes = |rng: &mut SmallRng, n: usize, bits: u8| -> Vec<u8> {
        (0..n).map(|_| rng.gen_range(0..=max_code(bits)) as u8).collect()
    };
    let requant = |rng: &mut SmallRng, n: usize, scale: f64, offset: f64| -> Vec<RequantParams> {
        (0..n)
            .map(|_| requant_for(scale * rng.gen_range(0.8..1.25), offset).expect("representable"))
            .collect()
    };
    let window = |k: [u8; 2], s: [u8; 2], p: [u8; 4]| Window {
        kernel: k,
        stride: s,
        padding: Padding { top: p[0], left: p[1], bottom: p[2], right: p[3] },
    };
    let clamp = |bits: u8| Clamp { min: 0, max: max_code(bits) as u8 };
    let x = g.input_id();
    let spec = ConvSpec {
        out_channels: 4,
        window: window([3, 3], [1, 1], [1, 1, 1, 1]),
        groups: 1,
        weight_bits: 3,
        weight_codes: codes(&mut rng, 4 * 9 * 2, 3),
        requant: requant(&mut rng, 4, 31.0 / 1200.0, 15.0),
        clamp: clamp(5),
        out_bits: 5,
    };
    let c1 = g.conv2d("conv1", x, spec).expect("the all-ops fixture is well-formed");
    let mp = g
        .max_pool("maxpool", c1, window([2, 2], [2, 2], [0, 0, 0, 0]))
        .expect("the all-ops fixture is well-formed");
    let avg_rq = requant_for(1.0 / 9.0, 0.0).expect("the all-ops fixture is well-formed");
    let ap = g
        .avg_pool("avgpool", mp, window([3, 3], [1, 1], [1, 1, 1, 1]), avg_rq, clamp(5), 5)
        .expect("the all-ops fixture is well-formed");
    let (m, s) = quantize_multiplier(0.25).expect("the all-ops fixture is well-formed");
    let add_rq = RequantParams { offset: 0, multiplier: m, shift: s };
    let add = g
        .add("add", [ap, mp], [1, 1], add_rq, Clamp { min: 1, max: 14 }, 4)
        .expect("the all-ops fixture is well-formed");
    let spec = ConvSpec {
        out_channels: 6,
        window: window([3, 3], [2, 2], [1, 0, 1, 2]),
        groups: 2,
        weight_bits: 6,
        weight_codes: codes(&mut rng, 6 * 9 * 2, 6),
        requant: requant(&mut rng, 6, 127.0 / 2000.0, 60.0),
        clamp: clamp(7),
        out_bits: 7,
    };
    let grouped = g.conv2d("grouped", add, spec).expect("the all-ops fixture is well-formed");
    let spec = ConvSpec {
        out_channels: 6,
        window: window([1, 3], [1, 1], [0, 1, 0, 1]),
        groups: 6,
        weight_bits: 7,
        weight_codes: codes(&mut rng, 6 * 3, 7),
        requant: requant(&mut rng, 6, 255.0 / 40000.0, 128.0),
        clamp: clamp(8),
        out_bits: 8,
    };
    let dw = g.conv2d("depthwise", grouped, spec).expect("the all-ops fixture is well-formed");
    let pool = g.global_sum_pool("pool", dw).expect("the all-ops fixture is well-formed");
    let spec = FcSpec {
        outputs: 8,
        weight_bits: 2,
        weight_codes: codes(&mut rng, 8 * 6, 2),
        requant: requant(&mut rng, 8, 7.0 / 20000.0, 3.5),
        output: FcOutput::Codes(clamp(3)),
        out_bits: 3,
    };
    let fc1 = g.fully_connected("fc1", pool, spec).expect("the all-ops fixture is well-formed");
    let spec = FcSpec {
        outputs: 5,
        weight_bits: 5,
        weight_codes: codes(&mut rng, 5 * 8, 5),
        requant: (0..5).map(|i| RequantParams { offset: i * 10 - 20, multiplier: 0, shift: 0 }).collect(),
        output: FcOutput::Logits,
        out_bits: 8,
    };
    g.fully_connected("fc2", fc1, spec).expect("the all-ops fixture is well-formed");
    g
}
