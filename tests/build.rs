//! Two jobs: the libtorch rpath these test binaries need (they link libtorch through `qfd-host`), and the
//! models of `tests/codegen.rs`: each is synthesised here, written as `<name>.qfdm`, and turned into Rust
//! by `qfd-codegen` as `<name>.rs` in OUT_DIR, which the test compiles in and runs against the
//! interpreter.

mod torch_rpath {
    include!("../host/build.rs");
}

use std::{env, fs, path::PathBuf};

use qfd_codegen::synth::{all_ops, synth, Arch, SynthConfig};
use qfd_codegen::{emit_rust, encode_model};

/// One synthetic model: name, architecture, input, weight and activation bits, width.
type ModelSpec = (&'static str, Arch, [usize; 3], u8, u8, f32);

const MODELS: &[ModelSpec] = &[
    ("resnet8_w4a4", Arch::ResNet8, [16, 16, 3], 4, 4, 1.0),
    ("resnet8_w8a8", Arch::ResNet8, [16, 16, 3], 8, 8, 1.0),
    ("resnet8_w2a2", Arch::ResNet8, [12, 12, 1], 2, 2, 1.0),
    ("resnet8_w1a3", Arch::ResNet8, [12, 12, 1], 1, 3, 1.0),
    ("resnet20_w4a4", Arch::ResNet20, [12, 12, 3], 4, 4, 1.0),
    ("mobilenetv1_w8a8", Arch::MobileNetV1, [32, 32, 3], 8, 8, 0.25),
    ("mobilenetv2_w4a4", Arch::MobileNetV2, [32, 32, 3], 4, 4, 0.35),
    ("vit_w8a8", Arch::Vit, [28, 28, 1], 8, 8, 1.0),
    ("vit_w4a4", Arch::Vit, [16, 16, 3], 4, 4, 1.0),
];

fn main() {
    torch_rpath::main();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut files = vec![("all_ops".to_string(), encode_model(&all_ops(11)).expect("the fixture encodes"))];
    for &(name, arch, input, wbits, abits, width) in MODELS {
        let mut config = SynthConfig::new(arch, input);
        (config.weight_bits, config.act_bits, config.width, config.seed) = (wbits, abits, width, 5);
        let graph = synth(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        files.push((name.to_string(), encode_model(&graph).unwrap_or_else(|e| panic!("{name}: {e}"))));
    }
    for (name, bytes) in files {
        let code = emit_rust(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        fs::write(out.join(format!("{name}.qfdm")), &bytes).expect("OUT_DIR is writable");
        fs::write(out.join(format!("{name}.rs")), code).expect("OUT_DIR is writable");
    }
}
