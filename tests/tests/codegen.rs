//! Generated code computes what the interpreter computes, bit for bit: the same logits and class, and the
//! same output at every layer, for every model `build.rs` generated (all architectures, bit-widths 1-8, and
//! a fixture with every op kind). The modules are compiled with `deny(warnings)`: generated code must
//! compile clean.

use qfd_runtime::kernels::select::Core;
use qfd_runtime::{LayerOutput, Model};
use qfd_tests::test_input;

/// One generated model: its module, and the file it was generated from.
macro_rules! generated {
    ($($name:ident),* $(,)?) => {
        $(
            #[deny(warnings)]
            #[allow(dead_code)] // each test reads only part of a module's constants
            mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
                pub const FILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".qfdm"));
            }
        )*
    };
}

generated!(
    all_ops,
    resnet8_w4a4,
    resnet8_w8a8,
    resnet8_w2a2,
    resnet8_w1a3,
    resnet20_w4a4,
    mobilenetv1_w8a8,
    mobilenetv2_w4a4,
    vit_w8a8,
    vit_w4a4
);

/// A layer's output as owned `i32`s, whatever its element type.
fn values(out: LayerOutput<'_>) -> Vec<i32> {
    let n = match out {
        // Packed tensors' unused slots included: they are cleared, so both runs must agree on them too.
        LayerOutput::Codes(c) => c.capacity(),
        LayerOutput::I32Le(b) => b.len() / 4,
    };
    (0..n).map(|i| out.i32_at(i)).collect()
}

/// Runs `inputs` random inputs through the generated `infer_in` and the interpreter and compares logits,
/// class and every layer's output. `$m` is a generated module.
macro_rules! check_against_interpreter {
    ($m:ident, $inputs:expr) => {{
        let model = Model::load($m::FILE).unwrap();
        // The generated arena fits the kernels of any core (`emit_rust`), the interpreter's this one's.
        let any_core = Core::ALL.iter().map(|&core| model.arena_size_on(core)).max().unwrap();
        assert_eq!(
            ($m::INPUT_LEN, $m::NUM_CLASSES, $m::ARENA_SIZE),
            (model.input_len(), model.num_classes(), any_core)
        );
        assert!(any_core >= model.arena_size());
        assert_eq!($m::NUM_LAYERS, model.desc().ops.len());
        assert_eq!($m::MACS, qfd_codegen::stats::total_macs(model.desc()));
        for (kind, op) in $m::LAYER_KINDS.iter().zip(&model.desc().ops) {
            assert_eq!(*kind, op.kind());
        }
        let mut arena = vec![0u8; model.arena_size()];
        let mut own_arena = Box::new([0u8; $m::ARENA_SIZE]);
        for seed in 0..$inputs {
            let input: [u8; $m::INPUT_LEN] =
                test_input($m::INPUT_LEN, $m::INPUT_BITS, seed).try_into().unwrap();
            let mut expected_layers = Vec::new();
            let mut expected = [0i32; $m::NUM_CLASSES];
            let class = model
                .run_traced(&input, &mut arena, &mut expected, |_, _, out| expected_layers.push(values(out)))
                .unwrap();
            let mut layers = Vec::new();
            let mut logits = [0i32; $m::NUM_CLASSES];
            let generated_class = $m::infer_in(&mut own_arena, &input, &mut logits, |i, out| {
                assert_eq!(i, layers.len(), "layers are traced in order");
                layers.push(values(out));
            });
            assert_eq!(layers.len(), expected_layers.len());
            for (i, (got, want)) in layers.iter().zip(&expected_layers).enumerate() {
                assert!(
                    got == want,
                    "{} input {seed}: layer {i} ({}) differs",
                    stringify!($m),
                    $m::LAYER_KINDS[i]
                );
            }
            assert_eq!((generated_class, logits), (class, expected), "{} input {seed}", stringify!($m));
        }
    }};
}

#[test]
fn generated_code_matches_the_interpreter_layer_by_layer() {
    check_against_interpreter!(all_ops, 50);
    check_against_interpreter!(resnet8_w4a4, 20);
    check_against_interpreter!(resnet8_w8a8, 20);
    check_against_interpreter!(resnet8_w2a2, 20);
    check_against_interpreter!(resnet8_w1a3, 20);
    check_against_interpreter!(resnet20_w4a4, 10);
    check_against_interpreter!(mobilenetv1_w8a8, 10);
    check_against_interpreter!(mobilenetv2_w4a4, 10);
    check_against_interpreter!(vit_w8a8, 10);
    check_against_interpreter!(vit_w4a4, 10);
}

#[test]
fn the_fixture_covers_every_op_kind() {
    let mut kinds: Vec<&str> = all_ops::LAYER_KINDS.to_vec();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["add", "avg_pool", "conv2d", "fully_connected", "global_sum_pool", "max_pool"]);
}

#[test]
fn infer_uses_the_static_arena_and_refuses_to_reenter() {
    let model = Model::load(resnet8_w4a4::FILE).unwrap();
    let input: [u8; resnet8_w4a4::INPUT_LEN] =
        test_input(resnet8_w4a4::INPUT_LEN, resnet8_w4a4::INPUT_BITS, 99).try_into().unwrap();
    let mut expected = [0i32; resnet8_w4a4::NUM_CLASSES];
    let class = model.run(&input, &mut vec![0u8; model.arena_size()], &mut expected).unwrap();
    let mut logits = [0i32; resnet8_w4a4::NUM_CLASSES];
    assert_eq!(resnet8_w4a4::infer(&input, &mut logits), class);
    assert_eq!(logits, expected);

    // A second inference started from inside the first (as an interrupt handler might) is refused.
    let nested = std::panic::catch_unwind(|| {
        let mut outer = [0i32; resnet8_w4a4::NUM_CLASSES];
        resnet8_w4a4::infer_traced(&input, &mut outer, |_, _| {
            let mut inner = [0i32; resnet8_w4a4::NUM_CLASSES];
            resnet8_w4a4::infer(&input, &mut inner);
        });
    });
    let message = nested.unwrap_err();
    let message = message
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| message.downcast_ref::<String>().cloned());
    assert!(message.unwrap().contains("not re-entrant"));
}
