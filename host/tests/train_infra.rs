//! Tests of the trainer's infrastructure: configuration, checkpoints and batching.

use std::fs;
use std::path::Path;

mod common;

use qfd_host::data::{Augment, Dataset, DatasetKind, Split};
use qfd_host::train::batches::{crop_flip, steps_per_epoch, DeviceData};
use qfd_host::train::bwrf::{BwrfMode, PathCount, PathLoss};
use qfd_host::train::checkpoint::{fingerprint, Checkpoint, CheckpointError, TrainState, STATE_FILE};
use qfd_host::train::config::{ConfigError, DeviceChoice, OptimizerKind, TrainConfig};
use qfd_host::train::method::Method;
use qfd_host::train::metrics::Evaluation;
use qfd_host::train::run::{train, TrainError};
use tch::{nn::VarStore, Device, Kind, Tensor};

// ---- config ----

fn invalid_field(c: &TrainConfig) -> &'static str {
    match c.validate() {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn default_config_is_valid_and_round_trips_through_toml() {
    let c = TrainConfig::default();
    c.validate().unwrap();
    assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml_string()).unwrap(), c);
    let custom = TrainConfig {
        arch: "mobilenetv2".into(),
        dataset: DatasetKind::Cifar100,
        data: Some("/data/c100".into()),
        subset: Some(500),
        method: Method::LogitKd,
        optimizer: OptimizerKind::Adam,
        lr: Some(2e-3),
        quant_lr: Some(0.0),
        device: DeviceChoice::Cuda(1),
        teacher: Some("runs/t".into()),
        width: 0.5,
        bwrf_mode: BwrfMode::Prefix,
        bwrf_path_loss: PathLoss::CeKd,
        bwrf_paths: PathCount::Sample(3),
        bwrf_weight: 0.5,
        ..c
    };
    custom.validate().unwrap();
    let text = custom.to_toml_string();
    assert!(text.contains("dataset = \"cifar100\"") && text.contains("device = \"cuda:1\""), "{text}");
    assert!(text.contains("method = \"logit-kd\"") && text.contains("fp-first-last = false"), "{text}");
    assert!(text.contains("bwrf-path-loss = \"ce+kd\"") && text.contains("bwrf-paths = 3"), "{text}");
    assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), custom);
}

#[test]
fn lr_batch_scaling_multiplies_every_rate_by_the_batch_over_128() {
    let c = TrainConfig { batch_size: 512, ..TrainConfig::default() };
    assert_eq!(c.lr_factor(), 1.0, "off by default");
    let scaled = TrainConfig { lr_batch_scaling: true, ..c };
    scaled.validate().unwrap();
    assert_eq!(scaled.lr_factor(), 4.0);
    assert_eq!(TrainConfig { batch_size: 64, ..scaled.clone() }.lr_factor(), 0.5);
    assert_ne!(fingerprint(&scaled), fingerprint(&TrainConfig { lr_batch_scaling: false, ..scaled.clone() }));
}

#[test]
fn config_file_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.toml");
    fs::write(&path, "arch = \"resnet8\"\nepochs = 3\n").unwrap();
    let c = TrainConfig::from_toml_file(&path).unwrap();
    assert_eq!((c.arch.as_str(), c.epochs, c.wbits), ("resnet8", 3, 4));
    for (text, key) in
        [("lamda = 0.5\n", "lamda"), ("epochs = \"ten\"\n", "epochs"), ("method = \"kd\"\n", "kd")]
    {
        fs::write(&path, text).unwrap();
        let e = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(e.contains("train.toml") && e.contains(key), "{e}");
    }
    let e = TrainConfig::from_toml_file(&dir.path().join("none.toml")).unwrap_err().to_string();
    assert!(e.contains("none.toml"), "{e}");
}

