//! Fashion-MNIST in IDX format (LeCun's MNIST layout): a big-endian header, then unsigned bytes.
//!
//! Header: two zero bytes, the type byte `0x08` (unsigned byte), the number of dimensions, then one `u32`
//! per dimension. Images are `N x rows x cols` (magic `0x00000803`), labels `N` (magic `0x00000801`).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{check_labels, corrupt, read_optional, Corruption, DataError, Dataset, DatasetKind, Split};

/// Magic of an IDX file of `u8` images, `N x rows x cols`.
pub(super) const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an IDX file of `u8` labels, `N`.
pub(super) const LABELS_MAGIC: u32 = 0x0000_0801;

const KIND: DatasetKind = DatasetKind::FashionMnist;

/// Loads one split of Fashion-MNIST from `dir`.
pub(super) fn load(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let (images_path, bytes) = read_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (dims, images) = parse(bytes, IMAGES_MAGIC).map_err(corrupt(&images_path, KIND))?;
    let (labels_path, bytes) = read_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (label_dims, labels) = parse(bytes, LABELS_MAGIC).map_err(corrupt(&labels_path, KIND))?;
    if label_dims[0] != dims[0] {
        let problem =
            Corruption::CountMismatch { labels: label_dims[0], images: dims[0], images_file: images_path };
        return Err(corrupt(&labels_path, KIND)(problem));
    }
    check_labels(&labels, KIND.num_classes()).map_err(corrupt(&labels_path, KIND))?;
    Ok(Dataset {
        kind: KIND,
        split,
        images,
        labels,
        shape: [dims[1], dims[2], 1],
        class_names: KIND.default_class_names(),
    })
}

/// Reads `dir/name.gz` decompressed, or else `dir/name`; returns the path read and its (decompressed) bytes.
fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz_path = dir.join(format!("{name}.gz"));
    if let Some(bytes) = read_optional(&gz_path)? {
        let bytes = gunzip(&bytes).map_err(corrupt(&gz_path, KIND))?;
        return Ok((gz_path, bytes));
    }
    let path = dir.join(name);
    match read_optional(&path)? {
        Some(bytes) => Ok((path, bytes)),
        None => Err(DataError::Missing { path: gz_path, hint: KIND.how_to_get() }),
    }
}

/// Decompresses a gzip file (all its members, as `gzip -d` does).
pub(super) fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, Corruption> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(Corruption::Gzip("it does not start with the gzip magic bytes 1f 8b".into()));
    }
    // The trailer holds the (last member's) size mod 2^32: a good first guess, bounded against corruption.
    let hint = match bytes.len().checked_sub(4).map(|at| &bytes[at..]) {
        Some(&[a, b, c, d]) => {
            (u32::from_le_bytes([a, b, c, d]) as usize).min(bytes.len().saturating_mul(16))
        }
        _ => 0,
    };
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| Corruption::Gzip(e.to_string()))?;
    Ok(out)
}

/// Parses an IDX file of unsigned bytes whose magic must be `magic`: returns its dimensions and its data with
/// the header removed. The data must be exactly as long as the dimensions say.
pub(super) fn parse(mut bytes: Vec<u8>, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Corruption> {
    let be_u32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if bytes.len() < 4 {
        return Err(Corruption::ShortHeader { needed: 4, found: bytes.len() });
    }
    let found = be_u32(&bytes, 0);
    if found != magic {
        let what = if magic == IMAGES_MAGIC { "images" } else { "labels" };
        return Err(Corruption::BadMagic { what, expected: magic, found });
    }
    let ndim = usize::from(bytes[3]);
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Corruption::ShortHeader { needed: header, found: bytes.len() });
    }
    let dims: Vec<usize> = (0..ndim).map(|d| be_u32(&bytes, 4 + 4 * d) as usize).collect();
    if dims.first() == Some(&0) {
        return Err(Corruption::Empty);
    }
    if dims.contains(&0) {
        return Err(Corruption::BadHeader(format!("an image dimension is 0 in {dims:?}")));
    }
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|n| n.checked_add(header as u64))
        .ok_or_else(|| Corruption::BadHeader(format!("dimensions {dims:?} are too large")))?;
    if expected != bytes.len() as u64 {
        return Err(Corruption::SizeMismatch { expected, found: bytes.len() as u64 });
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}
