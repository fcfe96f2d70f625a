//! The burn engine against the runtime: every logit of every image equal, for every synthetic architecture
//! at every bit-width, for the fixture of every op kind, in both requantization forms; and clear refusals.

use qfd_accel::{AccelError, Backend, Engine, RequantForm};
use qfd_codegen::encode::encode_model;
use qfd_codegen::synth::{all_ops, synth, Arch, SynthConfig};
use qfd_runtime::Model;

/// `n` inputs of `model` drawn from a simple generator, codes within the input's bit-width.
fn inputs(model: &Model<'_>, n: usize, seed: u64) -> Vec<u8> {
    let bits = match model.desc().values[0].elem {
        qfd_runtime::format::ElemType::Codes { bits } => bits,
        qfd_runtime::format::ElemType::I32 => unreachable!("inputs are codes"),
    };
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n * model.input_len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as u8 >> (8 - bits)
        })
        .collect()
}

/// The logits of `Model::run` for each image, concatenated.
fn runtime_logits(model: &Model<'_>, images: &[u8]) -> Vec<i32> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = Vec::new();
    for image in images.chunks_exact(model.input_len()) {
        let mut logits = vec![0i32; model.num_classes()];
        model.run(image, &mut arena, &mut logits).unwrap();
        out.extend(logits);
    }
    out
}

/// The CPU backend in both forms of requantization.
const CPU_BOTH_FORMS: [(Backend, RequantForm); 2] =
    [(Backend::Flex, RequantForm::Wide), (Backend::Flex, RequantForm::Thresholds)];

/// Asserts that the engine on each of `engines` gives the runtime's logits for `n` inputs of `bytes`.
fn assert_parity_on(engines: &[(Backend, RequantForm)], name: &str, bytes: &[u8], n: usize) {
    let model = Model::load(bytes).unwrap();
    let images = inputs(&model, n, bytes.len() as u64);
    let expected = runtime_logits(&model, &images);
    // The logits must not all be equal, or the comparison would prove little.
    assert!(expected.iter().any(|&l| l != expected[0]), "{name}: constant logits");
    for &(backend, form) in engines {
        let engine = Engine::with_requant(&model, backend, form).unwrap();
        let logits = engine.logits(&images).unwrap();
        assert_eq!(logits, expected, "{name}, {backend} {form:?}: logits differ from the runtime's");
    }
}

fn assert_parity(name: &str, bytes: &[u8], n: usize) {
    assert_parity_on(&CPU_BOTH_FORMS, name, bytes, n);
}

#[test]
fn every_synthetic_architecture_at_every_bit_width_matches_the_runtime() {
    for arch in [Arch::ResNet8, Arch::ResNet20, Arch::MobileNetV1, Arch::MobileNetV2] {
        for bits in 1..=8 {
            let mut config = SynthConfig::new(arch, [16, 16, 3]);
            (config.weight_bits, config.act_bits) = (bits, bits);
            config.width = 0.5;
            config.seed = u64::from(bits);
            let bytes = encode_model(&synth(&config).unwrap()).unwrap();
            assert_parity(&format!("{arch} W{bits}A{bits}"), &bytes, 3);
        }
    }
    // Mixed widths: weights and activations of different bits.
    for (w, a) in [(1, 8), (8, 1), (2, 5), (7, 3)] {
        let mut config = SynthConfig::new(Arch::ResNet8, [16, 16, 3]);
        (config.weight_bits, config.act_bits) = (w, a);
        let bytes = encode_model(&synth(&config).unwrap()).unwrap();
        assert_parity(&format!("resnet8 W{w}A{a}"), &bytes, 3);
    }
}

#[test]
fn the_fixture_of_every_op_kind_matches_the_runtime() {
    for seed in 0..4 {
        let bytes = encode_model(&all_ops(seed)).unwrap();
        assert_parity(&format!("all-ops seed {seed}"), &bytes, 16);
    }
}

