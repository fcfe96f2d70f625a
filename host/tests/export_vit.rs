//! A vision transformer through post-training quantization and export: the integer model computes what the
//! fake-quantized graph computes, op by op (the softmax bit for bit); PTF and LIS change what they claim
//! to; and quantize refuses what it cannot take.

mod common;

use std::path::Path;

use common::{fashion_mnist_installed, integer_trace};
use qfd_host::export::export;
use qfd_host::export::fold::Grid;
use qfd_host::export::transformer::StreamGrid;
use qfd_host::train::config::{DeviceChoice, OptimizerKind, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::models::vit::{attention_logits, gelu, mix_values, softmax};
use qfd_host::train::models::{IntegerOp, Net};
use qfd_host::train::ptq::{quantize, Observer, PtqError, PtqMethod, PtqOptions};
use qfd_host::train::quant::{ActQuant, QTensor, QuantMode};
use qfd_host::train::run::{load_trained, train, Data};
use qfd_runtime::kernels::ProbCodes;
use qfd_runtime::Model;
use tch::{Device, Kind, Tensor};

fn tiny_vit(run_dir: &Path) -> TrainConfig {
    TrainConfig {
        arch: "vit".into(),
        method: Method::Fp,
        optimizer: OptimizerKind::Adamw,
        weight_decay: 0.05,
        // Enough to learn well above chance whatever the shared random draws (two tests train at once).
        subset: Some(1500),
        epochs: 3,
        batch_size: 50,
        embed_dim: 32,
        depth: 2,
        heads: 2,
        mlp_ratio: 2,
        device: DeviceChoice::Cpu,
        run_dir: Some(run_dir.to_path_buf()),
        ..TrainConfig::default()
    }
}

/// How the integer value `i` reads as a training tensor.
#[derive(Clone)]
enum Read {
    Pixels,
    Grid(Grid),
    Stream(StreamGrid),
    Probs(ProbCodes),
}

/// Per op: (name, elements, elements that differ, largest difference), comparing each integer op with the
/// training layer fed the integer op's own inputs.
fn compare_layers(net: &Net, model: &Model, image: &[u8]) -> Vec<(String, usize, usize, i64)> {
    let trace = integer_trace(model, image);
    let shapes: Vec<[i64; 3]> = model.desc().values.iter().map(|v| v.shape.map(|d| d as i64)).collect();
    let codes: Vec<Vec<i32>> =
        std::iter::once(image.iter().map(|&p| p as i32).collect()).chain(trace.iter().cloned()).collect();
    // A token tensor `H x W x C` as `[1, C, H, W]`; an attention tensor `heads x T x T` as `[1, heads, T, T]`.
    let nchw = |i: usize| {
        let [h, w, c] = shapes[i];
        Tensor::from_slice(&codes[i]).to_kind(Kind::Float).reshape([1, h, w, c]).permute([0, 3, 1, 2])
    };
    let rows = |i: usize| {
        let [h, t, u] = shapes[i];
        Tensor::from_slice(&codes[i]).to_kind(Kind::Float).reshape([1, h, t, u])
    };
    let value = |reads: &[Read], i: usize| -> Tensor {
        match &reads[i] {
            Read::Grid(g) => nchw(i) * g.step() + g.lower,
            Read::Stream(s) => {
                let steps =
                    Tensor::from_slice(&s.shifts).to_kind(Kind::Float).exp2().reshape([1, -1, 1, 1]) * s.step;
                (nchw(i) - s.zero as f64) * steps
            }
            Read::Probs(p) => softmax::prob_values(&rows(i), *p),
            Read::Pixels => unreachable!("no op reads the pixels but the stem"),
        }
    };
    let stored = |reads: &[Read], i: usize| {
        let v = value(reads, i);
        QTensor { float: v.shallow_clone(), norm: v.shallow_clone(), value: v }
    };
    let mut reads = vec![Read::Pixels];
    let mut report = Vec::new();
    tch::no_grad(|| {
        for (k, op) in net.integer_ops().into_iter().enumerate() {
            let out_codes =
                |q: &ActQuant, fake: QTensor| (fake.norm * Grid::of("", q).unwrap().levels()).round();
            let (name, fake, read): (String, Tensor, Read) = match &op {
                IntegerOp::Conv { name, input, layer } => {
                    let x = match &reads[*input] {
                        Read::Pixels => {
                            let mean = Tensor::from_slice(&net.spec.mean)
                                .to_kind(Kind::Float)
                                .reshape([1, -1, 1, 1]);
                            QTensor::float((nchw(0) / 255.0 - mean) / net.spec.std)
                        }
                        _ => stored(&reads, *input),
                    };
                    let g = Grid::of(name, &layer.q).unwrap();
                    (
                        name.clone(),
                        out_codes(&layer.q, layer.forward(&x, false, QuantMode::Quantize)),
                        Read::Grid(g),
                    )
                }
                IntegerOp::StreamAdd { name, inputs, quant } => {
                    let sum = value(&reads, inputs[0]) + value(&reads, inputs[1]);
                    let s = StreamGrid::of(name, quant).unwrap();
                    (name.clone(), quant.codes(&sum), Read::Stream(s))
                }
                IntegerOp::LayerNorm { name, input, norm } => {
                    let g = Grid::of(name, &norm.q).unwrap();
                    (
                        name.clone(),
                        out_codes(&norm.q, norm.forward(&value(&reads, *input), QuantMode::Quantize)),
                        Read::Grid(g),
                    )
                }
                IntegerOp::AttentionScores { name, inputs, heads, quant } => {
                    let logits =
                        attention_logits(&value(&reads, inputs[0]), &value(&reads, inputs[1]), *heads as i64);
                    let g = Grid::of(name, quant).unwrap();
                    (
                        name.clone(),
                        out_codes(quant, quant.forward(logits, QuantMode::Quantize)),
                        Read::Grid(g),
                    )
                }
                IntegerOp::Softmax { name, input, probs } => {
                    let Read::Grid(g) = &reads[*input] else { unreachable!() };
                    let exp = softmax::exp_params(g.step(), shapes[*input][2] as usize).unwrap();
                    (
                        name.clone(),
                        softmax::prob_codes(&rows(*input), exp, *probs).to_kind(Kind::Float),
                        Read::Probs(*probs),
                    )
                }
                IntegerOp::AttentionValues { name, inputs, quant, .. } => {
                    let mixed = mix_values(&value(&reads, inputs[0]), &value(&reads, inputs[1]));
                    let g = Grid::of(name, quant).unwrap();
                    (name.clone(), out_codes(quant, quant.forward(mixed, QuantMode::Quantize)), Read::Grid(g))
                }
                IntegerOp::Lookup { name, input, function, quant } => {
                    let x = value(&reads, *input);
                    assert!(
                        [-1.0, 0.5, 2.0].iter().all(|&x| function(x) == gelu(x)),
                        "the table is not the GELU"
                    );
                    let g = Grid::of(name, quant).unwrap();
                    (
                        name.clone(),
                        out_codes(quant, quant.forward(x.gelu("tanh"), QuantMode::Quantize)),
                        Read::Grid(g),
                    )
                }
                IntegerOp::GlobalPool { input } => {
                    reads.push(reads[*input].clone());
                    continue;
                }
                IntegerOp::Classifier { .. } | IntegerOp::Add { .. } => {
                    reads.push(Read::Pixels);
                    continue;
                }
            };
            // Back to storage order: tokens `[1, C, H, W]` as `H x W x C`; attention rows as they are.
            let fake = if matches!(op, IntegerOp::AttentionScores { .. } | IntegerOp::Softmax { .. }) {
                fake.reshape([-1])
            } else {
                fake.permute([0, 2, 3, 1]).reshape([-1])
            };
            let fake = Vec::<f32>::try_from(fake).unwrap();
            let int = &codes[k + 1];
            assert_eq!(fake.len(), int.len(), "{name}: sizes");
            let diffs: Vec<i64> = fake.iter().zip(int).map(|(&f, &i)| (f as i64 - i as i64).abs()).collect();
            report.push((
                name,
                int.len(),
                diffs.iter().filter(|&&d| d != 0).count(),
                *diffs.iter().max().unwrap(),
            ));
            reads.push(read);
        }
    });
    report
}

#[test]
fn a_quantized_vit_exports_to_the_integer_model_op_for_op() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fp = train(&tiny_vit(&tmp.path().join("fp")), false).unwrap();
    let test = qfd_host::data::Dataset::load(
        qfd_host::data::DatasetKind::FashionMnist,
        qfd_host::data::Split::Test,
        None,
    )
    .unwrap();
    for method in [PtqMethod::FqVit, PtqMethod::MinMax] {
        let out = tmp.path().join(method.to_string());
        let options = PtqOptions {
            method,
            observer: Observer::Omse,
            images: 200,
            act_bits: 8,
            out: out.clone(),
            data: None,
        };
        let q = quantize(&fp, &options).unwrap();
        assert!(q.float.acc > 0.3, "{method}: the float model learned nothing ({:.3})", q.float.acc);
        let exported = export(&out, None, Some(200)).unwrap();
        assert!(
            exported.agreement >= 0.97,
            "{method}: integer and fake-quant agree on {:.3}",
            exported.agreement
        );
        let model = Model::load(&exported.bytes).unwrap();
        let data = Data::load(&exported.config, Device::Cpu).unwrap();
        let trained = load_trained(&out, &data, Device::Cpu).unwrap();
        let vit = trained.net.vit().unwrap();
        // PTF: the stream's channels use more than one power-of-two factor; MinMax: one step per tensor.
        let shifts: Vec<u8> = vit.stream_quantizers().iter().flat_map(|q| q.grid().2).collect();
        match method {
            PtqMethod::MinMax => assert!(shifts.iter().all(|&s| s == 0), "minmax has shifts"),
            _ => assert!(shifts.iter().any(|&s| s > 0), "PTF chose no factor above 1"),
        }
        assert_eq!(
            vit.probs,
            if method == PtqMethod::FqVit { ProbCodes::Log2 } else { ProbCodes::Linear { bits: 8 } }
        );
        let mut layers: Vec<(String, usize, usize)> = Vec::new();
        for i in 0..3 {
            for (k, (name, n, d, max)) in
                compare_layers(&trained.net, &model, test.image(i)).into_iter().enumerate()
            {
                assert!(max <= 1, "{method}, image {i}, {name}: a code differs by {max}");
                if name.ends_with("softmax") {
                    assert_eq!(
                        d, 0,
                        "{method}, image {i}, {name}: the softmax is the same integer arithmetic"
                    );
                }
                if k == layers.len() {
                    layers.push((name, 0, 0));
                }
                layers[k].1 += n;
                layers[k].2 += d;
            }
        }
        assert!(layers.iter().any(|l| l.0.ends_with("softmax")), "no softmax compared");
        for (name, total, differ) in &layers {
            eprintln!("{method}: {name}: {differ} of {total} codes differ by one");
            assert!(
                (*differ as f64) <= 0.01 * *total as f64,
                "{method}, {name}: {differ} of {total} codes differ"
            );
        }
    }
}

#[test]
fn quantize_refuses_what_it_cannot_take() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cnn = TrainConfig {
        arch: "resnet8".into(),
        embed_dim: 64,
        depth: 4,
        heads: 4,
        ..tiny_vit(&tmp.path().join("cnn"))
    };
    let cnn = train(&TrainConfig { epochs: 1, subset: Some(100), ..cnn }, false).unwrap();
    let options = |out: &str| PtqOptions {
        method: PtqMethod::FqVit,
        observer: Observer::MinMax,
        images: 100,
        act_bits: 8,
        out: tmp.path().join(out),
        data: None,
    };
    let err = quantize(&cnn, &options("a")).unwrap_err();
    assert!(matches!(err, PtqError::NotFullPrecisionVit { .. }), "{err}");
    assert!(err.to_string().contains("--arch vit"), "{err}");
    let err = quantize(&tmp.path().join("missing"), &options("b")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = quantize(&cnn, &PtqOptions { images: 0, ..options("c") }).unwrap_err();
    assert!(matches!(err, PtqError::NoImages), "{err}");
    let err = quantize(&cnn, &PtqOptions { act_bits: 1, ..options("d") }).unwrap_err();
    assert!(matches!(err, PtqError::ActBits(1)), "{err}");
}
