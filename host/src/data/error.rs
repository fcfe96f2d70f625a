//! Why a data set could not be loaded: every error names the file and says how to get a good copy.

use std::path::PathBuf;

use super::DatasetKind;
use crate::fsutil::FsError;

/// Why a data set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file exists but could not be read (permissions, I/O error).
    #[error(transparent)]
    Read(#[from] FsError),
    /// A file of the set is not there.
    #[error("{} not found; {hint}", path.display())]
    Missing {
        /// The file looked for (for IDX files, the `.gz` name; the uncompressed name is accepted too).
        path: PathBuf,
        /// How to get the set: [`DatasetKind::how_to_get`].
        hint: &'static str,
    },
    /// No directory was given and the set has no standard place on disk.
    #[error("{kind} has no default location; {}", kind.how_to_get())]
    NoDefaultDir {
        /// The set asked for.
        kind: DatasetKind,
    },
    /// A file is there but its content is not what the format says.
    #[error("{}: {problem}; {hint}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: Corruption,
        /// How to get a good copy: [`DatasetKind::how_to_get`].
        hint: &'static str,
    },
}

impl DataError {
    /// The corruption found, if the error is one.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            DataError::Corrupt { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong inside a data file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A `.gz` file that does not decompress (not gzip at all, cut short, or failing its checksum).
    #[error("not a valid gzip file ({0})")]
    Gzip(String),
    /// The file is shorter than its header.
    #[error("truncated: the header needs {needed} bytes, the file has {found}")]
    ShortHeader {
        /// Header length in bytes.
        needed: usize,
        /// File length (after decompression) in bytes.
        found: usize,
    },
    /// The IDX magic number is not the one for this kind of file.
    #[error("not an IDX {what} file: magic 0x{found:08x}, expected 0x{expected:08x}")]
    BadMagic {
        /// `images` or `labels`.
        what: &'static str,
        /// The magic this file should have.
        expected: u32,
        /// The magic it has.
        found: u32,
    },
    /// The header declares sizes that cannot be a data set (a zero or overflowing dimension).
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The data is not exactly as long as the header says: truncated, or with trailing bytes.
    #[error("truncated or with trailing bytes: expected {expected} bytes, found {found}")]
    SizeMismatch {
        /// Length the header implies, header included.
        expected: u64,
        /// Actual length (after decompression).
        found: u64,
    },
    /// A file of fixed-size records whose length is not a whole number of records.
    #[error(
        "{found} bytes is not a whole number of {record}-byte records (truncated or with trailing bytes)"
    )]
    RecordSize {
        /// Bytes per record.
        record: usize,
        /// File length in bytes.
        found: u64,
    },
    /// The file holds no images.
    #[error("holds no images")]
    Empty,
    /// A label is not a class of the set.
    #[error("label {label} of image {index} is out of range: the set has {classes} classes")]
    LabelOutOfRange {
        /// Image index within the file.
        index: usize,
        /// The label found.
        label: u8,
        /// Number of classes (or, for a CIFAR-100 coarse label, of superclasses).
        classes: usize,
    },
    /// The labels file and the images file disagree on how many there are.
    #[error("{labels} labels but {} has {images} images", images_file.display())]
    CountMismatch {
        /// Labels in this file.
        labels: usize,
        /// Images in the images file.
        images: usize,
        /// The images file.
        images_file: PathBuf,
    },
    /// A class-names file that does not hold one name per class.
    #[error("expected {expected} class names, one per line, found {found}")]
    ClassNames {
        /// Number of classes.
        expected: usize,
        /// Non-empty lines found.
        found: usize,
    },
}
