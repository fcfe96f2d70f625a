//! The `qfd-host` binary as a user runs it: commands, outputs, exit codes and error messages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `qfd-host` with `args`.
fn qfd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qfd-host")).args(args).output().expect("qfd-host starts")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: the exit status, a message containing every `needles`, and no panic.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

fn synth(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut all = vec!["synth", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = qfd(&all);
    assert!(o.status.success(), "synth {args:?}: {}", stderr(&o));
    out
}

fn inspect_json(path: &Path) -> Value {
    let o = qfd(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(o.status.success(), "inspect {path:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("inspect --json prints one JSON object")
}

/// Names of the files in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// MACs of MLPerf Tiny's ResNet-8 on an `h x w x 3` input (`h`, `w` multiples of 4), from its definition:
/// a 3x3 stem to 16 channels, three basic blocks of 16/32/64 channels (the last two stride 2 with a 1x1
/// shortcut), a global pool and a 10-way classifier. A conv costs `Ho * Wo * Cout * kh * kw * Cin`.
fn resnet8_macs(h: u64, w: u64) -> u64 {
    let conv = |ho: u64, wo: u64, cout: u64, k: u64, cin: u64| ho * wo * cout * k * k * cin;
    let stem = conv(h, w, 16, 3, 3);
    let stage1 = 2 * conv(h, w, 16, 3, 16);
    let (h2, w2) = (h / 2, w / 2);
    let stage2 = conv(h2, w2, 32, 3, 16) + conv(h2, w2, 32, 3, 32) + conv(h2, w2, 32, 1, 16);
    let (h3, w3) = (h / 4, w / 4);
    let stage3 = conv(h3, w3, 64, 3, 32) + conv(h3, w3, 64, 3, 64) + conv(h3, w3, 64, 1, 32);
    let classifier = 64 * 10;
    stem + stage1 + stage2 + stage3 + classifier
}

#[test]
fn help_lists_the_commands_and_version_prints_the_version() {
    let o = qfd(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("synth") && help.contains("inspect"), "{help}");
    let o = qfd(&["synth", "--help"]);
    for default in ["[default: 32x32x3]", "[default: 8/8]", "[default: 1.0]", "[default: 10]", "[default: 0]"]
    {
        assert!(stdout(&o).contains(default), "synth --help lacks {default}");
    }
    let o = qfd(&["--version"]);
    assert_eq!(stdout(&o).trim(), concat!("qfd-host ", env!("CARGO_PKG_VERSION")));
    assert_fails(&qfd(&[]), 2, &["Usage"]);
}

#[test]
fn resnet8_matches_mlperf_tiny_and_fits_three_16k_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), "resnet8.qfdm", &["--arch", "resnet8"]);
    let r = inspect_json(&path);
    assert_eq!(resnet8_macs(32, 32), 12_501_632);
    assert_eq!(r["total_macs"], resnet8_macs(32, 32));
    // Tensors in three 16 KiB buffers; the kernels' scratch (the im2col of two pixels) under 3 KB.
    assert!(r["values_bytes"].as_u64().unwrap() <= 49_152, "{}", r["values_bytes"]);
    assert!(r["scratch_bytes"].as_u64().unwrap() <= 3_000, "{}", r["scratch_bytes"]);
    let sum = r["values_bytes"].as_u64().unwrap() + r["scratch_bytes"].as_u64().unwrap();
    assert_eq!(r["arena_bytes"].as_u64().unwrap(), sum);
    assert_eq!(r["arch"], "resnet8");
    assert_eq!(r["input"]["shape"], serde_json::json!([32, 32, 3]));
    assert_eq!(r["classes"], 10);
    assert_eq!(r["file_bytes"], fs::metadata(&path).unwrap().len());
    let layers = r["layers"].as_array().unwrap();
    let macs: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, 12_501_632);
    assert_eq!(layers[0]["kind"], "conv2d");
    assert_eq!(layers[0]["kernel"], serde_json::json!([3, 3]));
    assert_eq!(layers.last().unwrap()["kind"], "fully_connected");
}

#[test]
fn every_architecture_synthesises_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 5] = [
        ("resnet8", &["--bits", "4/4", "--input", "16x16x1"]),
        ("resnet20", &["--bits", "2", "--classes", "100"]),
        ("mobilenetv1", &["--bits", "4/8", "--width", "0.25", "--input", "96x96x3"]),
        ("mobilenetv2", &["--bits", "8/4", "--width", "0.35", "--input", "64x64x3"]),
        ("mobilenetv2", &["--bits", "1/1", "--width", "0.5", "--seed", "7"]),
    ];
    for (i, (arch, args)) in cases.iter().enumerate() {
        let mut all = vec!["--arch", arch];
        all.extend_from_slice(args);
        let path = synth(dir.path(), &format!("{i}.qfdm"), &all);
        let r = inspect_json(&path);
        assert_eq!(r["arch"], *arch);
        let layers = r["layers"].as_array().unwrap();
        assert!(layers.len() > 10, "{arch}: {} layers", layers.len());
        let text = qfd(&["inspect", path.to_str().unwrap()]);
        assert!(text.status.success());
        // One header line per field, a blank line, the column header, then one row per layer.
        let rows = stdout(&text).lines().skip_while(|l| !l.is_empty()).count() - 2;
        assert_eq!(rows, layers.len(), "{}", stdout(&text));
    }
    assert_eq!(inspect_json(&dir.path().join("1.qfdm"))["classes"], 100);
    let vww = inspect_json(&dir.path().join("2.qfdm"));
    assert_eq!((vww["weight_bits"].as_u64(), vww["act_bits"].as_u64()), (Some(4), Some(8)));
    // MobileNetV1 0.25x at 96x96x3 (visual wake words) is about 7.5 M MACs.
    let macs = vww["total_macs"].as_u64().unwrap();
    assert!((7_000_000..8_000_000).contains(&macs), "{macs}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = synth(dir.path(), "a.qfdm", &["--arch", "resnet8", "--seed", "3"]);
    let b = synth(dir.path(), "b.qfdm", &["--arch", "resnet8", "--seed", "3"]);
    let c = synth(dir.path(), "c.qfdm", &["--arch", "resnet8", "--seed", "4"]);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_ne!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
}

