//! Data loading tests: synthetic files in a temporary directory, decoded exactly, and every corruption refused
//! with an error naming the file; the real Fashion-MNIST too when it is installed.

mod cifar;
mod idx;

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;

/// Loads a split that must be refused as corrupt; returns the file named and the problem.
fn corrupt_file(kind: DatasetKind, split: Split, dir: &Path) -> (String, Corruption) {
    match Dataset::load(kind, split, Some(dir)) {
        Err(e @ DataError::Corrupt { .. }) => {
            let DataError::Corrupt { path, problem, hint } = &e else { unreachable!() };
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()) && text.contains(hint), "{text}");
            assert_eq!(*hint, kind.how_to_get());
            (file_name(path), problem.clone())
        }
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// A dataset of `labels.len()` 1x1x1 images whose pixel is the image's index.
fn tiny(labels: &[u8], classes: usize) -> Dataset {
    Dataset {
        kind: DatasetKind::Cifar100,
        split: Split::Train,
        images: (0..labels.len()).map(|i| i as u8).collect(),
        labels: labels.to_vec(),
        shape: [1, 1, 1],
        class_names: (0..classes).map(|c| format!("c{c}")).collect(),
    }
}

#[test]
fn subset_is_stratified_ordered_and_deterministic() {
    // 12 of class 0, 6 of class 1, 2 of class 2, interleaved.
    let labels: Vec<u8> = (0..20)
        .map(|i| {
            if i % 10 == 3 {
                2
            } else if i % 3 == 1 {
                1
            } else {
                0
            }
        })
        .collect();
    let set = tiny(&labels, 3);
    assert_eq!(set.class_counts(), [12, 6, 2]);

    assert_eq!(set.clone().subset(3).class_counts(), [1, 1, 1]);
    assert_eq!(set.clone().subset(7).class_counts(), [3, 2, 2]);
    assert_eq!(set.clone().subset(12).class_counts(), [5, 5, 2]);
    let sub = set.clone().subset(12);
    assert_eq!(sub.labels, set.clone().subset(12).labels);
    assert_eq!(sub.images, set.clone().subset(12).images);
    // The images move with their labels and keep the original order.
    assert!(sub.images.windows(2).all(|w| w[0] < w[1]));
    for (i, &l) in sub.labels.iter().enumerate() {
        assert_eq!(l, labels[usize::from(sub.image(i)[0])]);
    }
    assert_eq!(set.clone().subset(20).images, set.images);
    assert_eq!(set.clone().subset(1000).len(), 20);
    assert!(set.subset(0).is_empty());
}

#[test]
fn channel_stats_are_mean_and_population_std_of_pixel_over_255() {
    let set = Dataset { images: vec![0, 51, 255, 51, 0, 51, 255, 51], shape: [1, 2, 2], ..tiny(&[0, 1], 2) };
    let norm = set.channel_stats();
    assert_eq!(norm.mean, [0.5, 0.2]);
    assert_eq!(norm.std, [0.5, 0.0]);
    let empty = tiny(&[], 2).channel_stats();
    assert_eq!((empty.mean, empty.std), (vec![0.0], vec![0.0]));
}

#[test]
fn kinds_parse_print_and_describe_themselves() {
    for kind in DatasetKind::ALL {
        assert_eq!(kind.to_string().parse::<DatasetKind>(), Ok(kind));
        assert_eq!(kind.default_class_names().len(), kind.num_classes());
        let channels = if kind == DatasetKind::FashionMnist { 1 } else { 3 };
        let norm = kind.reference_normalization();
        assert_eq!((norm.mean.len(), norm.std.len()), (channels, channels));
    }
    assert_eq!("CIFAR10".parse(), Ok(DatasetKind::Cifar10));
    let err = "mnist".parse::<DatasetKind>().unwrap_err().to_string();
    assert!(err.contains("'mnist'") && err.contains("fashion-mnist, cifar10, cifar100"), "{err}");
    assert_eq!(DatasetKind::Cifar10.augment(), Augment { crop_padding: 4, hflip: true });
    assert_eq!(DatasetKind::FashionMnist.augment(), Augment { crop_padding: 2, hflip: true });
    assert_eq!(DatasetKind::FashionMnist.default_dir(), Some(PathBuf::from(FASHION_MNIST_DIR)));
    assert_eq!(DatasetKind::Cifar100.default_dir(), None);
    assert_eq!(Split::Test.to_string(), "test");
}

