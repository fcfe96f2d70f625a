//! `qfd-host eval` and `qfd-host trace` as a user runs them, checked against the runtime called directly:
//! the counts add up, threads change nothing, every traced array reads back and ends in the logits of
//! `Model::run`, and bad inputs fail cleanly with a message naming the problem.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::fashion_mnist_installed;
use qfd_host::data::{Dataset, DatasetKind, Split};
use qfd_host::eval::evaluate_model;
use qfd_host::model_file::ModelFile;
use qfd_host::npy::{self, Array, Elements};
use qfd_runtime::format::FcOutput;
use qfd_runtime::requant::{logit, requantize_to_code};
use qfd_runtime::{Model, OpDesc};

/// Runs `qfd-host` with `args`.
fn qfd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qfd-host")).args(args).output().expect("qfd-host starts")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `qfd-host` with `args`, which must succeed, and parses its stdout as JSON.
fn qfd_json(args: &[&str]) -> Value {
    let o = qfd(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object on stdout")
}

/// Asserts a clean failure: exit status 1, a message containing every `needles`, and no panic.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// A synthetic ResNet-8 (random weights, metadata data set `synthetic`) of the given input shape.
fn synth(dir: &Path, name: &str, input: &str, classes: &str) -> PathBuf {
    let out = dir.join(name);
    let args = ["synth", "--arch", "resnet8", "--bits", "4/4", "--input", input, "--classes", classes];
    let o = qfd(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "synth: {}", stderr(&o));
    out
}

/// The logits and class of `input` from `Model::run`, the reference both commands must agree with.
fn run_model(model: &Model<'_>, input: &[u8]) -> (Vec<i32>, usize) {
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let class = model.run(input, &mut arena, &mut logits).unwrap();
    (logits, class)
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// `n` deterministic pseudo-random bytes.
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn eval_counts_add_up_and_match_direct_runs_whatever_the_threads() {
    if !fashion_mnist_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path(), "m.qfdm", "28x28x1", "10");
    let m = model.to_str().unwrap();
    let eval = |threads: &str| {
        qfd_json(&["eval", m, "--dataset", "fashion-mnist", "--limit", "300", "--threads", threads, "--json"])
    };
    let three = eval("3");

    assert_eq!(three["total"], 300);
    assert_eq!(three["threads"], 3);
    assert_eq!(three["dataset"], "fashion-mnist");
    let confusion: Vec<Vec<u64>> = three["confusion"].as_array().unwrap().iter().map(u64s).collect();
    assert_eq!(confusion.len(), 10);
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 300);
    let diagonal: u64 = (0..10).map(|c| confusion[c][c]).sum();
    assert_eq!(three["correct"], diagonal);
    assert_eq!(three["accuracy"].as_f64().unwrap(), diagonal as f64 / 300.0);
    assert_eq!(three["class_names"][9], "Ankle boot");

    // The same images through Model::run, one at a time.
    let mut data = Dataset::load(DatasetKind::FashionMnist, Split::Test, None).unwrap();
    data.truncate(300);
    let file = ModelFile::read(&model).unwrap();
    let parsed = file.model().unwrap();
    let direct: Vec<u64> = (0..300).map(|i| run_model(&parsed, data.image(i)).1 as u64).collect();
    assert_eq!(u64s(&three["predictions"]), direct);
    let rows: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let labels_per_class: Vec<u64> = data.class_counts().iter().map(|&c| c as u64).collect();
    assert_eq!(rows, labels_per_class);

    let one = eval("1");
    for key in ["predictions", "confusion", "correct", "total", "per_class_accuracy"] {
        assert_eq!(one[key], three[key], "{key} differs between 1 and 3 threads");
    }
    // The burn engine, in batches that do not divide the images, reports the same.
    let burn = qfd_json(&[
        "eval",
        m,
        "--dataset",
        "fashion-mnist",
        "--limit",
        "300",
        "--engine",
        "burn",
        "--batch",
        "64",
        "--verify",
        "--json",
    ]);
    // --verify ran the runtime too and compared every logit.
    assert_eq!(burn["verify"]["logits"], 3000);
    assert_eq!(burn["verify"]["images"], 300);
    for key in ["predictions", "confusion", "correct", "total", "per_class_accuracy", "class_names"] {
        assert_eq!(burn[key], three[key], "{key} differs between the burn engine and the runtime");
    }
    assert_eq!(burn["engine"], "burn (flex), batches of 64");
    assert_eq!(three["engine"], "the runtime on 3 threads");

    // The library gives the same with any number of threads, more threads than images included.
    data.truncate(7);
    for threads in [1, 2, 5, 7, 64] {
        let report = evaluate_model(&parsed, &data, threads).unwrap();
        assert_eq!(report.predictions.iter().map(|&p| p as u64).collect::<Vec<_>>(), direct[..7]);
        // Five threads get equal chunks of two images: four workers.
        assert_eq!(report.threads, if threads == 5 { 4 } else { threads.min(7) });
    }
}

