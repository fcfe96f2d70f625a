//! Helpers shared by the integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::path::Path;

/// Where `dataset-fashion-mnist` puts the training images.
const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

/// Whether Fashion-MNIST is installed. Without it a test is skipped with a note, except under CI (the `CI`
/// environment variable set), where `scripts/setup.sh` installs it and a missing data set is a failure.
pub fn fashion_mnist_installed() -> bool {
    let ok = Path::new(FASHION_MNIST).is_file();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{FASHION_MNIST} is missing: run scripts/setup.sh");
        eprintln!("Fashion-MNIST is not installed (scripts/setup.sh installs it); skipping");
    }
    ok
}

/// Whether `qemu-system-arm` can be started. Without it a test is skipped with a note, except under CI,
/// where `scripts/setup.sh` installs it and its absence is a failure.
pub fn qemu_installed() -> bool {
    let ok = std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "qemu-system-arm is missing: run scripts/setup.sh");
        eprintln!("qemu-system-arm is not installed (scripts/setup.sh installs it); skipping");
    }
    ok
}

/// Every op's output of the integer model on `image`, as `i32` per element in storage order.
pub fn integer_trace(model: &qfd_runtime::Model, image: &[u8]) -> Vec<Vec<i32>> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let mut outputs = Vec::new();
    model
        .run_traced(image, &mut arena, &mut logits, |i, _, out| {
            let n = model.desc().values[i + 1].elems();
            outputs.push((0..n).map(|i| out.i32_at(i)).collect());
        })
        .unwrap();
    outputs
}
