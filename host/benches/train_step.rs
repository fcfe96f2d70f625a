//! Training speed: images per second of one QFD training step (ResNet-20, W4A4 student, 4-bit-feature
//! teacher, batch 128, Fashion-MNIST-sized input) on the CPU, or on CUDA with `QFD_BENCH_DEVICE=cuda`.
//!
//! `benches/train-speed.sh` runs it beside the PyTorch eager reference `benches/train_step.py` (same model,
//! batch, loss, optimiser and threads) and prints the ratio. Environment: `QFD_BENCH_THREADS` (default 2),
//! `QFD_BENCH_STEPS` (timed steps, default 20), `QFD_BENCH_BATCH` (default 128), `QFD_BENCH_ARCH` (default
//! resnet20), `QFD_BENCH_METHODS` (default `qfd`; a comma-separated list, e.g. `qat,qfd,bwrf,bwrf-qfd`,
//! times each and prints its cost against the first: block-wise replacement with its default options, every
//! mixed path each step, beside its frozen full-precision partner), `QFD_BENCH_BWRF_PATHS` (`all`, or the
//! paths drawn per step).

use std::time::Instant;

use qfd_host::train::bwrf;
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

fn spec(arch: Arch, feature_bits: Option<u8>) -> NetSpec {
    NetSpec {
        arch,
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
        vit: Default::default(),
        log2_softmax: true,
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

    let arch_name: String = env_or("QFD_BENCH_ARCH", "resnet20".to_string());
    let arch: Arch = arch_name.parse().expect("QFD_BENCH_ARCH");
    let methods: Vec<Method> = env_or("QFD_BENCH_METHODS", "qfd".to_string())
        .split(',')
        .map(|m| m.trim().parse().expect("QFD_BENCH_METHODS"))
        .collect();

    let teacher_vs = VarStore::new(device);
    let teacher = Net::new(&teacher_vs.root(), &spec(arch, Some(4))).unwrap();
    let mut partner_vs = VarStore::new(device);
    let partner = Net::new(&partner_vs.root(), &spec(arch, None)).unwrap();
    partner_vs.freeze();
    let vs = VarStore::new(device);
    let student = Net::new(&vs.root(), &spec(arch, None)).unwrap();
    let cfg = TrainConfig { arch: arch_name.clone(), method: Method::Qfd, ..TrainConfig::default() };
    let mut opt = Optimizer::from_config(&cfg, &vs);

    let images = Tensor::rand([batch, 1, 28, 28], (Kind::Float, device));
    let labels = Tensor::randint(10, [batch], (Kind::Int64, device));
    tch::no_grad(|| {
        teacher.forward(&images, false, QuantMode::Calibrate);
        student.forward(&images, false, QuantMode::Calibrate);
    });
    let paths: bwrf::PathCount = env_or("QFD_BENCH_BWRF_PATHS", bwrf::PathCount::All);
    let options = bwrf::BwrfOptions { paths, ..cfg.bwrf() };
    let step = |opt: &mut Optimizer, method: Method, step: u64| {
        let (out, inputs) = match method.needs_partner() {
            true => student.forward_keeping_inputs(&images, true, QuantMode::Quantize),
            false => (student.forward(&images, true, QuantMode::Quantize), Vec::new()),
        };
        let t = method
            .needs_teacher()
            .then(|| tch::no_grad(|| teacher.forward(&images, false, QuantMode::Float)));
        let mut l = loss(method, &out, t.as_ref(), &labels, cfg.lambda, cfg.temperature);
        if method.needs_partner() {
            let count = bwrf::path_count(student.blocks(), options.mode);
            let paths = bwrf::paths_for_step(count, options.paths, 0, step);
            let p = bwrf::path_loss(&student, &partner, &images, &labels, &inputs, &paths, &options);
            l.total = &l.total + p * cfg.bwrf_weight;
        }
        opt.zero_grad();
        student.backward(&l.total).unwrap();
        opt.step().unwrap();
        // Wait for the device: reading the loss synchronises.
        f64::try_from(&l.total).unwrap()
    };
    let mut first_rate = None;
    for method in methods {
        for s in 0..3 {
            step(&mut opt, method, s);
        }
        let mut times = Vec::with_capacity(steps);
        for s in 0..steps {
            let t0 = Instant::now();
            step(&mut opt, method, s as u64);
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let rate = batch as f64 / median;
        let against = match first_rate {
            Some(first) => format!("  step cost {:.2}x the first method's", first / rate),
            None => String::new(),
        };
        first_rate.get_or_insert(rate);
        println!(
            "qfd-host {} (tch) {arch_name} w4a4 {method}  device {device:?}  threads {threads}  batch {batch}  \
             steps {steps}  median {:.1} ms  mean {:.1} ms  images/s {rate:.1}{against}",
            env!("CARGO_PKG_VERSION"),
            median * 1e3,
            mean * 1e3,
        );
    }
}
