//! Fashion-MNIST IDX files: exact decoding, gzipped or not, and every corruption refused.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;

use super::super::idx::{IMAGES_MAGIC, LABELS_MAGIC};
use super::*;

const FM: DatasetKind = DatasetKind::FashionMnist;

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes
}

/// `n` images of `rows x cols` whose pixel `(i, r, c)` is `100 i + 10 r + c`.
pub(super) fn images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = header(IMAGES_MAGIC, &[n, rows, cols]);
    for i in 0..n {
        bytes.extend((0..rows).flat_map(|r| (0..cols).map(move |c| (100 * i + 10 * r + c) as u8)));
    }
    bytes
}

pub(super) fn labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = header(LABELS_MAGIC, &[labels.len() as u32]);
    bytes.extend_from_slice(labels);
    bytes
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes the images and labels files of one split (`train` or `t10k`), gzipped or not.
pub(super) fn write_set(dir: &Path, prefix: &str, images: &[u8], labels: &[u8], gzip: bool) {
    for (name, bytes) in [("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)] {
        let (suffix, bytes) = if gzip { (".gz", gz(bytes)) } else { ("", bytes.to_vec()) };
        std::fs::write(dir.join(format!("{prefix}-{name}{suffix}")), bytes).unwrap();
    }
}

/// Writes a train split with raw (already encoded) files and returns the corruption it is refused for.
fn refused(images_file: (&str, Vec<u8>), labels_file: (&str, Vec<u8>)) -> (String, Corruption) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(images_file.0), images_file.1).unwrap();
    std::fs::write(dir.path().join(labels_file.0), labels_file.1).unwrap();
    corrupt_file(FM, Split::Train, dir.path())
}

#[test]
fn decodes_gzipped_and_plain_idx_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), "train", &images(3, 2, 3), &labels(&[0, 9, 3]), true);
    write_set(dir.path(), "t10k", &images(2, 4, 1), &labels(&[5, 5]), false);

    let train = Dataset::load(FM, Split::Train, Some(dir.path())).unwrap();
    assert_eq!((train.kind, train.split, train.shape, train.len()), (FM, Split::Train, [2, 3, 1], 3));
    assert_eq!(train.labels, [0, 9, 3]);
    for i in 0..3 {
        for (r, c) in [(0, 0), (0, 2), (1, 0), (1, 2)] {
            assert_eq!(train.image(i)[r * 3 + c], (100 * i + 10 * r + c) as u8, "image {i} at {r},{c}");
        }
    }
    assert_eq!(train.images, images(3, 2, 3)[16..]);
    assert_eq!(train.class_names.len(), 10);
    assert_eq!((train.class_names[0].as_str(), train.class_names[9].as_str()), ("T-shirt/top", "Ankle boot"));

    let test = Dataset::load(FM, Split::Test, Some(dir.path())).unwrap();
    assert_eq!((test.shape, test.labels.as_slice()), ([4, 1, 1], [5, 5].as_slice()));
    assert_eq!(test.image(1), [100, 110, 120, 130]);
}

#[test]
fn reads_multi_member_gzip_like_gzip_d() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = images(3, 2, 3);
    let mut two_members = gz(&bytes[..20]);
    two_members.extend(gz(&bytes[20..]));
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), two_members).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), labels(&[1, 2, 3])).unwrap();
    let train = Dataset::load(FM, Split::Train, Some(dir.path())).unwrap();
    assert_eq!(train.images, bytes[16..]);
}

#[test]
fn refuses_every_corruption_naming_the_file() {
    let (img, lbl) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    let good = images(3, 2, 3);
    let good_labels = labels(&[0, 9, 3]);
    let size = |found| Corruption::SizeMismatch { expected: 34, found };

    let short = good[..good.len() - 1].to_vec();
    assert_eq!(refused((img, short), (lbl, good_labels.clone())), (img.into(), size(33)));
    let long = [good.as_slice(), &[0]].concat();
    assert_eq!(refused((img, long), (lbl, good_labels.clone())), (img.into(), size(35)));
    let short_gz = gz(&good[..good.len() - 1]);
    assert_eq!(refused(("train-images-idx3-ubyte.gz", short_gz), (lbl, good_labels.clone())).1, size(33));
    let labels_too_long = [good_labels.as_slice(), &[0]].concat();
    let expected = Corruption::SizeMismatch { expected: 11, found: 12 };
    assert_eq!(refused((img, good.clone()), (lbl, labels_too_long)), (lbl.into(), expected));

    let bad_magic = Corruption::BadMagic { what: "images", expected: 0x803, found: 0x801 };
    assert_eq!(refused((img, labels(&[0, 9, 3])), (lbl, good_labels.clone())), (img.into(), bad_magic));
    let bad_magic = Corruption::BadMagic { what: "labels", expected: 0x801, found: 0x803 };
    assert_eq!(refused((img, good.clone()), (lbl, images(3, 2, 3))), (lbl.into(), bad_magic));

    let out_of_range = Corruption::LabelOutOfRange { index: 2, label: 10, classes: 10 };
    assert_eq!(refused((img, good.clone()), (lbl, labels(&[0, 9, 10]))), (lbl.into(), out_of_range));

    let (file, problem) = refused((img, good.clone()), (lbl, labels(&[0, 9])));
    assert_eq!(file, lbl);
    assert!(matches!(problem, Corruption::CountMismatch { labels: 2, images: 3, ref images_file }
        if file_name(images_file) == img));

    let (file, problem) = refused(("train-images-idx3-ubyte.gz", good.clone()), (lbl, good_labels.clone()));
    assert_eq!(file, "train-images-idx3-ubyte.gz");
    assert!(matches!(&problem, Corruption::Gzip(why) if why.contains("gzip magic")), "{problem}");
    let mut cut_gz = gz(&good);
    cut_gz.truncate(cut_gz.len() - 5);
    let (_, problem) = refused(("train-images-idx3-ubyte.gz", cut_gz), (lbl, good_labels.clone()));
    assert!(matches!(problem, Corruption::Gzip(_)), "{problem}");
    let mut bad_crc = gz(&good);
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 1;
    let (_, problem) = refused(("train-images-idx3-ubyte.gz", bad_crc), (lbl, good_labels.clone()));
    assert!(matches!(problem, Corruption::Gzip(_)), "{problem}");

    let header_cut = Corruption::ShortHeader { needed: 4, found: 3 };
    assert_eq!(refused((img, vec![0, 0, 8]), (lbl, good_labels.clone())).1, header_cut);
    let dims_cut = Corruption::ShortHeader { needed: 16, found: 10 };
    assert_eq!(refused((img, good[..10].to_vec()), (lbl, good_labels.clone())).1, dims_cut);
    assert_eq!(refused((img, images(0, 2, 3)), (lbl, labels(&[]))).1, Corruption::Empty);
    let zero_rows = refused((img, images(3, 0, 3)), (lbl, good_labels.clone())).1;
    assert!(matches!(zero_rows, Corruption::BadHeader(_)), "{zero_rows}");
    let huge = header(IMAGES_MAGIC, &[u32::MAX; 3]);
    let huge = refused((img, huge), (lbl, good_labels)).1;
    assert!(matches!(&huge, Corruption::BadHeader(why) if why.contains("too large")), "{huge}");
}
