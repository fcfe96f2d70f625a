//! The product's main path from the command line, tiny: `train` -> `export` -> `eval` -> `run` on an
//! emulated board, with the parity report.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fashion_mnist_installed;

fn qfd_host(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_qfd-host"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("qfd-host runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "qfd-host {args:?} panicked:\n{stderr}");
    out
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = qfd_host(dir, args);
    assert!(out.status.success(), "qfd-host {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn train_export_eval_and_run_on_qemu_agree() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = [
        "train",
        "--arch",
        "resnet8",
        "--method",
        "qat",
        "--bits",
        "4",
        "--subset",
        "400",
        "--fp-epochs",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--device",
        "cpu",
        "--run-dir",
        "run",
    ];
    ok(dir, &train);
    let exported = ok(dir, &["export", "run", "--out", "m.qfdm", "--limit", "200"]);
    assert!(exported.contains("test accuracy on 200 images: fake-quant"), "{exported}");
    let again = ok(dir, &["export", "run", "--out", "again.qfdm", "--limit", "200"]);
    assert_eq!(exported.replace("again.qfdm", "m.qfdm"), again.replace("again.qfdm", "m.qfdm"));
    assert_eq!(std::fs::read(dir.join("m.qfdm")).unwrap(), std::fs::read(dir.join("again.qfdm")).unwrap());

    let eval: serde_json::Value =
        serde_json::from_str(&ok(dir, &["eval", "m.qfdm", "--limit", "200", "--json"])).unwrap();
    let total = eval["total"].as_u64().unwrap();
    assert_eq!(total, 200, "{eval}");

    // The same model in firmware on an emulated Cortex-M4, on 12 test images: bit-exact.
    let run: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &["run", "--board", "qemu-m4", "--model", "m.qfdm", "--samples", "12", "--json"],
    ))
    .unwrap();
    assert_eq!(run["samples"], 12, "{run}");
    assert_eq!(run["mismatches"].as_array().unwrap().len(), 0, "{run}");
    assert_eq!(run["device_correct"], run["host_correct"], "{run}");
    assert!(run["refused"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(run["engine"], "generated");
    // The weights are compiled in, so the image is at least as big as the weights.
    let weights: u64 = inspect_weight_bytes(dir);
    assert!(run["memory"]["flash_bytes"].as_u64().unwrap() > weights, "{run}");
    assert_eq!(run["time_unit"], "instructions");
    let times = run["times"].as_array().unwrap();
    assert_eq!(times.len(), 12);
    assert!(times.iter().all(|n| n.as_u64().unwrap() > 1_000_000), "{run}");
    // The first input timed its layers: one entry per op, summing to no more than its whole inference.
    let layers = run["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 14, "{run}");
    let layer_sum: f64 = layers.iter().map(|l| l["time"].as_f64().unwrap()).sum();
    assert!(layer_sum > 0.9 * times[0].as_f64().unwrap() && layer_sum <= times[0].as_f64().unwrap(), "{run}");
    let (peak, size) = (run["stack"][0].as_u64().unwrap(), run["stack"][1].as_u64().unwrap());
    assert!(peak > 256 && peak < size, "stack painting measured {peak} of {size}");
}

/// Packed weight bytes of `m.qfdm`, from `inspect --json`.
fn inspect_weight_bytes(dir: &std::path::Path) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&ok(dir, &["inspect", "m.qfdm", "--json"])).unwrap();
    json["total_weight_bytes"].as_u64().unwrap()
}

#[test]
fn run_refuses_what_it_cannot_do_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["synth", "--arch", "resnet8", "--input", "32x32x3", "--bits", "8", "--out", "m.qfdm"]);
    let err = |args: &[&str]| {
        let out = qfd_host(dir, args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err(&["run", "--board", "qemu-nope", "--model", "m.qfdm"]).contains("qemu-m4"));
    assert!(err(&["run", "--board", "qemu-m4", "--model", "missing.qfdm"]).contains("missing.qfdm"));
    assert!(err(&["run", "--board", "qemu-m4", "--model", "m.qfdm", "--samples", "0"]).contains("--samples"));
    // inspect --board says whether it fits, and by how much.
    let fits = ok(dir, &["inspect", "m.qfdm", "--board", "qemu-m4"]);
    assert!(fits.contains("qemu-m4: fits") && fits.contains("bytes left"), "{fits}");
    // A model too large for a board is refused before anything is built.
    ok(dir, &["synth", "--arch", "mobilenetv1", "--input", "224x224x3", "--bits", "4", "--out", "big.qfdm"]);
    let big = ok(dir, &["inspect", "big.qfdm", "--board", "qemu-m55", "--json"]);
    let big: serde_json::Value = serde_json::from_str(&big).unwrap();
    assert_eq!(big["board"]["fits"], false, "{big}");
    let msg = err(&["run", "--board", "qemu-m55", "--model", "big.qfdm", "--samples", "1"]);
    assert!(msg.contains("does not fit qemu-m55") && msg.contains("MISSING"), "{msg}");
    // A 32x32x3 model cannot read Fashion-MNIST images.
    if fashion_mnist_installed() {
        let msg = err(&["run", "--board", "qemu-m4", "--model", "m.qfdm", "--dataset", "fashion-mnist"]);
        assert!(msg.contains("[28, 28, 1]"), "{msg}");
    }
}