#[test]
fn eval_prints_a_readable_report() {
    if !fashion_mnist_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path(), "m.qfdm", "28x28x1", "10");
    let o = qfd(&["eval", model.to_str().unwrap(), "--dataset", "fashion-mnist", "--limit", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for needle in
        ["fashion-mnist test split, 20 images", "top-1", "images/s", "Ankle boot", "confusion matrix"]
    {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}

#[test]
fn eval_and_trace_refuse_bad_inputs_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path(), "m.qfdm", "28x28x1", "10");
    let m = model.to_str().unwrap();

    let missing = dir.path().join("missing.qfdm");
    assert_fails(&qfd(&["eval", missing.to_str().unwrap(), "--dataset", "fashion-mnist"]), &["missing.qfdm"]);
    let mut bytes = fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let corrupt = dir.path().join("corrupt.qfdm");
    fs::write(&corrupt, bytes).unwrap();
    let o = qfd(&["eval", corrupt.to_str().unwrap(), "--dataset", "fashion-mnist"]);
    assert_fails(&o, &["corrupt.qfdm", "hint: the file is corrupted or not a .qfdm model"]);

    let out = dir.path().join("t");
    let t = out.to_str().unwrap();
    for cmd in [&["eval", m][..], &["trace", m, "--input", "0", "--out", t]] {
        assert_fails(&qfd(cmd), &["metadata says 'synthetic'", "pass --dataset"]);
    }
    let no_data = dir.path().join("no-data");
    let o = qfd(&["eval", m, "--dataset", "fashion-mnist", "--data", no_data.to_str().unwrap()]);
    assert_fails(&o, &["no-data", "not found"]);

    if !fashion_mnist_installed() {
        return;
    }
    let colour = synth(dir.path(), "colour.qfdm", "32x32x3", "10");
    let c = colour.to_str().unwrap();
    let needles = ["the model reads 32x32x3 inputs but fashion-mnist images are 28x28x1"];
    assert_fails(&qfd(&["eval", c, "--dataset", "fashion-mnist"]), &needles);
    let trace = ["trace", c, "--dataset", "fashion-mnist", "--input", "0", "--out", t];
    assert_fails(&qfd(&trace), &needles);
    assert!(!out.exists(), "a refused trace writes nothing");

    // The burn engine: options that need it, a backend not built, a model it cannot run.
    let fm = ["eval", m, "--dataset", "fashion-mnist", "--limit", "10"];
    assert_fails(
        &qfd(&[&fm[..], &["--backend", "flex"]].concat()),
        &["--backend applies to the burn engine only"],
    );
    assert_fails(&qfd(&[&fm[..], &["--engine", "burn", "--threads", "2"]].concat()), &["--threads applies"]);
    assert_fails(
        &qfd(&[&fm[..], &["--verify"]].concat()),
        &["--verify checks the burn engine", "--engine burn"],
    );
    if !cfg!(feature = "wgpu") {
        let o = qfd(&[&fm[..], &["--engine", "burn", "--backend", "wgpu"]].concat());
        assert_fails(&o, &["the wgpu backend is not in this build", "--features wgpu"]);
    }
    let o = qfd(&[&fm[..], &["--engine", "burn", "--backend", "tpu"]].concat());
    assert!(stderr(&o).contains("unknown backend 'tpu'"), "{}", stderr(&o));
    let vit = dir.path().join("vit.qfdm");
    let o = qfd(&["synth", "--arch", "vit", "--input", "28x28x1", "--out", vit.to_str().unwrap()]);
    assert!(o.status.success(), "synth: {}", stderr(&o));
    let o = qfd(&[
        "eval",
        vit.to_str().unwrap(),
        "--dataset",
        "fashion-mnist",
        "--limit",
        "10",
        "--engine",
        "burn",
    ]);
    assert_fails(&o, &["is not supported by the burn engine", "--engine runtime"]);

    let hundred = synth(dir.path(), "hundred.qfdm", "28x28x1", "100");
    let o = qfd(&["eval", hundred.to_str().unwrap(), "--dataset", "fashion-mnist"]);
    assert_fails(&o, &["the model has 100 classes but fashion-mnist has 10"]);

    let trace = ["trace", m, "--dataset", "fashion-mnist", "--input", "10000", "--out", t];
    assert_fails(&qfd(&trace), &["image 10000 does not exist", "10000 images (0 to 9999)"]);
}