#[test]
fn missing_files_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let expect_missing = |kind, split, dir: &Path, file: &str, fix: &str| {
        let err = Dataset::load(kind, split, Some(dir)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(&err, DataError::Missing { path, .. } if file_name(path) == file), "{text}");
        assert!(text.contains(&dir.join(file).display().to_string()) && text.contains(fix), "{text}");
    };
    let fm = DatasetKind::FashionMnist;
    expect_missing(
        fm,
        Split::Train,
        dir.path(),
        "train-images-idx3-ubyte.gz",
        "apt-get install dataset-fashion-mnist",
    );
    expect_missing(fm, Split::Test, dir.path(), "t10k-images-idx3-ubyte.gz", "scripts/setup.sh");
    expect_missing(fm, Split::Train, &dir.path().join("nowhere"), "train-images-idx3-ubyte.gz", "--data DIR");
    idx::write_set(dir.path(), "t10k", &idx::images(1, 2, 2), &idx::labels(&[1]), false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    expect_missing(fm, Split::Test, dir.path(), "t10k-labels-idx1-ubyte.gz", "dataset-fashion-mnist");

    let c10 = DatasetKind::Cifar10;
    expect_missing(c10, Split::Train, dir.path(), "data_batch_1.bin", "CIFAR-10 binary version");
    expect_missing(c10, Split::Test, dir.path(), "test_batch.bin", "extract it into DIR");
    let c100 = DatasetKind::Cifar100;
    expect_missing(c100, Split::Train, dir.path(), "train.bin", "CIFAR-100 binary version");

    let err = Dataset::load(c100, Split::Train, None).unwrap_err();
    assert!(matches!(err, DataError::NoDefaultDir { kind: DatasetKind::Cifar100 }));
    assert!(err.to_string().contains("cifar100 has no default location; download"), "{err}");
}

/// The packaged Fashion-MNIST, if `scripts/setup.sh` installed it: sizes, balance and statistics.
#[test]
fn real_fashion_mnist_when_installed() {
    let dir = Path::new(FASHION_MNIST_DIR);
    let name = "train-images-idx3-ubyte";
    if !dir.join(format!("{name}.gz")).is_file() && !dir.join(name).is_file() {
        println!("note: Fashion-MNIST is not in {FASHION_MNIST_DIR} (scripts/setup.sh installs it); skipped");
        return;
    }
    let start = Instant::now();
    let train = Dataset::load(DatasetKind::FashionMnist, Split::Train, None).unwrap();
    let took = start.elapsed();
    let test = Dataset::load(DatasetKind::FashionMnist, Split::Test, None).unwrap();
    assert_eq!((train.len(), train.shape, train.images.len()), (60_000, [28, 28, 1], 60_000 * 784));
    assert_eq!((test.len(), test.shape, test.images.len()), (10_000, [28, 28, 1], 10_000 * 784));
    assert_eq!(train.class_counts(), [6_000; 10]);
    assert_eq!(test.class_counts(), [1_000; 10]);
    assert_eq!(train.class_names[9], "Ankle boot");

    let start_stats = Instant::now();
    let norm = train.channel_stats();
    let stats_took = start_stats.elapsed();
    let reference = DatasetKind::FashionMnist.reference_normalization();
    println!("Fashion-MNIST train: decoded in {took:?}, statistics in {stats_took:?}: {norm:?}");
    assert!((norm.mean[0] - 0.2860).abs() < 1e-3 && (norm.std[0] - 0.3530).abs() < 1e-3, "{norm:?}");
    assert!((norm.mean[0] - reference.mean[0]).abs() < 1e-4, "{norm:?} vs {reference:?}");
    assert!((norm.std[0] - reference.std[0]).abs() < 1e-4, "{norm:?} vs {reference:?}");
    assert_eq!(train.subset(100).class_counts(), [10; 10]);
}
