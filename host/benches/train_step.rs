//! Training speed: images per second of one QFD training step (ResNet-20, W4A4 student, 4-bit-feature
//! teacher, batch 128, Fashion-MNIST-sized input) on the CPU, or on CUDA with `QFD_BENCH_DEVICE=cuda`.
//!
//! `benches/train-speed.sh` runs it beside the PyTorch eager reference `benches/train_step.py` (same model,
//! batch, loss, optimiser and threads) and prints the ratio. Environment: `QFD_BENCH_THREADS` (default 2),
//! `QFD_BENCH_STEPS` (timed steps, default 20), `QFD_BENCH_BATCH` (default 128).

use std::time::Instant;

use qfd_host::train::config::{DeviceChoice, TrainConfig};
use qfd_host::train::method::{loss, Method};
use qfd_host::train::models::{Arch, Net, NetSpec};
use qfd_host::train::optim::Optimizer;
use qfd_host::train::quant::QuantMode;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spec(feature_bits: Option<u8>) -> NetSpec {
    NetSpec {
        arch: Arch::ResNet20,
        input: [1, 28, 28],
        classes: 10,
        weight_bits: 4,
        act_bits: 4,
        fp_first_last: false,
        feature_bits,
        mean: vec![0.2860],
        std: 0.3530,
        width: 1.0,
        ewgs_delta: None,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"train_step".contains(a.as_str())) {
        return;
    }
    let threads: i32 = env_or("QFD_BENCH_THREADS", 2);
    let steps: usize = env_or("QFD_BENCH_STEPS", 20);
    let batch: i64 = env_or("QFD_BENCH_BATCH", 128);
    let device = match std::env::var("QFD_BENCH_DEVICE").ok().as_deref() {
        Some(d) => d.parse::<DeviceChoice>().and_then(|d| d.resolve()).expect("QFD_BENCH_DEVICE"),
        None => Device::Cpu,
    };
    tch::set_num_threads(threads);
    tch::manual_seed(0);

    let teacher_vs = VarStore::new(device);
    let teacher = Net::new(&teacher_vs.root(), &spec(Some(4))).unwrap();
    let vs = VarStore::new(device);
    let student = Net::new(&vs.root(), &spec(None)).unwrap();
    let cfg = TrainConfig { arch: "resnet20".into(), method: Method::Qfd, ..TrainConfig::default() };
    let mut opt = Optimizer::from_config(&cfg, &vs);

    let images = Tensor::rand([batch, 1, 28, 28], (Kind::Float, device));
    let labels = Tensor::randint(10, [batch], (Kind::Int64, device));
    tch::no_grad(|| {
        teacher.forward(&images, false, QuantMode::Calibrate);
        student.forward(&images, false, QuantMode::Calibrate);
    });
    let step = |opt: &mut Optimizer| {
        let out = student.forward(&images, true, QuantMode::Quantize);
        let t = tch::no_grad(|| teacher.forward(&images, false, QuantMode::Float));
        let l = loss(Method::Qfd, &out, Some(&t), &labels, cfg.lambda, cfg.temperature);
        opt.zero_grad();
        student.backward(&l.total).unwrap();
        opt.step().unwrap();
        // Wait for the device: reading the loss synchronises.
        f64::try_from(&l.total).unwrap()
    };
    for _ in 0..3 {
        step(&mut opt);
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t0 = Instant::now();
        step(&mut opt);
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "qfd-host {} (tch) resnet20 w4a4 qfd  device {device:?}  threads {threads}  batch {batch}  \
         steps {steps}  median {:.1} ms  mean {:.1} ms  images/s {:.1}",
        env!("CARGO_PKG_VERSION"),
        median * 1e3,
        mean * 1e3,
        batch as f64 / median
    );
}