#[test]
fn validation_names_the_bad_option() {
    let ok = TrainConfig::default();
    let cases: Vec<(TrainConfig, &str)> = vec![
        (TrainConfig { wbits: 0, ..ok.clone() }, "wbits"),
        (TrainConfig { abits: 9, ..ok.clone() }, "abits"),
        (TrainConfig { teacher_feature_bits: 2, ..ok.clone() }, "teacher-feature-bits"),
        (TrainConfig { lambda: -0.1, ..ok.clone() }, "lambda"),
        (TrainConfig { temperature: 0.0, ..ok.clone() }, "temperature"),
        (TrainConfig { lr: Some(0.0), ..ok.clone() }, "lr"),
        (TrainConfig { quant_lr: Some(f64::NAN), ..ok.clone() }, "quant-lr"),
        (TrainConfig { momentum: 1.0, ..ok.clone() }, "momentum"),
        (TrainConfig { weight_decay: -1.0, ..ok.clone() }, "weight-decay"),
        (TrainConfig { width: 0.0, ..ok.clone() }, "width"),
        (TrainConfig { batch_size: 0, ..ok.clone() }, "batch-size"),
        (TrainConfig { epochs: 0, ..ok.clone() }, "epochs"),
        (TrainConfig { subset: Some(0), ..ok.clone() }, "subset"),
        (TrainConfig { warmup_epochs: 11.0, ..ok.clone() }, "warmup-epochs"),
        (TrainConfig { final_lr_fraction: 2.0, ..ok.clone() }, "final-lr-fraction"),
        (TrainConfig { arch: " ".into(), ..ok.clone() }, "arch"),
        (TrainConfig { method: Method::Qat, teacher: Some("t".into()), ..ok.clone() }, "teacher"),
    ];
    for (c, field) in cases {
        assert_eq!(invalid_field(&c), field);
        assert!(c.validate().unwrap_err().to_string().contains(field));
    }
}

#[test]
fn learning_rates_and_run_directory_defaults() {
    let c = TrainConfig::default();
    // Quantizer parameters train at the weights' rate: their gradients carry LSQ's scale.
    assert_eq!((c.lr(), c.quant_lr()), (0.05, 0.05));
    let adam = TrainConfig { optimizer: OptimizerKind::Adam, quant_lr: Some(1e-4), ..c.clone() };
    assert_eq!((adam.lr(), adam.quant_lr()), (1e-3, 1e-4));
    let resolved = TrainConfig { quant_lr: None, ..adam.clone() }.with_resolved_lrs();
    assert_eq!((resolved.lr, resolved.quant_lr), (Some(1e-3), Some(1e-3)));
    assert!(adam.with_resolved_lrs().to_toml_string().contains("quant-lr = 0.0001"));
    assert_eq!(c.run_dir(), Path::new("runs/fashion-mnist-resnet20-qfd-w4a4"));
    let fp = TrainConfig { method: Method::Fp, arch: "mobilenetv1".into(), width: 0.25, ..c.clone() };
    assert_eq!(fp.run_dir(), Path::new("runs/fashion-mnist-mobilenetv1-x0.25-fp"));
    assert_eq!(TrainConfig { run_dir: Some("x".into()), ..c.clone() }.run_dir(), Path::new("x"));
    let s = c.schedule();
    assert_eq!((s.base_lr, s.total_epochs, s.warmup_epochs), (0.05, 10, 1.0));
    s.validate().unwrap();
}

#[test]
fn devices_parse_and_resolve() {
    let parse = |s: &str| s.parse::<DeviceChoice>();
    assert_eq!(parse("auto").unwrap(), DeviceChoice::Auto);
    assert_eq!(parse("CPU").unwrap(), DeviceChoice::Cpu);
    assert_eq!(parse("cuda").unwrap(), DeviceChoice::Cuda(0));
    assert_eq!(parse("cuda:3").unwrap(), DeviceChoice::Cuda(3));
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1"] {
        assert!(parse(bad).unwrap_err().to_string().contains(bad), "{bad}");
    }
    assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    let auto = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    assert_eq!(DeviceChoice::Auto.resolve().unwrap(), auto);
    let e = DeviceChoice::Cuda(99).resolve().unwrap_err().to_string();
    assert!(e.contains("cuda:99"), "{e}");
}

// ---- checkpoint ----

