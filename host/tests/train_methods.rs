//! Every training method learns: on a Fashion-MNIST subset (CPU), each trains ResNet-8 well above chance,
//! with QFD the distillation term falls, and with block-wise replacement the mixed paths' loss falls.
//!
//! One test, in its own process: the methods share the full-precision model (and QFD its teacher) through
//! the default run directories, which are relative to the working directory.

mod common;

use common::fashion_mnist_installed;
use qfd_host::train::bwrf::PathCount;
use qfd_host::train::checkpoint::Checkpoint;
use qfd_host::train::config::{DeviceChoice, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::run::train;

/// Ten classes: chance is 10%.
const MIN_TEST_ACC: f64 = 0.5;

#[test]
fn every_method_beats_chance_and_qfd_distillation_falls() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_current_dir(tmp.path()).unwrap();
    let base = TrainConfig {
        arch: "resnet8".into(),
        subset: Some(2000),
        fp_epochs: Some(3),
        epochs: 3,
        batch_size: 64,
        wbits: 4,
        abits: 4,
        device: DeviceChoice::Cpu,
        // (Two of block replacement's five paths a step, to bound the test's time.)
        bwrf_paths: PathCount::Sample(2),
        ..TrainConfig::default()
    };
    let mut report = Vec::new();
    for method in Method::ALL {
        let dir = train(&TrainConfig { method, ..base.clone() }, false).unwrap();
        let state = Checkpoint::peek(&dir).unwrap();
        let last = state.metrics.last().expect("one metrics line per epoch");
        report.push(format!("{method}: {:.1}%", 100.0 * last.test_acc));
        assert!(
            last.test_acc >= MIN_TEST_ACC,
            "{method} reached only {:.1}% test accuracy (chance is 10%)",
            100.0 * last.test_acc
        );
        let path_losses = state.metrics.iter().filter(|m| m.train_path_loss.is_some()).count();
        let expected = if method.needs_partner() { state.metrics.len() } else { 0 };
        assert_eq!(path_losses, expected, "{method}: epochs that report a mixed paths' loss");
    }
    // At 2 bits the mixed paths start far from the full-precision model's loss (their quantized blocks are
    // far from the blocks they replace); block replacement must bring them down.
    for method in [Method::Bwrf, Method::BwrfQfd] {
        let cfg = TrainConfig { method, wbits: 2, abits: 2, ..base.clone() };
        let state = Checkpoint::peek(&train(&cfg, false).unwrap()).unwrap();
        let losses: Vec<f64> = state.metrics.iter().filter_map(|m| m.train_path_loss).collect();
        let (first, end) = (losses[0], losses[losses.len() - 1]);
        report.push(format!("{method} w2a2 path loss {first:.4} -> {end:.4}"));
        assert!(
            end < 0.8 * first,
            "{method}: the mixed paths' loss should fall: {first} in the first epoch, {end} in the last"
        );
    }
    // At 2 bits the student starts far from the teacher's quantized feature; QFD must pull it in. (At 4 bits
    // it starts within quantization noise of it, so there is little to fall.)
    let qfd = TrainConfig { method: Method::Qfd, wbits: 2, abits: 2, ..base };
    let state = Checkpoint::peek(&train(&qfd, false).unwrap()).unwrap();
    // On the test split: the student as it started (calibrated, not yet trained) and as it ends.
    let start = state.start.and_then(|s| s.distill).expect("a student records where it started");
    let end = state.metrics.last().and_then(|m| m.test_distill_loss).expect("the test distillation term");
    report.push(format!("qfd w2a2 distillation term {start:.4} -> {end:.4}"));
    assert!(
        end < 0.85 * start,
        "the QFD distillation term should fall: {start} at the start, {end} at the end"
    );
    eprintln!("test accuracy: {}", report.join(", "));
}