#[test]
fn a_batch_gives_what_each_image_gives_alone() {
    let bytes = encode_model(&all_ops(7)).unwrap();
    let model = Model::load(&bytes).unwrap();
    let engine = Engine::new(&model, Backend::Flex).unwrap();
    let images = inputs(&model, 5, 1);
    let batch = engine.logits(&images).unwrap();
    let alone: Vec<i32> =
        images.chunks_exact(model.input_len()).flat_map(|image| engine.logits(image).unwrap()).collect();
    assert_eq!(batch, alone);
    let classes = engine.predict(&images).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    for (image, class) in images.chunks_exact(model.input_len()).zip(classes) {
        let mut logits = vec![0i32; model.num_classes()];
        assert_eq!(model.run(image, &mut arena, &mut logits).unwrap(), class);
    }
    assert!(engine.logits(&[]).unwrap().is_empty());
}

#[test]
fn what_the_engine_cannot_run_is_refused_with_a_reason() {
    // A transformer: the engine names its first transformer op.
    let vit = encode_model(&synth(&SynthConfig::new(Arch::Vit, [28, 28, 1])).unwrap()).unwrap();
    let model = Model::load(&vit).unwrap();
    let (first, kind) = model
        .desc()
        .ops
        .iter()
        .map(|op| op.kind())
        .enumerate()
        .find(|(_, k)| {
            ["layer_norm", "channel_add", "attention_scores", "softmax", "attention_values", "lookup"]
                .contains(k)
        })
        .unwrap();
    let err = Engine::new(&model, Backend::Flex).unwrap_err();
    assert_eq!(err, AccelError::UnsupportedOp { op: first, kind });
    let text = err.to_string();
    assert!(text.contains(&format!("op {first} ({kind})")) && text.contains("--engine runtime"), "{text}");

    let bytes = encode_model(&all_ops(0)).unwrap();
    let model = Model::load(&bytes).unwrap();
    let engine = Engine::new(&model, Backend::Flex).unwrap();
    let len = engine.input_len();
    assert_eq!(
        engine.logits(&vec![0; len + 1]).unwrap_err(),
        AccelError::InputLength { image_len: len, found: len + 1 }
    );
    // The fixture's input has 6 bits: 64 is out of range.
    let mut images = vec![0u8; 2 * len];
    images[len + 3] = 64;
    assert_eq!(
        engine.logits(&images).unwrap_err(),
        AccelError::InputCodeOutOfRange { image: 1, index: 3, code: 64, bits: 6 }
    );
    for backend in [Backend::Wgpu, Backend::Cuda] {
        if !backend.is_built() {
            let err = Engine::new(&model, backend).unwrap_err();
            assert!(matches!(err, AccelError::NotBuilt { .. }), "{err:?}");
            assert!(err.to_string().contains(&format!("--features {backend}")), "{err}");
        }
    }
}

/// The wgpu backend has no 64-bit integers, so it requantizes by thresholds. CI builds it and runs it on
/// Mesa's software Vulkan driver (lavapipe); on a machine without any Vulkan device this test fails.
#[cfg(feature = "wgpu")]
#[test]
fn the_wgpu_backend_matches_the_runtime() {
    let wgpu = [(Backend::Wgpu, RequantForm::for_backend(Backend::Wgpu))];
    assert_eq!(wgpu[0].1, RequantForm::Thresholds);
    for (arch, bits) in [(Arch::ResNet8, 4), (Arch::MobileNetV1, 1)] {
        let mut config = SynthConfig::new(arch, [16, 16, 3]);
        (config.weight_bits, config.act_bits, config.width) = (bits, bits, 0.5);
        let bytes = encode_model(&synth(&config).unwrap()).unwrap();
        assert_parity_on(&wgpu, &format!("{arch} W{bits}A{bits}"), &bytes, 4);
    }
    assert_parity_on(&wgpu, "all-ops", &encode_model(&all_ops(1)).unwrap(), 16);
}

#[test]
fn backend_names_parse() {
    for backend in Backend::ALL {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
    }
    assert_eq!("ndarray".parse::<Backend>(), Ok(Backend::Flex));
    assert!("tpu".parse::<Backend>().unwrap_err().contains("flex, wgpu or cuda"));
}
