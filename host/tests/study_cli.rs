//! `qfd-host study` end to end, tiny: a grid of three methods and one ablation run trained on 300 images and
//! exported (`--skip-device`), then checked on qemu-m4 and written up; run again, it trains nothing and
//! writes the same report. And several runs at once (`--jobs`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fashion_mnist_installed, qemu_installed};

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

const STUDY: &str = r#"
profile = "tiny"
description = "the CI check"
archs = ["resnet8"]
seeds = [0]
bits = ["2/2"]
methods = ["fp", "qat", "qfd-f1"]
test-images = 500
[device]
board = "qemu-m4"
samples = 4
[ablation]
bits = "2/2"
method = "qfd-f1"
lambdas = [0.1, 0.5]
[train]
subset = 300
fp-epochs = 1
epochs = 1
batch-size = 50
device = "cpu"
"#;

#[test]
fn a_tiny_study_trains_checks_on_the_board_reports_and_resumes() {
    if !fashion_mnist_installed() || !qemu_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), STUDY).unwrap();

    // Trained and exported first without the board (as on a GPU machine without QEMU)...
    let first = qfd_host(dir, &["study", "tiny.toml", "--skip-device", "--report", "out/fm.md"]);
    let log = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(first.status.success(), "{log}");
    assert!(log.contains("4 runs, 0 done, 4 to do"), "{log}");
    assert!(!log.contains("qemu-m4"), "{log}");
    // The ablation's lambda-0.1 run reuses the teacher the grid's qfd-f1 run trained.
    let teacher = "runs/study-tiny/resnet8/seed0/shared/teacher-f1";
    assert!(log.contains(&format!("{teacher} is complete, reusing it")), "{log}");
    assert!(dir.join(teacher).join("state.json").is_file());
    // ...then only checked on the board.
    let board = qfd_host(dir, &["study", "tiny.toml", "--report", "out/fm.md"]);
    let log = String::from_utf8_lossy(&board.stderr).into_owned();
    assert!(board.status.success(), "{log}");
    assert!(log.contains("4 runs, 0 done, 4 to do") && log.contains("qemu-m4"), "{log}");
    assert!(!log.contains("training"), "only the board checks ran:\n{log}");

    let results: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("out/fm/tiny-results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4);
    let report = std::fs::read_to_string(dir.join("out/fm.md")).unwrap();
    for r in &results {
        assert_eq!(r["test_images"], 500);
        if r["variant"] == "fp" {
            assert!(r["integer_acc"].is_null() && r["device"].is_null());
            continue;
        }
        let device = &r["device"];
        assert_eq!(device["mismatches"], 0, "every output on the board equals the host's: {r}");
        assert_eq!(device["device_correct"], device["host_correct"]);
        assert_eq!(device["samples"], 4);
        let integer = r["integer_acc"].as_f64().unwrap();
        assert!(r["agreement"].as_f64().unwrap() > 0.5, "fake-quant and integer models mostly agree: {r}");
        // The grid's integer accuracy appears in the report's table as a percentage.
        if r["group"] == "grid" {
            let row = format!("| {} | {:.2} |", r["variant"].as_str().unwrap(), 100.0 * integer);
            assert!(report.contains(&row), "{row} in\n{report}");
        }
    }
    assert!(report.contains("**0 outputs different from the host runtime's**"), "{report}");
    assert!(dir.join("out/fm/tiny-resnet8-accuracy-vs-bits.png").is_file());

    // Again: everything is done, nothing is trained, the report is the same.
    let second = qfd_host(dir, &["study", "tiny.toml", "--report", "out/fm.md"]);
    let log = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{log}");
    assert!(log.contains("4 runs, 4 done, 0 to do"), "{log}");
    assert!(!log.contains("training"), "{log}");
    assert_eq!(std::fs::read_to_string(dir.join("out/fm.md")).unwrap(), report);
}

#[test]
fn bad_study_files_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let missing = qfd_host(dir, &["study", "nope.toml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.toml"));
    std::fs::write(dir.join("bad.toml"), STUDY.replace("\"qat\"", "\"qad\"")).unwrap();
    let bad = qfd_host(dir, &["study", "bad.toml"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("bad.toml") && err.contains("qad"), "{err}");
    assert!(!dir.join("runs").exists(), "nothing was started");
}

#[test]
fn parallel_jobs_train_each_run_once_and_share_one_full_precision_model() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let study = r#"
profile = "jobs"
archs = ["resnet8"]
seeds = [0]
bits = ["2/2"]
methods = ["fp", "qat", "qfd-f1"]
test-images = 200
[train]
subset = 200
fp-epochs = 1
epochs = 1
batch-size = 50
device = "cpu"
"#;
    std::fs::write(dir.join("jobs.toml"), study).unwrap();
    let out = qfd_host(dir, &["study", "jobs.toml", "--jobs", "3", "--report", "out/jobs.md"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("3 runs at a time"), "{log}");
    let runs = dir.join("runs/study-jobs/resnet8/seed0");
    let mut logs = String::new();
    for run in ["fp", "qat-w2a2", "qfd-f1-w2a2"] {
        assert!(runs.join(run).join("study-result.json").is_file(), "{run} has its result");
        logs += &std::fs::read_to_string(runs.join(run).join("study.log")).unwrap();
    }
    // Three processes needed the full-precision model; one trained it, the others waited or reused it.
    assert_eq!(logs.matches("fp: training").count(), 1, "{logs}");
    assert_eq!(logs.matches("/shared/fp is complete, reusing it").count(), 2, "{logs}");
    let report = std::fs::read_to_string(dir.join("out/jobs.md")).unwrap();
    assert!(report.contains("| qat |"), "{report}");

    let bad = qfd_host(dir, &["study", "jobs.toml", "--jobs", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--jobs"));
}