#[test]
fn bad_model_files_are_refused_with_the_reason_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let good = fs::read(synth(dir.path(), "good.qfdm", &["--arch", "resnet8", "--bits", "4/4"])).unwrap();
    let mut flipped = good.clone();
    // The payload is the last field of the header, so the last byte is payload.
    *flipped.last_mut().unwrap() ^= 0x01;
    // Byte 4 is the major version (a one-byte varint): files of a future and of an older incompatible format
    // (format 1 had 9-byte requantization records).
    let major = qfd_runtime::format::FORMAT_MAJOR;
    let (mut future, mut old) = (good.clone(), good.clone());
    future[4] = major as u8 + 1;
    old[4] = major as u8 - 1;
    let future_reason = format!("format version {} is not supported", major + 1);
    let old_reason = format!("format version {} is not supported", major - 1);
    let cases: [(&str, Vec<u8>, &str); 7] = [
        ("empty", Vec::new(), "truncated"),
        ("random", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), "QFDM"),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("flipped", flipped, "CRC"),
        ("future", future, &future_reason),
        ("old", old, &old_reason),
        ("trailing", [good.as_slice(), b"junk"].concat(), "unexpected bytes"),
    ];
    for (name, bytes, reason) in cases {
        let path = dir.path().join(format!("{name}.qfdm"));
        fs::write(&path, bytes).unwrap();
        let path = path.to_str().unwrap();
        let hint = if name == "future" || name == "old" {
            "hint: re-export the model with this version of qfd-host"
        } else {
            "hint: the file is corrupted or not a .qfdm model; re-export it"
        };
        for json in [false, true] {
            let o = if json { qfd(&["inspect", "--json", path]) } else { qfd(&["inspect", path]) };
            assert_fails(&o, 1, &[&format!("error: {path}: "), reason, hint]);
            assert!(o.stdout.is_empty(), "{name}: printed {}", stdout(&o));
        }
    }
    let missing = dir.path().join("missing.qfdm");
    let o = qfd(&["inspect", missing.to_str().unwrap()]);
    assert_fails(&o, 1, &["error: cannot read", "missing.qfdm"]);
}

#[test]
fn bad_arguments_are_usage_errors_naming_the_problem() {
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--bits", "9/9"], &["--bits must be W/A with each 1-8"]),
        (&["--bits", "4/x"], &["--bits must be W/A"]),
        (&["--input", "0x32x3"], &["--input", "H is 0"]),
        (&["--input", "32x32"], &["--input must be HxWxC"]),
        (&["--classes", "ten"], &["--classes"]),
        (&["--bogus"], &["--bogus"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never-written.qfdm");
    let out = out.to_str().unwrap();
    for (args, needles) in cases {
        let mut all = vec!["synth", "--arch", "resnet8", "--out", out];
        all.extend_from_slice(args);
        assert_fails(&qfd(&all), 2, needles);
    }
    let o = qfd(&["synth", "--arch", "foo", "--out", out]);
    assert_fails(&o, 2, &["'foo'", "--arch", "resnet8, resnet20, mobilenetv1, mobilenetv2, vit"]);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn settings_the_architecture_cannot_take_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.qfdm");
    let out = out.to_str().unwrap();
    let o = qfd(&["synth", "--arch", "resnet8", "--input", "32x32x5", "--out", out]);
    assert_fails(&o, 1, &["cannot build resnet8", "1-4 channels"]);
    let o = qfd(&["synth", "--arch", "mobilenetv1", "--width", "0", "--out", out]);
    assert_fails(&o, 1, &["width"]);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn output_into_a_missing_directory_is_refused_leaving_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no-such-dir").join("m.qfdm");
    let o = qfd(&["synth", "--arch", "resnet8", "--out", out.to_str().unwrap()]);
    assert_fails(&o, 1, &["cannot write", "no-such-dir", "does not exist"]);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn an_existing_output_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.qfdm");
    fs::write(&path, b"old contents").unwrap();
    // A reader that opened the old file keeps reading it whole: the new model is a new file renamed over
    // the name, never the old file rewritten in place.
    let old_reader = fs::File::open(&path).unwrap();
    synth(dir.path(), "m.qfdm", &["--arch", "resnet8"]);
    assert_eq!(std::io::read_to_string(old_reader).unwrap(), "old contents");
    assert_eq!(inspect_json(&path)["arch"], "resnet8");
    assert_eq!(entries(dir.path()), ["m.qfdm"]);
}
