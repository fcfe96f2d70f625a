//! `qfd-host export` on tiny trained checkpoints: the integer model computes what the fake-quantized
//! training graph computes, layer by layer; export is deterministic; and every refusal has its reason.

mod common;

use std::path::{Path, PathBuf};

use common::{fashion_mnist_installed, integer_trace};
use qfd_accel::{Backend, Engine, RequantForm};
use qfd_host::export::fold::Grid;
use qfd_host::export::{export, integer_graph, ExportError};
use qfd_host::train::config::{DeviceChoice, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::models::{IntegerOp, Net, STEM_PADDING};
use qfd_host::train::quant::{ActQuant, QTensor, QuantMode};
use qfd_host::train::run::{load_trained, train, Data};
use qfd_runtime::Model;
use tch::{Device, Kind, Tensor};

fn tiny(method: Method, run_dir: &Path) -> TrainConfig {
    TrainConfig {
        arch: "resnet8".into(),
        method,
        subset: Some(500),
        fp_epochs: Some(2),
        epochs: 1,
        batch_size: 50,
        wbits: 4,
        abits: 4,
        device: DeviceChoice::Cpu,
        run_dir: Some(run_dir.to_path_buf()),
        ..TrainConfig::default()
    }
}

/// `H x W x C` integers as a `[1, C, H, W]` float tensor.
fn nchw(values: &[i32], [h, w, c]: [usize; 3]) -> Tensor {
    let t = Tensor::from_slice(values).to_kind(Kind::Float).reshape([1, h as i64, w as i64, c as i64]);
    t.permute([0, 3, 1, 2])
}

/// A stored tensor of codes on `grid`, as the training layers read it.
fn stored(codes: &Tensor, g: Grid) -> QTensor {
    let norm = codes / g.levels();
    let value = &norm * (g.upper - g.lower) + g.lower;
    QTensor { float: value.shallow_clone(), norm, value }
}

/// Per code-valued op: (name, elements, elements that differ, largest difference), comparing the
/// integer op with the training layer fed the integer op's own input codes.
fn compare_layers(
    net: &Net,
    model: &Model,
    image: &[u8],
    input: [usize; 3],
) -> Vec<(String, usize, usize, i32)> {
    let trace = integer_trace(model, image);
    let shapes: Vec<[usize; 3]> = model.desc().values.iter().map(|v| v.shape.map(|d| d as usize)).collect();
    let values: Vec<Vec<i32>> =
        std::iter::once(image.iter().map(|&p| p as i32).collect()).chain(trace.iter().cloned()).collect();
    let mut grids: Vec<Option<Grid>> = vec![None];
    let mut report = Vec::new();
    tch::no_grad(|| {
        for (k, op) in net.integer_ops().into_iter().enumerate() {
            let (name, q_out, fake): (String, &ActQuant, QTensor) = match &op {
                IntegerOp::Conv { name, input: i, layer } => {
                    let x = match grids[*i] {
                        Some(g) => stored(&nchw(&values[*i], shapes[*i]), g),
                        None => {
                            let pixels = nchw(&values[0], input) / 255.0;
                            let mean = Tensor::from_slice(&net.spec.mean)
                                .to_kind(Kind::Float)
                                .reshape([1, -1, 1, 1]);
                            QTensor::float((pixels.constant_pad_nd([STEM_PADDING; 4]) - mean) / net.spec.std)
                        }
                    };
                    (name.clone(), &layer.q, layer.forward(&x, false, QuantMode::Quantize))
                }
                IntegerOp::Add { name, inputs, quant, relu } => {
                    let v = |i: usize| stored(&nchw(&values[i], shapes[i]), grids[i].unwrap()).value;
                    let sum = v(inputs[0]) + v(inputs[1]);
                    (
                        name.clone(),
                        *quant,
                        quant.forward(if *relu { sum.relu() } else { sum }, QuantMode::Quantize),
                    )
                }
                IntegerOp::GlobalPool { input: i } => {
                    grids.push(grids[*i]);
                    continue;
                }
                IntegerOp::Classifier { .. } => {
                    grids.push(None);
                    continue;
                }
                other => panic!("a CNN has no {other:?}; tests/export_vit.rs compares the transformer ops"),
            };
            let grid = Grid::of(&name, q_out).unwrap();
            let fake =
                Vec::<f32>::try_from((fake.norm * grid.levels()).round().permute([0, 2, 3, 1]).reshape([-1]))
                    .unwrap();
            let int = &values[k + 1];
            assert_eq!(fake.len(), int.len(), "{name}: sizes");
            let diffs: Vec<i32> = fake.iter().zip(int).map(|(&f, &i)| (f as i32 - i).abs()).collect();
            report.push((
                name,
                int.len(),
                diffs.iter().filter(|&&d| d != 0).count(),
                *diffs.iter().max().unwrap(),
            ));
            grids.push(Some(grid));
        }
    });
    report
}

struct Runs {
    _tmp: tempfile::TempDir,
    student: PathBuf,
}

fn train_qfd() -> Runs {
    let tmp = tempfile::tempdir().unwrap();
    let student = train(&tiny(Method::Qfd, &tmp.path().join("qfd")), false).unwrap();
    Runs { _tmp: tmp, student }
}

#[test]
fn integer_layers_match_the_fake_quantized_layers_and_export_is_deterministic() {
    if !fashion_mnist_installed() {
        return;
    }
    let runs = train_qfd();
    let first = export(&runs.student, None, Some(300)).unwrap();
    let second = export(&runs.student, None, Some(300)).unwrap();
    assert!(first.bytes == second.bytes, "two exports of one checkpoint differ");
    // The product requires at least 99% (format 1's whole-unit bias gave about 91% on this model).
    assert!(
        first.agreement >= 0.99,
        "integer and fake-quant predictions agree on only {:.1}%",
        100.0 * first.agreement
    );
    assert!((first.integer_accuracy - first.fake_quant_accuracy).abs() <= 0.05, "{first:?}");

    let model = Model::load(&first.bytes).unwrap();
    let cfg = &first.config;
    let data = Data::load(cfg, Device::Cpu).unwrap();
    let trained = load_trained(&runs.student, &data, Device::Cpu).unwrap();
    let test = qfd_host::data::Dataset::load(cfg.dataset, qfd_host::data::Split::Test, None).unwrap();

    // The trained model on the burn engine: the runtime's logits, in both forms of requantization.
    let images = &test.images[..300 * test.image_len()];
    let mut arena = vec![0u8; model.arena_size()];
    let mut expected = Vec::new();
    for image in images.chunks_exact(test.image_len()) {
        let mut logits = vec![0i32; model.num_classes()];
        model.run(image, &mut arena, &mut logits).unwrap();
        expected.extend(logits);
    }
    for form in [RequantForm::Wide, RequantForm::Thresholds] {
        let engine = Engine::with_requant(&model, Backend::Flex, form).unwrap();
        assert!(engine.logits(images).unwrap() == expected, "{form:?}: the burn engine's logits differ");
    }
    let [c, h, w] = data.input.map(|d| d as usize);
    // Per layer, in order: (name, codes, codes that differ), over four images.
    let mut layers: Vec<(String, usize, usize)> = Vec::new();
    for i in 0..4 {
        for (k, (name, n, d, max)) in
            compare_layers(&trained.net, &model, test.image(i), [h, w, c]).into_iter().enumerate()
        {
            assert!(max <= 1, "image {i}, {name}: a code differs by {max}");
            if k == layers.len() {
                layers.push((name, 0, 0));
            }
            layers[k].1 += n;
            layers[k].2 += d;
        }
    }
    // Only the documented roundings may move a code, and by one: the multiplier to 31 bits, the constant term
    // to a product unit (`2^-(32 - shift)` of a code at most), exact ties (to even in training, away from zero
    // here), and the float rounding of the training graph itself. Format 1's whole-unit bias moved 0.05-0.44%
    // of a layer's codes; now hardly any move.
    for (name, total, differ) in &layers {
        eprintln!("{name}: {differ} of {total} codes differ by one");
    }
    let (total, differ) = layers.iter().fold((0, 0), |(t, d), l| (t + l.1, d + l.2));
    eprintln!(
        "{differ} of {total} codes differ by one; predictions agree on {:.1}%",
        100.0 * first.agreement
    );
    for (name, total, differ) in &layers {
        assert!((*differ as f64) < 0.001 * *total as f64, "{name}: {differ} of {total} codes differ by one");
    }
}

#[test]
fn refusals_name_their_reason() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A full-precision model, and a directory without a checkpoint.
    let fp = train(&tiny(Method::Fp, &tmp.path().join("fp")), false).unwrap();
    assert!(matches!(export(&fp, None, Some(100)), Err(ExportError::FullPrecision { .. })));
    assert!(matches!(export(tmp.path(), None, None), Err(ExportError::NotACheckpoint { .. })));
    // The paper's float first and last layers.
    let fpfl = TrainConfig { fp_first_last: true, ..tiny(Method::Qat, &tmp.path().join("fpfl")) };
    let fpfl = train(&fpfl, false).unwrap();
    let err = export(&fpfl, None, None).unwrap_err();
    assert!(matches!(err, ExportError::FpFirstLast { .. }), "{err}");
    assert!(err.to_string().contains("--fp-first-last"));

    let qat = train(&tiny(Method::Qat, &tmp.path().join("qat")), false).unwrap();
    let exported = export(&qat, None, Some(100)).unwrap();
    let data = Data::load(&exported.config, Device::Cpu).unwrap();
    let trained = load_trained(&qat, &data, Device::Cpu).unwrap();
    let meta = exported.graph.meta.clone();
    let net = &trained.net;
    let layer = net.conv_layers()[2];
    // A BatchNorm scale near zero has no fixed-point multiplier: refused, naming the layer.
    let gamma = layer.batch_norm().unwrap().ws.as_ref().unwrap();
    tch::no_grad(|| {
        let _ = gamma.shallow_clone().get(0).fill_(1e-30);
    });
    let err = integer_graph(net, &data, meta.clone()).unwrap_err();
    assert!(matches!(&err, ExportError::Overflow { layer, .. } if layer == "layer1.0.conv2"), "{err}");
    tch::no_grad(|| {
        let _ = gamma.shallow_clone().get(0).fill_(1.0);
    });
    // Crossed quantizer bounds are not a grid. (The lower bound is calibrated, and can be negative before
    // the ReLU of a residual block: cross it relative to its own value.)
    let lower = layer.q.bounds.lower.double_value(&[0]);
    tch::no_grad(|| {
        let _ = layer.q.bounds.upper.shallow_clone().fill_(lower - 1.0);
    });
    let err = integer_graph(net, &data, meta).unwrap_err();
    assert!(matches!(&err, ExportError::Unsupported { layer, .. } if layer == "layer1.0.conv2"), "{err}");

    // A checkpoint whose recorded architecture does not match its weights.
    let state = qat.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap().replace("\"resnet8\"", "\"resnet20\"");
    std::fs::write(&state, text).unwrap();
    let err = export(&qat, None, Some(100)).unwrap_err();
    assert!(err.to_string().contains("another architecture"), "{err}");
}
