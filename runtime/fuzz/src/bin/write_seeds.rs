//! Writes small valid models as the fuzzers' starting corpora: whole files into `corpus/load_run/`, their
//! payloads (encoded `ModelDesc`s) into `corpus/load_run_payload/`.
//!
//! Run from `runtime/fuzz`: `cargo run --release --bin write_seeds`. Small models keep each fuzzing
//! iteration fast; together the seeds use every op kind and weight widths 1-8.

use std::path::PathBuf;

use qfd_codegen::encode_model;
use qfd_codegen::fixed_point::{quantize_multiplier, requant_for};
use qfd_codegen::graph::{ConvSpec, FcSpec, Graph, GraphMeta};
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_runtime::format::{Clamp, FcOutput, FileHeader, Padding, Window};
use qfd_runtime::requant::RequantParams;
use qfd_runtime::weights::max_code;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Error = Box<dyn std::error::Error>;

fn synthetic(arch: Arch, input: [usize; 3], width: f32, bits: u8, classes: usize) -> Result<Vec<u8>, Error> {
    let mut cfg = SynthConfig::new(arch, input);
    cfg.width = width;
    cfg.weight_bits = bits;
    cfg.act_bits = bits;
    cfg.classes = classes;
    Ok(encode_model(&synth(&cfg)?)?)
}

/// Every op kind the format has, with byte-container weight widths (3, 5, 6, 7) and FC layers reading both
/// codes and `i32` sums.
fn all_ops() -> Result<Vec<u8>, Error> {
    let mut rng = SmallRng::seed_from_u64(11);
    let meta = GraphMeta {
        arch: "all-ops".into(),
        dataset: "synthetic".into(),
        weight_bits: 3,
        act_bits: 5,
        mean: vec![0.5],
        std: vec![0.25],
        logit_scale: 1.0,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        fake_quant_accuracy: None,
        integer_accuracy: None,
    };
    let mut g = Graph::new([6, 6, 1], 6, meta);
    let mut codes =
        |n: usize, bits: u8| -> Vec<u8> { (0..n).map(|_| rng.gen_range(0..=max_code(bits)) as u8).collect() };
    let rq = |n: usize, scale: f64, offset: f64| -> Result<Vec<RequantParams>, Error> {
        Ok(vec![requant_for(scale, offset).ok_or("scale")?; n])
    };
    let win = |k: u8, s: u8, p: u8| Window {
        kernel: [k, k],
        stride: [s, s],
        padding: Padding { top: p, left: p, bottom: p, right: p },
    };
    let clamp = |bits: u8| Clamp { min: 0, max: max_code(bits) as u8 };
    let conv = ConvSpec {
        out_channels: 2,
        window: win(3, 1, 1),
        groups: 1,
        weight_bits: 3,
        weight_codes: codes(2 * 9, 3),
        requant: rq(2, 31.0 / 600.0, 15.0)?,
        clamp: clamp(5),
        out_bits: 5,
    };
    let c1 = g.conv2d("conv", g.input_id(), conv)?;
    let mp = g.max_pool("maxpool", c1, win(2, 2, 0))?;
    let avg = requant_for(1.0 / 9.0, 0.0).ok_or("scale")?;
    let ap = g.avg_pool("avgpool", mp, win(3, 1, 1), avg, clamp(5), 5)?;
    let (m, s) = quantize_multiplier(0.5).ok_or("scale")?;
    let add =
        g.add("add", [ap, mp], [1, 1], RequantParams { offset: 0, multiplier: m, shift: s }, clamp(5), 5)?;
    let dw = ConvSpec {
        out_channels: 2,
        window: win(3, 2, 1),
        groups: 2,
        weight_bits: 7,
        weight_codes: codes(2 * 9, 7),
        requant: rq(2, 255.0 / 8000.0, 128.0)?,
        clamp: clamp(8),
        out_bits: 8,
    };
    let dw = g.conv2d("depthwise", add, dw)?;
    let pool = g.global_sum_pool("pool", dw)?;
    let fc = FcSpec {
        outputs: 4,
        weight_bits: 6,
        weight_codes: codes(4 * 2, 6),
        requant: rq(4, 15.0 / 100_000.0, 7.0)?,
        output: FcOutput::Codes(clamp(4)),
        out_bits: 4,
    };
    let fc1 = g.fully_connected("fc1", pool, fc)?;
    let fc = FcSpec {
        outputs: 3,
        weight_bits: 5,
        weight_codes: codes(3 * 4, 5),
        requant: vec![RequantParams { offset: 3, multiplier: 0, shift: 0 }; 3],
        output: FcOutput::Logits,
        out_bits: 8,
    };
    g.fully_connected("fc2", fc1, fc)?;
    Ok(encode_model(&g)?)
}

fn main() -> Result<(), Error> {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (files, payloads) = (corpus.join("load_run"), corpus.join("load_run_payload"));
    std::fs::create_dir_all(&files)?;
    std::fs::create_dir_all(&payloads)?;
    let seeds = [
        ("all-ops", all_ops()?),
        ("resnet8-8x8x1-w4a4", synthetic(Arch::ResNet8, [8, 8, 1], 1.0, 4, 4)?),
        ("resnet8-8x8x3-w1a1", synthetic(Arch::ResNet8, [8, 8, 3], 1.0, 1, 2)?),
        ("resnet20-4x4x1-w2a2", synthetic(Arch::ResNet20, [4, 4, 1], 1.0, 2, 3)?),
        ("mobilenetv1-0.25-8x8x1-w2a2", synthetic(Arch::MobileNetV1, [8, 8, 1], 0.25, 2, 3)?),
    ];
    for (name, bytes) in seeds {
        let header: FileHeader<'_> = postcard::from_bytes(&bytes)?;
        // The payload target re-wraps a payload the same way: check that the seed round-trips.
        assert!(qfd_runtime::Model::load(&qfd_runtime_fuzz::wrap_payload(header.payload)).is_ok());
        std::fs::write(payloads.join(format!("{name}.payload")), header.payload)?;
        let path = files.join(format!("{name}.qfdm"));
        std::fs::write(&path, &bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