fn model(vs: &VarStore, width: i64) {
    let root = vs.root();
    let _ = (&root / "conv").randn("weight", &[width, 3], 0.0, 1.0);
    let _ = (&root / "conv").randn("lw", &[1], 0.0, 1.0);
    // Not trainable, like batch-norm running statistics: saved all the same.
    let mut mean = (&root / "bn").zeros_no_train("running_mean", &[width]);
    tch::no_grad(|| mean.copy_(&Tensor::randn([width], (Kind::Float, Device::Cpu))));
}

fn state(epochs_completed: usize) -> TrainState {
    TrainState {
        epochs_completed,
        step: 7 * epochs_completed as u64,
        best_test_acc: Some(0.5),
        config: TrainConfig { arch: "resnet8".into(), epochs: 4, ..TrainConfig::default() },
        metrics: vec![],
        start: Some(Evaluation { loss: 0.9, acc: 0.6, distill: Some(0.01) }),
    }
}

fn same_values(a: &VarStore, b: &VarStore) -> bool {
    let (a, b) = (a.variables(), b.variables());
    a.len() == b.len() && a.iter().all(|(n, t)| b[n].equal(t))
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn checkpoint_round_trips_weights_extra_tensors_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (vs, mut fresh) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
    model(&vs, 4);
    model(&fresh, 4);
    assert!(!same_values(&vs, &fresh));
    let momentum = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    Checkpoint::save(&run, &vs, &[("sgd.momentum.conv.weight", &momentum)], &state(2)).unwrap();
    assert!(Checkpoint::exists(&run));
    let other_device = TrainConfig { device: DeviceChoice::Cuda(1), ..state(2).config };
    let loaded = Checkpoint::load(&run, &mut fresh, &other_device).unwrap();
    assert!(same_values(&vs, &fresh));
    assert_eq!(loaded.state, state(2));
    assert!(loaded.extra["sgd.momentum.conv.weight"].equal(&momentum));
    assert_eq!(Checkpoint::peek(&run).unwrap().epochs_completed, 2);
    // Saving again replaces the files of the previous checkpoint.
    Checkpoint::save(&run, &vs, &[], &state(3)).unwrap();
    let names = files(&run);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("model-e0003-") && names[1] == STATE_FILE, "{names:?}");
}

#[test]
fn an_interrupted_save_leaves_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, mut fresh) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
    model(&vs, 4);
    model(&fresh, 4);
    Checkpoint::save(dir.path(), &vs, &[], &state(1)).unwrap();
    let good: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    // The next save was killed: a half-written temporary weights file, a complete weights file that
    // state.json does not name yet, and a half-written temporary state file.
    tch::no_grad(|| vs.variables().values_mut().for_each(|t| _ = t.fill_(7.0)));
    fs::write(dir.path().join(".model-e0002-dead.safetensors.tmp"), b"\x10\0\0\0partial").unwrap();
    let newer: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&newer, dir.path().join("model-e0002-beef.safetensors")).unwrap();
    fs::write(dir.path().join(".state.json.1.0.tmp"), b"{\"format\": 1, \"weig").unwrap();
    let loaded = Checkpoint::load(dir.path(), &mut fresh, &state(1).config).unwrap();
    assert_eq!(loaded.state.epochs_completed, 1);
    let values = fresh.variables();
    assert!(good.iter().all(|(n, t)| values[n].equal(t)));
    // The next complete save removes the leftovers (the state temporary belongs to fsutil's writer).
    Checkpoint::save(dir.path(), &vs, &[], &state(2)).unwrap();
    assert_eq!(files(dir.path()).iter().filter(|n| n.contains("safetensors")).count(), 1);
}

