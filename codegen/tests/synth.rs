//! Synthetic models of every architecture build, load and run, with the sizes the papers give.

use qfd_codegen::encode_model;
use qfd_codegen::stats::{op_stats, total_macs};
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_runtime::Model;

fn build(arch: Arch, input: [usize; 3], width: f32, bits: u8) -> Vec<u8> {
    let mut cfg = SynthConfig::new(arch, input);
    cfg.width = width;
    cfg.weight_bits = bits;
    cfg.act_bits = bits;
    encode_model(&synth(&cfg).unwrap()).unwrap()
}

fn run_random(model: &Model<'_>, seed: u8) -> (usize, Vec<i32>, Vec<Vec<u8>>) {
    let input: Vec<u8> =
        (0..model.input_len()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let mut layers = Vec::new();
    let class = model
        .run_traced(&input, &mut arena, &mut logits, |_, _, out| {
            if let qfd_runtime::LayerOutput::Codes(c) = out {
                layers.push((0..c.capacity()).map(|i| c.get(i)).collect());
            }
        })
        .unwrap();
    (class, logits, layers)
}

#[test]
fn resnet8_matches_mlperf_tiny_and_fits_48_kib() {
    let bytes = build(Arch::ResNet8, [32, 32, 3], 1.0, 8);
    let model = Model::load(&bytes).unwrap();
    let macs = total_macs(model.desc());
    assert_eq!(macs, 12_501_632, "MLPerf Tiny ResNet-8 has 12.50 M MACs");
    let params: u64 = op_stats(model.desc()).iter().map(|s| s.params).sum();
    // 77.7 K parameters including BatchNorm; the folded model has the conv and FC weights only.
    assert!((74_000..78_000).contains(&params), "{params}");
    // Tensors in 48 KiB (three 16 KiB buffers, as CMSIS-NN's), plus the kernels' scratch in under 3 KB.
    assert!(model.values_size() <= 48 * 1024, "tensors {} > 48 KiB", model.values_size());
    assert!(model.scratch_size() <= 3000, "kernel scratch {} > 3 KB", model.scratch_size());
    assert_eq!(model.arena_size(), model.values_size() + model.scratch_size());
}

#[test]
fn every_architecture_runs_and_its_activations_are_alive() {
    for (arch, input, width) in [
        (Arch::ResNet8, [32, 32, 3], 1.0),
        (Arch::ResNet20, [28, 28, 1], 1.0),
        (Arch::MobileNetV1, [96, 96, 3], 0.25),
        (Arch::MobileNetV2, [32, 32, 3], 0.35),
    ] {
        for bits in [8, 4, 2, 1] {
            let bytes = build(arch, input, width, bits);
            let model = Model::load(&bytes).unwrap();
            let (_, logits, layers) = run_random(&model, 7);
            let max = (1u16 << bits) - 1;
            for (i, codes) in layers.iter().enumerate() {
                let distinct = codes.iter().collect::<std::collections::BTreeSet<_>>().len();
                assert!(
                    codes.iter().all(|&c| c as u16 <= max),
                    "{arch} W{bits}A{bits} layer {i}: code above {max}"
                );
                // Plausible requantization: no layer collapses to a constant.
                assert!(distinct > 1 || codes.len() == 1, "{arch} W{bits}A{bits} layer {i} is constant");
            }
            assert!(logits.iter().any(|&l| l != logits[0]), "{arch}: all logits equal");
        }
    }
}

#[test]
fn mobilenetv1_025_at_96_is_the_visual_wake_words_size() {
    let bytes = build(Arch::MobileNetV1, [96, 96, 3], 0.25, 8);
    let model = Model::load(&bytes).unwrap();
    let macs = total_macs(model.desc()) as f64 / 1e6;
    assert!((7.0..8.0).contains(&macs), "{macs} M MACs");
    // The largest two tensors alive together: block 0's 48x48x8 depthwise output and 48x48x16 pointwise
    // output (18,432 + 36,864 bytes). The planner reaches that lower bound.
    assert_eq!(model.values_size(), 18_432 + 36_864);
}

#[test]
fn same_config_gives_byte_identical_files() {
    let a = build(Arch::ResNet20, [32, 32, 3], 1.0, 4);
    let b = build(Arch::ResNet20, [32, 32, 3], 1.0, 4);
    assert_eq!(a, b);
}

#[test]
fn the_vit_has_its_planned_ops_and_macs_and_every_layer_is_alive() {
    for bits in [8, 4] {
        let bytes = build(Arch::Vit, [28, 28, 1], 1.0, bits);
        let model = Model::load(&bytes).unwrap();
        // Defaults: patch 4 (49 tokens), width 64, depth 4, 4 heads, MLP 4x, 10 classes.
        let (t, c, depth, hidden) = (49u64, 64u64, 4u64, 256u64);
        let block = 4 * t * c * c + 2 * t * t * c + 2 * t * c * hidden;
        let expected = t * c * 16 + t * c * 9 + depth * block + c * 10;
        assert_eq!(total_macs(model.desc()), expected, "W{bits}A{bits}");
        let kinds: Vec<&str> = model.desc().ops.iter().map(|op| op.kind()).collect();
        let count = |k: &str| kinds.iter().filter(|&&x| x == k).count();
        assert_eq!(
            [
                count("layer_norm"),
                count("attention_scores"),
                count("softmax"),
                count("lookup"),
                count("channel_add")
            ],
            [2 * 4 + 1, 4, 4, 4, 2 * 4 + 1]
        );
        for seed in [3, 9] {
            let (_, logits, layers) = run_random(&model, seed);
            for (i, codes) in layers.iter().enumerate() {
                let distinct = codes.iter().collect::<std::collections::BTreeSet<_>>().len();
                assert!(distinct > 1, "W{bits}A{bits} layer {i} ({}) is constant", kinds[i]);
            }
            assert!(logits.iter().any(|&l| l != logits[0]), "all logits equal");
        }
    }
}
