//! codegen -> `.qfdm` file on disk (written by the host's `write_atomic`) -> runtime, for every architecture
//! at several bit-widths.

use qfd_codegen::encode_model;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_host::fsutil::{read, write_atomic};
use qfd_runtime::{Model, RunError};
use qfd_tests::{run_on_host, test_input, HostRunError};

/// Small but complete configurations, so the whole matrix runs in seconds.
fn config(arch: Arch, (weight_bits, act_bits): (u8, u8), seed: u64) -> SynthConfig {
    let (input, width) = match arch {
        Arch::ResNet8 | Arch::ResNet20 => ([32, 32, 3], 1.0),
        Arch::MobileNetV1 => ([48, 48, 3], 0.25),
        Arch::MobileNetV2 => ([32, 32, 3], 0.35),
        Arch::Vit => ([28, 28, 1], 1.0),
    };
    SynthConfig { weight_bits, act_bits, width, seed, ..SynthConfig::new(arch, input) }
}

const BITS: [(u8, u8); 5] = [(8, 8), (4, 4), (4, 8), (2, 2), (1, 1)];

fn synth_bytes(config: &SynthConfig) -> Vec<u8> {
    let graph = synth(config).unwrap_or_else(|e| panic!("{config:?}: {e}"));
    encode_model(&graph).unwrap_or_else(|e| panic!("{config:?}: {e}"))
}

#[test]
fn every_architecture_and_bit_width_runs_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        for bits in BITS {
            let config = config(arch, bits, 1);
            let path = dir.path().join(format!("{arch}-w{}a{}.qfdm", bits.0, bits.1));
            write_atomic(&path, &synth_bytes(&config)).unwrap();
            let bytes = read(&path).unwrap();
            let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{arch} {bits:?}: {e}"));
            assert_eq!(model.desc().meta.arch, arch.name());
            assert_eq!((model.desc().meta.weight_bits, model.desc().meta.act_bits), bits);
            assert_eq!(model.num_classes(), config.classes);

            let inputs: Vec<Vec<u8>> = (0..3).map(|s| test_input(model.input_len(), 8, s)).collect();
            let first: Vec<_> = inputs.iter().map(|x| run_on_host(&bytes, x).unwrap()).collect();
            for (x, expected) in inputs.iter().zip(&first) {
                assert_eq!(&run_on_host(&bytes, x).unwrap(), expected, "{arch} {bits:?}: not deterministic");
                assert!(expected.class < config.classes);
            }
            if bits.1 >= 4 {
                // Random weights still make the logits depend on the pixels.
                assert!(first.windows(2).any(|w| w[0].logits != w[1].logits), "{arch} {bits:?}: constant");
            }
        }
    }
}

#[test]
fn the_arena_the_model_states_is_enough_and_needed() {
    for arch in Arch::ALL {
        let bytes = synth_bytes(&config(arch, (4, 4), 0));
        let model = Model::load(&bytes).unwrap();
        let input = test_input(model.input_len(), 8, 0);
        let mut logits = vec![0; model.num_classes()];
        let mut arena = vec![0u8; model.arena_size() - 1];
        let err = model.run(&input, &mut arena, &mut logits);
        assert_eq!(err, Err(RunError::ArenaTooSmall { needed: model.arena_size(), found: arena.len() }));
        // A dirty arena gives the same answer as a clean one: nothing reads memory it did not write.
        let clean = run_on_host(&bytes, &input).unwrap();
        let mut dirty = vec![0xA5u8; model.arena_size()];
        let class = model.run(&input, &mut dirty, &mut logits).unwrap();
        assert_eq!((class, &logits), (clean.class, &clean.logits), "{arch}");
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    for arch in Arch::ALL {
        for bits in [(8, 8), (2, 2)] {
            let a = synth_bytes(&config(arch, bits, 5));
            assert_eq!(a, synth_bytes(&config(arch, bits, 5)), "{arch} {bits:?}");
            assert_ne!(a, synth_bytes(&config(arch, bits, 6)), "{arch} {bits:?}");
        }
    }
}

#[test]
fn a_file_cut_anywhere_is_refused_without_panicking() {
    let bytes = synth_bytes(&config(Arch::ResNet8, (2, 2), 0));
    let input = test_input(32 * 32 * 3, 8, 0);
    // Every cut in the header and a spread of cuts through the payload.
    let cuts = (0..64).chain((64..bytes.len()).step_by(997));
    for cut in cuts {
        match run_on_host(&bytes[..cut], &input) {
            Err(HostRunError::Load(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}
