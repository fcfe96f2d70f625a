//! CIFAR-10 and CIFAR-100, binary version: files of fixed-size records, each the label byte(s) then a 32x32
//! colour image stored by plane (1024 red, 1024 green, 1024 blue values, each plane row-major), which is
//! converted here to channel-last.
//!
//! CIFAR-10 records are `label, pixels` (3073 bytes); CIFAR-100 records are `coarse label, fine label,
//! pixels` (3074 bytes), and the fine label is the one kept.

use std::path::Path;

use super::Split;
use super::{
    check_labels, corrupt, read_optional, read_required, Corruption, DataError, Dataset, DatasetKind,
};

/// Side of a CIFAR image.
pub(super) const SIDE: usize = 32;
/// Values in one plane (one colour channel) of an image.
const PLANE: usize = SIDE * SIDE;
/// Number of CIFAR-100 superclasses (coarse labels).
const COARSE_CLASSES: usize = 20;

/// The files of one set, as the official archive has them.
struct Layout {
    /// The folder the archive extracts to.
    folder: &'static str,
    /// Label bytes before each image.
    label_bytes: usize,
    /// The class-names file, one name per line.
    names_file: &'static str,
}

fn layout(kind: DatasetKind) -> Layout {
    match kind {
        DatasetKind::Cifar100 => {
            Layout { folder: "cifar-100-binary", label_bytes: 2, names_file: "fine_label_names.txt" }
        }
        _ => Layout { folder: "cifar-10-batches-bin", label_bytes: 1, names_file: "batches.meta.txt" },
    }
}

fn file_names(kind: DatasetKind, split: Split) -> Vec<String> {
    match (kind, split) {
        (DatasetKind::Cifar100, Split::Train) => vec!["train.bin".into()],
        (DatasetKind::Cifar100, Split::Test) => vec!["test.bin".into()],
        (_, Split::Train) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        (_, Split::Test) => vec!["test_batch.bin".into()],
    }
}

/// Loads one split of CIFAR-10 or CIFAR-100 from `dir` or from the archive's folder inside it.
pub(super) fn load(kind: DatasetKind, dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let layout = layout(kind);
    let nested = dir.join(layout.folder);
    let dir = if nested.is_dir() { nested } else { dir.to_path_buf() };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for name in file_names(kind, split) {
        let path = dir.join(name);
        let bytes = read_required(&path, kind)?;
        decode(&bytes, layout.label_bytes, kind.num_classes(), &mut images, &mut labels)
            .map_err(corrupt(&path, kind))?;
    }
    let names_path = dir.join(layout.names_file);
    let class_names = match read_optional(&names_path)? {
        Some(bytes) => parse_names(&bytes, kind.num_classes()).map_err(corrupt(&names_path, kind))?,
        None => kind.default_class_names(),
    };
    Ok(Dataset { kind, split, images, labels, shape: [SIDE, SIDE, 3], class_names })
}

/// Appends the records of one file, converting each image to channel-last.
pub(super) fn decode(
    bytes: &[u8],
    label_bytes: usize,
    classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), Corruption> {
    let record = label_bytes + 3 * PLANE;
    if bytes.is_empty() {
        return Err(Corruption::Empty);
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(Corruption::RecordSize { record, found: bytes.len() as u64 });
    }
    let n = bytes.len() / record;
    let (first_image, first_label) = (images.len(), labels.len());
    images.resize(first_image + n * 3 * PLANE, 0);
    labels.reserve(n);
    for (rec, out) in bytes.chunks_exact(record).zip(images[first_image..].chunks_exact_mut(3 * PLANE)) {
        let (label, planes) = rec.split_at(label_bytes);
        labels.extend_from_slice(&label[label_bytes - 1..]);
        let (r, gb) = planes.split_at(PLANE);
        let (g, b) = gb.split_at(PLANE);
        for (px, ((&r, &g), &b)) in out.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
            px.copy_from_slice(&[r, g, b]);
        }
    }
    if label_bytes == 2 {
        let coarse: Vec<u8> = bytes.chunks_exact(record).map(|rec| rec[0]).collect();
        check_labels(&coarse, COARSE_CLASSES)?;
    }
    check_labels(&labels[first_label..], classes)
}

/// Class names from a names file: one per non-blank line, and exactly `classes` of them.
fn parse_names(bytes: &[u8], classes: usize) -> Result<Vec<String>, Corruption> {
    let text = String::from_utf8_lossy(bytes);
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != classes {
        return Err(Corruption::ClassNames { expected: classes, found: names.len() });
    }
    Ok(names)
}
