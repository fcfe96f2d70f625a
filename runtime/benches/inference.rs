//! Host inference speed of the interpreter on one core: `cargo bench -p qfd-runtime`.
//!
//! Reported per model: time per inference (inferences/s is its inverse) and MACs/s as the throughput.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qfd_codegen::stats::total_macs;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_runtime::Model;

struct Case {
    name: &'static str,
    arch: Arch,
    input: [usize; 3],
    width: f32,
    bits: u8,
}

const CASES: &[Case] = &[
    Case { name: "resnet8-32x32x3-w8a8", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: 8 },
    Case { name: "resnet8-32x32x3-w4a4", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: 4 },
    Case { name: "resnet8-32x32x3-w2a2", arch: Arch::ResNet8, input: [32, 32, 3], width: 1.0, bits: 2 },
    Case {
        name: "mobilenetv1-0.25-96x96x3-w8a8",
        arch: Arch::MobileNetV1,
        input: [96, 96, 3],
        width: 0.25,
        bits: 8,
    },
];

fn inference(c: &mut Criterion) {
    let mut group = c.benchmark_group("inference");
    group.sample_size(20);
    for case in CASES {
        let mut cfg = SynthConfig::new(case.arch, case.input);
        cfg.width = case.width;
        cfg.weight_bits = case.bits;
        cfg.act_bits = case.bits;
        let bytes = qfd_codegen::encode_model(&synth(&cfg).expect("synth")).expect("encode");
        let model = Model::load(&bytes).expect("load");
        let input: Vec<u8> = (0..model.input_len()).map(|i| (i * 37 % 251) as u8).collect();
        let mut arena = vec![0u8; model.arena_size()];
        let mut logits = vec![0i32; model.num_classes()];
        group.throughput(Throughput::Elements(total_macs(model.desc())));
        group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
            b.iter(|| model.run(&input, &mut arena, &mut logits).expect("run"))
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
