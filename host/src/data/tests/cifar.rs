//! CIFAR-10 and CIFAR-100 binary files: the plane-to-channel-last conversion, labels, names, and corruption.

use std::path::Path;

use super::*;

const C10: DatasetKind = DatasetKind::Cifar10;
const C100: DatasetKind = DatasetKind::Cifar100;

/// The value of image `i` (counted over the whole split), channel `c`, row `y`, column `x`.
fn value(i: usize, c: usize, y: usize, x: usize) -> u8 {
    ((i * 31 + c * 80 + y * 3 + x) % 256) as u8
}

/// Records with the given label bytes, image numbers counted from `first`, planes stored as CIFAR does.
fn records(first: usize, labels: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (k, label) in labels.iter().enumerate() {
        bytes.extend_from_slice(label);
        for c in 0..3 {
            bytes.extend((0..32).flat_map(|y| (0..32).map(move |x| value(first + k, c, y, x))));
        }
    }
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Checks every value of every image against [`value`], in channel-last order.
fn assert_channel_last(set: &Dataset) {
    assert_eq!((set.shape, set.images.len()), ([32, 32, 3], set.len() * 3072));
    for i in 0..set.len() {
        for (p, px) in set.image(i).chunks_exact(3).enumerate() {
            let want = [0, 1, 2].map(|c| value(i, c, p / 32, p % 32));
            assert_eq!(px, want, "image {i} pixel {p}");
        }
    }
}

/// A CIFAR-10 train split in the archive's folder, two images per batch file, labels `0..10` in order.
fn cifar10_train(dir: &Path) -> std::path::PathBuf {
    let folder = dir.join("cifar-10-batches-bin");
    std::fs::create_dir(&folder).unwrap();
    for b in 0..5u8 {
        let bytes = records(2 * usize::from(b), &[&[2 * b], &[2 * b + 1]]);
        write(&folder, &format!("data_batch_{}.bin", b + 1), &bytes);
    }
    folder
}

#[test]
fn cifar10_converts_planes_to_channel_last_and_reads_names() {
    let dir = tempfile::tempdir().unwrap();
    let folder = cifar10_train(dir.path());
    write(&folder, "batches.meta.txt", b"a0\na1\na2\na3\na4\na5\na6\na7\na8\r\na9\n\n\n");
    let train = Dataset::load(C10, Split::Train, Some(dir.path())).unwrap();
    assert_eq!((train.kind, train.split, train.len()), (C10, Split::Train, 10));
    assert_eq!(train.labels, (0..10).collect::<Vec<u8>>());
    assert_channel_last(&train);
    assert_eq!(train.class_names, (0..10).map(|i| format!("a{i}")).collect::<Vec<_>>());

    // The test split straight in DIR, without a names file: the standard names.
    let flat = tempfile::tempdir().unwrap();
    write(flat.path(), "test_batch.bin", &records(0, &[&[7], &[0], &[9]]));
    let test = Dataset::load(C10, Split::Test, Some(flat.path())).unwrap();
    assert_eq!(test.labels, [7, 0, 9]);
    assert_channel_last(&test);
    assert_eq!((test.class_names[0].as_str(), test.class_names[9].as_str()), ("airplane", "truck"));
}

#[test]
fn cifar100_keeps_the_fine_label() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.bin", &records(0, &[&[19, 99], &[0, 0], &[3, 42]]));
    let train = Dataset::load(C100, Split::Train, Some(dir.path())).unwrap();
    assert_eq!(train.labels, [99, 0, 42]);
    assert_channel_last(&train);
    assert_eq!((train.num_classes(), train.class_names[99].as_str()), (100, "class99"));

    let folder = dir.path().join("cifar-100-binary");
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "test.bin", &records(0, &[&[1, 5]]));
    let names: String = (0..100).map(|i| format!("fine{i}\n")).collect();
    write(&folder, "fine_label_names.txt", names.as_bytes());
    let test = Dataset::load(C100, Split::Test, Some(dir.path())).unwrap();
    assert_eq!((test.labels.as_slice(), test.class_names[5].as_str()), ([5].as_slice(), "fine5"));
}

#[test]
fn cifar_corruption_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = cifar10_train(dir.path());
    let good = records(4, &[&[4], &[5]]);
    let batch3 = "data_batch_3.bin".to_string();
    let refused = |bytes: &[u8]| {
        write(&folder, "data_batch_3.bin", bytes);
        corrupt_file(C10, Split::Train, dir.path())
    };
    let record_size = |found| Corruption::RecordSize { record: 3073, found };
    assert_eq!(refused(&good[..good.len() - 1]), (batch3.clone(), record_size(6145)));
    assert_eq!(refused(&[good.as_slice(), &[0]].concat()), (batch3.clone(), record_size(6147)));
    assert_eq!(refused(&[]), (batch3.clone(), Corruption::Empty));
    let out_of_range = Corruption::LabelOutOfRange { index: 1, label: 10, classes: 10 };
    assert_eq!(refused(&records(4, &[&[4], &[10]])), (batch3, out_of_range));

    write(&folder, "data_batch_3.bin", &good);
    write(&folder, "batches.meta.txt", b"a\nb\nc\nd\ne\nf\ng\nh\ni\n");
    let names = Corruption::ClassNames { expected: 10, found: 9 };
    assert_eq!(corrupt_file(C10, Split::Train, dir.path()), ("batches.meta.txt".into(), names));

    let c100 = |bytes: &[u8]| {
        write(dir.path(), "train.bin", bytes);
        corrupt_file(C100, Split::Train, dir.path())
    };
    let fine = Corruption::LabelOutOfRange { index: 0, label: 100, classes: 100 };
    assert_eq!(c100(&records(0, &[&[0, 100]])), ("train.bin".into(), fine));
    let coarse = Corruption::LabelOutOfRange { index: 1, label: 20, classes: 20 };
    assert_eq!(c100(&records(0, &[&[0, 1], &[20, 1]])), ("train.bin".into(), coarse));
    let record_size = Corruption::RecordSize { record: 3074, found: 3073 };
    assert_eq!(c100(&records(0, &[&[0]])), ("train.bin".into(), record_size));
}