#[test]
fn checkpoint_refuses_another_config_other_shapes_and_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let vs = VarStore::new(Device::Cpu);
    model(&vs, 4);
    Checkpoint::save(dir.path(), &vs, &[], &state(1)).unwrap();

    let mut same = VarStore::new(Device::Cpu);
    model(&same, 4);
    let other = TrainConfig { arch: "resnet20".into(), wbits: 2, ..state(1).config };
    assert_ne!(fingerprint(&other), fingerprint(&state(1).config));
    let e = Checkpoint::load(dir.path(), &mut same, &other).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CheckpointError::ConfigMismatch { .. }), "{msg}");
    assert!(
        msg.contains("arch: \"resnet8\" in the checkpoint vs \"resnet20\" now") && msg.contains("wbits"),
        "{msg}"
    );

    let mut wider = VarStore::new(Device::Cpu);
    model(&wider, 8);
    let _ = (&wider.root() / "fc").zeros("weight", &[2]);
    let msg = Checkpoint::load(dir.path(), &mut wider, &state(1).config).unwrap_err().to_string();
    assert!(
        msg.contains("conv.weight is [4, 3], the model has [8, 3]") && msg.contains("fc.weight missing"),
        "{msg}"
    );

    let weights = files(dir.path()).into_iter().find(|n| n.starts_with("model-")).unwrap();
    let mut bytes = fs::read(dir.path().join(&weights)).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    fs::write(dir.path().join(&weights), bytes).unwrap();
    let e = Checkpoint::load(dir.path(), &mut same, &state(1).config).unwrap_err();
    assert!(matches!(e, CheckpointError::Damaged { .. }) && e.to_string().contains(&weights), "{e}");

    let e = Checkpoint::load(&dir.path().join("none"), &mut same, &state(1).config).unwrap_err();
    assert!(e.to_string().contains("none/state.json"), "{e}");
}

// ---- batches ----

/// `n` images of 1 x 4 x 5 whose pixel (y, x) is `10 * y + x + 100 * (i % 2)`, labelled `i`.
fn grid_data(n: usize) -> DeviceData {
    let mut images = Vec::new();
    for i in 0..n {
        images.extend((0..20).map(|p| (10 * (p / 5) + p % 5 + 100 * (i % 2)) as u8));
    }
    let images = Tensor::from_slice(&images).view([n as i64, 1, 4, 5]);
    DeviceData::new(images, Tensor::from_slice(&(0..n as u8).collect::<Vec<_>>())).unwrap()
}

fn labels_of(batches: impl Iterator<Item = qfd_host::train::batches::Batch>) -> Vec<i64> {
    batches.flat_map(|b| Vec::<i64>::try_from(&b.labels).unwrap()).collect()
}

#[test]
fn an_epoch_visits_every_image_once_in_a_seeded_order() {
    let data = grid_data(10);
    let aug = Augment { crop_padding: 1, hflip: true };
    assert_eq!(steps_per_epoch(10, 4), 3);
    let batches: Vec<_> = data.train_batches(4, 5, 1, aug).collect();
    let sizes: Vec<_> = batches.iter().map(|b| b.images.size()).collect();
    assert_eq!(sizes, [vec![4, 1, 4, 5], vec![4, 1, 4, 5], vec![2, 1, 4, 5]]);
    assert!(batches.iter().all(|b| b.images.kind() == Kind::Float && b.labels.kind() == Kind::Int64));
    let max = batches.iter().map(|b| b.images.max().double_value(&[])).fold(0.0, f64::max);
    assert!(max <= 1.0 && max > 0.4, "{max}");
    let order = labels_of(data.train_batches(4, 5, 1, aug));
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(order, labels_of(data.train_batches(3, 5, 1, aug)), "the order depends on (seed, epoch) only");
    assert_ne!(order, labels_of(data.train_batches(4, 5, 2, aug)));
    assert_ne!(order, labels_of(data.train_batches(4, 6, 1, aug)));
    let a: Vec<_> = data.train_batches(4, 5, 1, aug).collect();
    assert!(a.iter().zip(&batches).all(|(x, y)| x.images.equal(&y.images)), "augmentation is seeded too");
    assert_eq!(labels_of(data.test_batches(4)), (0..10).collect::<Vec<_>>());
}

#[test]
fn without_augmentation_batches_are_the_images_over_255() {
    let data = grid_data(6);
    for b in data.train_batches(4, 0, 0, Augment { crop_padding: 0, hflip: false }) {
        let want = data.images().index_select(0, &b.labels).to_kind(Kind::Float) / 255.0;
        assert!(b.images.equal(&want));
    }
}