/// Checks a trace directory against the model run directly on `input`; returns trace.json.
fn check_trace(model: &Path, dir: &Path, input: &[u8]) -> Value {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("trace.json")).unwrap()).unwrap();
    let file = ModelFile::read(model).unwrap();
    let parsed = file.model().unwrap();
    let ops = index["ops"].as_array().unwrap();
    assert_eq!(ops.len(), parsed.desc().ops.len());

    let traced_input = npy::read(&dir.join("input.npy")).unwrap();
    assert_eq!(traced_input, Array::new(vec![28, 28, 1], Elements::U8(input.to_vec())).unwrap());

    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["index"], i);
        let name = op["file"].as_str().unwrap();
        assert_eq!(name, format!("{i:02}_{}.npy", op["kind"].as_str().unwrap()));
        let array = npy::read(&dir.join(name)).unwrap();
        let shape: Vec<usize> = u64s(&op["shape"]).iter().map(|&d| d as usize).collect();
        assert_eq!(array.shape(), shape, "{name}");
        assert_eq!(op["dtype"], array.data().dtype_name(), "{name}");
        let (min, max) = array.data().min_max().unwrap();
        assert_eq!((op["min"].as_i64().unwrap(), op["max"].as_i64().unwrap()), (min, max), "{name}");
        match array.data() {
            Elements::U8(_) => {
                assert!(max < 1 << op["bits"].as_u64().unwrap(), "{name}: codes above the bits")
            }
            Elements::I32(_) => assert!(op["bits"].is_null(), "{name}"),
        }
    }
    assert_eq!(ops[ops.len() - 2]["kind"], "global_sum_pool");
    assert_eq!(ops[ops.len() - 2]["dtype"], "int32");
    check_accumulators(&parsed, dir, ops);

    let (logits, class) = run_model(&parsed, input);
    let last = npy::read(&dir.join(ops.last().unwrap()["file"].as_str().unwrap())).unwrap();
    assert_eq!(last.shape(), [1, 1, logits.len()]);
    assert_eq!(last.data(), &Elements::I32(logits.clone()));
    assert_eq!(index["logits"], serde_json::json!(logits));
    assert_eq!(index["predicted"], class);
    index
}

/// Every op that requantizes has an accumulator file, and requantizing those accumulators with the op's own
/// constants gives exactly the traced output: the accumulators are the ones the kernels rounded.
fn check_accumulators(model: &Model<'_>, dir: &Path, ops: &[Value]) {
    let mut checked = 0;
    for (op, entry) in model.desc().ops.iter().zip(ops) {
        let output = npy::read(&dir.join(entry["file"].as_str().unwrap())).unwrap();
        let acc_entry = &entry["accumulators"];
        let requantizes_nothing = |op: &OpDesc<'_>| {
            matches!(
                op,
                OpDesc::MaxPool(_) | OpDesc::GlobalSumPool(_) | OpDesc::Softmax(_) | OpDesc::Lookup(_)
            )
        };
        if requantizes_nothing(op) {
            assert!(acc_entry.is_null(), "{entry}: nothing is requantized, so there are no accumulators");
            continue;
        }
        let file = acc_entry["file"].as_str().expect("an op that requantizes lists its accumulators");
        assert_eq!(file, entry["file"].as_str().unwrap().replace(".npy", ".acc.npy"));
        let acc = npy::read(&dir.join(file)).unwrap();
        assert_eq!(acc.shape(), output.shape(), "{file}");
        let Elements::I32(acc) = acc.data() else { panic!("{file}: accumulators are int32") };
        let channels = output.shape()[2];
        let requantized: Vec<i32> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| match op {
                OpDesc::Conv2d(c) => {
                    requantize_to_code(a, c.requant.get(i % channels), c.clamp.min, c.clamp.max) as i32
                }
                OpDesc::FullyConnected(f) => match f.output {
                    FcOutput::Codes(clamp) => {
                        requantize_to_code(a, f.requant.get(i), clamp.min, clamp.max) as i32
                    }
                    FcOutput::Logits => logit(a, f.requant.get(i)),
                },
                OpDesc::Add(p) => requantize_to_code(a, p.requant, p.clamp.min, p.clamp.max) as i32,
                OpDesc::AvgPool(p) => requantize_to_code(a, p.requant, p.clamp.min, p.clamp.max) as i32,
                OpDesc::LayerNorm(n) => {
                    requantize_to_code(a, n.requant.get(i % channels), n.clamp.min, n.clamp.max) as i32
                }
                OpDesc::ChannelAdd(p) => {
                    requantize_to_code(a, p.requant.get(i % channels), p.clamp.min, p.clamp.max) as i32
                }
                OpDesc::AttentionScores(p) => {
                    requantize_to_code(a, p.requant, p.clamp.min, p.clamp.max) as i32
                }
                OpDesc::AttentionValues(p) => {
                    requantize_to_code(a, p.requant, p.clamp.min, p.clamp.max) as i32
                }
                OpDesc::MaxPool(_) | OpDesc::GlobalSumPool(_) | OpDesc::Softmax(_) | OpDesc::Lookup(_) => {
                    unreachable!()
                }
            })
            .collect();
        let traced: Vec<i32> = match output.data() {
            Elements::U8(codes) => codes.iter().map(|&c| c as i32).collect(),
            Elements::I32(values) => values.clone(),
        };
        assert_eq!(requantized, traced, "{file}: requantized accumulators differ from the op's output");
        checked += 1;
    }
    assert!(checked >= 3, "the model has convolutions, adds and a classifier to check");
}

