//! `--resume` after a kill between epochs continues from the last completed epoch and, on CPU, ends with the
//! same weights (bit for bit) as an uninterrupted run: the optimiser buffers travel in the checkpoint.
//!
//! The kill is simulated with `train_until(.., stop_after_epoch)`, which returns right after saving a
//! checkpoint, exactly the state a kill after that save leaves.
mod common;

use common::fashion_mnist_installed;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use qfd_host::train::config::{DeviceChoice, OptimizerKind, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::run::{train, train_until, TrainError};
use tch::Tensor;

/// Building a network draws from libtorch's global generator right after seeding it: runs in parallel
/// threads would interleave their draws.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn config(optimizer: OptimizerKind, run_dir: &Path) -> TrainConfig {
    TrainConfig {
        arch: "resnet8".into(),
        method: Method::Qat,
        subset: Some(200),
        epochs: 2,
        batch_size: 50,
        optimizer,
        device: DeviceChoice::Cpu,
        run_dir: Some(run_dir.to_path_buf()),
        ..TrainConfig::default()
    }
}

/// The tensors of the one `<prefix>*.safetensors` file in `dir` (older ones are removed on save).
fn tensors(dir: &Path, prefix: &str) -> HashMap<String, Tensor> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".safetensors")
        })
        .collect();
    assert_eq!(files.len(), 1, "{}: one {prefix}*.safetensors expected, found {files:?}", dir.display());
    Tensor::read_safetensors(&files[0]).unwrap().into_iter().collect()
}

fn assert_bitwise_equal(a: &Path, b: &Path, prefix: &str) {
    let (ta, tb) = (tensors(a, prefix), tensors(b, prefix));
    let mut names: Vec<&String> = ta.keys().collect();
    names.sort();
    let mut keys_b: Vec<&String> = tb.keys().collect();
    keys_b.sort();
    assert_eq!(names, keys_b, "{prefix} tensors of {} and {} differ in names", a.display(), b.display());
    assert!(!names.is_empty());
    let mut differ = Vec::new();
    for name in names {
        let (x, y) = (&ta[name], &tb[name]);
        assert_eq!(x.size(), y.size(), "{name}");
        assert_eq!(x.kind(), y.kind(), "{name}");
        if !x.equal(y) {
            let diff =
                f64::try_from((x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double)).abs().max())
                    .unwrap();
            differ.push(format!("{name} (max |diff| {diff:e})"));
        }
    }
    assert!(differ.is_empty(), "{prefix}: {} vs {}: {}", a.display(), b.display(), differ.join(", "));
    // And the files themselves, byte for byte.
    let file = |d: &Path| {
        let mut f: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        f.sort();
        std::fs::read(&f[0]).unwrap()
    };
    assert!(file(a) == file(b), "{prefix} files of {} and {} differ in bytes", a.display(), b.display());
}

fn resume_is_bit_exact(optimizer: OptimizerKind) {
    if !fashion_mnist_installed() {
        return;
    }
    let _lock = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    // A: uninterrupted, both stages (fp in a/fp, the qat student in a).
    train(&config(optimizer, &a), false).unwrap();

    // B: "killed" after epoch 1 of each stage, resumed each time.
    let cfg_b = config(optimizer, &b);
    match train_until(&cfg_b, false, Some(1)) {
        Err(TrainError::Stopped { stage: "fp", epoch: 1, .. }) => {}
        other => panic!("expected a stop after fp epoch 1, got {other:?}"),
    }
    // Without --resume an unfinished stage is refused.
    assert!(matches!(train(&cfg_b, false), Err(TrainError::Unfinished { done: 1, total: 2, .. })));
    match train_until(&cfg_b, true, Some(1)) {
        Err(TrainError::Stopped { stage: "student", epoch: 1, .. }) => {}
        other => panic!("expected a stop after student epoch 1, got {other:?}"),
    }
    train(&cfg_b, true).unwrap();

    for (da, db) in [(a.join("fp"), b.join("fp")), (a.clone(), b.clone())] {
        assert_bitwise_equal(&da, &db, "model-e0002");
        assert_bitwise_equal(&da, &db, "extra-e0002");
        let metrics = std::fs::read_to_string(db.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 2, "{}: two epochs, two lines", db.display());
    }
}

#[test]
fn sgd_resume_gives_the_weights_of_an_uninterrupted_run() {
    resume_is_bit_exact(OptimizerKind::Sgd);
}

#[test]
fn adam_resume_gives_the_weights_of_an_uninterrupted_run() {
    resume_is_bit_exact(OptimizerKind::Adam);
}
