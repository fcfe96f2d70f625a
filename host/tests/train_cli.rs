//! `qfd-host train` end to end on a small Fashion-MNIST subset (CPU): the stages a method needs are trained
//! once, written atomically, and reused.

mod common;

use common::fashion_mnist_installed;
use std::path::Path;
use std::process::Command;

fn qfd_host(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qfd-host")).current_dir(dir).args(args).output().expect("qfd-host runs")
}

#[test]
fn qfd_trains_fp_teacher_and_student_once_then_reuses_them() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--arch",
        "resnet8",
        "--method",
        "qfd",
        "--bits",
        "4",
        "--subset",
        "300",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--device",
        "cpu",
    ];
    let out = qfd_host(tmp.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for stage in
        ["fashion-mnist-resnet8-fp", "fashion-mnist-resnet8-fp-teacher-f4", "fashion-mnist-resnet8-qfd-w4a4"]
    {
        let dir = tmp.path().join("runs").join(stage);
        for file in ["state.json", "metrics.jsonl", "training.png"] {
            assert!(dir.join(file).is_file(), "{stage}/{file} missing");
        }
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 1, "{stage}: one epoch, one line");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{stage}: temporary files left");
    }
    // The distillation term is logged for the student only.
    let student =
        std::fs::read_to_string(tmp.path().join("runs/fashion-mnist-resnet8-qfd-w4a4/metrics.jsonl"))
            .unwrap();
    assert!(student.contains("\"train_distill_loss\":") && !student.contains("\"train_distill_loss\":null"));

    let again = qfd_host(tmp.path(), &args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(stderr.matches("is complete, reusing it").count(), 3, "{stderr}");
}

#[test]
fn bad_training_options_name_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["train", "--teacher-feature-bits", "3", "--device", "cpu"][..], "teacher-feature-bits"),
        (&["train", "--bits", "9/9"][..], "--bits"),
        (&["train", "--method", "magic"][..], "unknown method"),
        (&["train", "--arch", "resnet8", "--data", "/nonexistent", "--device", "cpu"][..], "/nonexistent"),
    ] {
        let out = qfd_host(tmp.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