#[test]
fn trace_writes_every_op_of_a_file_input_and_ends_in_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path(), "m.qfdm", "28x28x1", "10");
    let m = model.to_str().unwrap();
    let pixels = noise(28 * 28, 3);
    let raw = dir.path().join("image.bin");
    fs::write(&raw, &pixels).unwrap();

    // The output directory is created, parents included.
    let out = dir.path().join("traces").join("raw");
    let o = qfd(&["trace", m, "--input", raw.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("13_fully_connected.npy") && text.contains("predicted"), "{text}");
    let index = check_trace(&model, &out, &pixels);
    assert_eq!(index["source"], raw.to_str().unwrap());
    assert!(index["label"].is_null());
    let mut files: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let ops = index["ops"].as_array().unwrap();
    let with_accumulators = ops.iter().filter(|op| !op["accumulators"].is_null()).count();
    assert_eq!(files.len(), ops.len() + with_accumulators + 2);
    assert_eq!(files[0..2], ["00_conv2d.acc.npy", "00_conv2d.npy"]);
    assert!(files.contains(&"input.npy".to_string()) && files.contains(&"trace.json".to_string()));

    // The written input.npy is itself a valid input, and gives the same trace.
    let again = dir.path().join("again");
    let input_npy = out.join("input.npy");
    let o = qfd(&["trace", m, "--input", input_npy.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check_trace(&model, &again, &pixels)["logits"], index["logits"]);

    // A raw file of the wrong length, and a .npy of the wrong shape, are refused.
    let short = dir.path().join("short.bin");
    fs::write(&short, &pixels[..783]).unwrap();
    let bad = dir.path().join("bad");
    let o = qfd(&["trace", m, "--input", short.to_str().unwrap(), "--out", bad.to_str().unwrap()]);
    assert_fails(
        &o,
        &["short.bin", "783 bytes is neither a .npy file nor a raw input of 28x28x1 = 784 bytes"],
    );
    let wide = dir.path().join("wide.npy");
    npy::write(&wide, &Array::new(vec![28, 28, 3], Elements::U8(noise(28 * 28 * 3, 4))).unwrap()).unwrap();
    let o = qfd(&["trace", m, "--input", wide.to_str().unwrap(), "--out", bad.to_str().unwrap()]);
    assert_fails(&o, &["wide.npy", "uint8 of shape [28, 28, 3]; the model reads uint8 of shape (28, 28, 1)"]);
    let missing = dir.path().join("missing.bin");
    let o = qfd(&["trace", m, "--input", missing.to_str().unwrap(), "--out", bad.to_str().unwrap()]);
    assert_fails(&o, &["cannot read", "missing.bin"]);
    assert!(!bad.exists(), "a refused trace writes nothing");
}

#[test]
fn trace_of_a_test_image_records_its_label() {
    if !fashion_mnist_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path(), "m.qfdm", "28x28x1", "10");
    let out = dir.path().join("t");
    let args = ["trace", model.to_str().unwrap(), "--dataset", "fashion-mnist", "--input", "17"];
    let o = qfd(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));

    let data = Dataset::load(DatasetKind::FashionMnist, Split::Test, None).unwrap();
    let index = check_trace(&model, &out, data.image(17));
    assert_eq!(index["source"], "fashion-mnist test image 17");
    assert_eq!(index["label"], data.labels[17]);
    assert_eq!(index["label_name"], data.class_names[usize::from(data.labels[17])]);
}