#[test]
fn crop_offsets_shift_the_image_and_flip_mirrors_it() {
    let data = grid_data(3);
    let x = data.images();
    let p = 2;
    let offsets = |dy: i64, dx: i64| Tensor::from_slice(&[dy, dx].repeat(3)).view([3, 2]);
    let no = Tensor::from_slice(&[false; 3]);
    assert!(crop_flip(x, p, &offsets(p, p), &no).equal(x), "offset (p, p) keeps the image");
    assert!(crop_flip(x, p, &offsets(p, p), &Tensor::from_slice(&[true; 3])).equal(&x.flip([3])));
    // Offset (dy, dx) in the padded image: out(y, x) = in(y + dy - p, x + dx - p), zero outside.
    for (dy, dx) in [(0, 0), (4, 1), (1, 3)] {
        let out = crop_flip(x, p, &offsets(dy, dx), &no);
        for (y, xx) in (0..4).flat_map(|y| (0..5).map(move |xx| (y, xx))) {
            let (sy, sx) = (y + dy - p, xx + dx - p);
            let want =
                if (0..4).contains(&sy) && (0..5).contains(&sx) { x.int64_value(&[1, 0, sy, sx]) } else { 0 };
            assert_eq!(out.int64_value(&[1, 0, y, xx]), want, "offset ({dy}, {dx}) at ({y}, {xx})");
        }
    }
    // Flip applies to the cropped window, and only to the images asked for.
    let mixed = crop_flip(x, p, &offsets(1, 3), &Tensor::from_slice(&[true, false, true]));
    let cropped = crop_flip(x, p, &offsets(1, 3), &no);
    assert!(mixed.get(0).equal(&cropped.get(0).flip([2])) && mixed.get(1).equal(&cropped.get(1)));
}

#[test]
fn a_dataset_is_laid_out_channels_first_on_the_device() {
    let ds = Dataset {
        kind: DatasetKind::Cifar10,
        split: Split::Test,
        // 2 images of 1 x 2 pixels x 3 channels, channel last: value = 100 * image + 10 * x + channel.
        images: vec![0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112],
        labels: vec![3, 7],
        shape: [1, 2, 3],
        class_names: DatasetKind::Cifar10.default_class_names(),
    };
    let data = DeviceData::from_dataset(&ds, Device::Cpu);
    assert_eq!(data.images().size(), [2, 3, 1, 2]);
    assert_eq!(data.images().int64_value(&[1, 2, 0, 1]), 112);
    assert_eq!(data.images().int64_value(&[0, 1, 0, 0]), 1);
    assert_eq!(Vec::<i64>::try_from(data.labels()).unwrap(), [3, 7]);
    let e = DeviceData::new(
        Tensor::zeros([2, 3], (Kind::Uint8, Device::Cpu)),
        Tensor::zeros([2], (Kind::Int64, Device::Cpu)),
    );
    assert!(e.unwrap_err().to_string().contains("[2, 3]"));
}

// ---- training loop ----

#[test]
fn a_loss_that_explodes_stops_the_run_within_the_epoch_and_leaves_no_checkpoint() {
    if !common::fashion_mnist_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("fp");
    let cfg = TrainConfig {
        arch: "resnet8".into(),
        method: Method::Fp,
        subset: Some(512),
        epochs: 1,
        batch_size: 16,
        lr: Some(1e12),
        warmup_epochs: 0.0,
        device: DeviceChoice::Cpu,
        run_dir: Some(run_dir.clone()),
        ..TrainConfig::default()
    };
    match train(&cfg, false) {
        Err(TrainError::Diverged { stage: "fp", epoch: 1, loss, .. }) => {
            assert!(!loss.is_finite() || loss > 1e6, "{loss}")
        }
        other => panic!("expected the run to stop as diverged, got {other:?}"),
    }
    assert!(!Checkpoint::exists(&run_dir), "no epoch completed, so no checkpoint");
}
