//! Training data decoded once into flat memory: Fashion-MNIST (IDX files, gzipped or not), CIFAR-10 and
//! CIFAR-100 (the binary versions).
//!
//! Images are stored `N x H x W x C`, row-major with the channel last, one `u8` per value, as the runtime
//! reads inputs; the trainer copies them to the device once and normalises and augments whole batches there
//! ([`DatasetKind::augment`], [`Dataset::channel_stats`]). Every error names the file and how to get the set.
//!
//! ```no_run
//! use qfd_host::data::{Dataset, DatasetKind, Split};
//!
//! let train = Dataset::load(DatasetKind::FashionMnist, Split::Train, None)?.subset(1000);
//! let norm = train.channel_stats();
//! println!("{} images of {:?}, mean {:?}, std {:?}", train.len(), train.shape, norm.mean, norm.std);
//! # Ok::<(), qfd_host::data::DataError>(())
//! ```

mod cifar;
mod error;
mod idx;
mod kind;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use error::{Corruption, DataError};
pub use kind::{Augment, DatasetKind, UnknownDataset, FASHION_MNIST_DIR};

use crate::fsutil::{self, FsError};

/// Which part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Per-channel mean and standard deviation of `pixel / 255`; the trainer feeds `(pixel / 255 - mean) / std`
/// and records these values in the exported model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

/// A decoded split of a data set.
#[derive(Clone)]
pub struct Dataset {
    /// Which set.
    pub kind: DatasetKind,
    /// Which split.
    pub split: Split,
    /// `len() x H x W x C` values, row-major, channel last.
    pub images: Vec<u8>,
    /// One label per image, each below `num_classes()` (for CIFAR-100, the fine label).
    pub labels: Vec<u8>,
    /// `[H, W, C]` of every image.
    pub shape: [usize; 3],
    /// Name of each class, indexed by label.
    pub class_names: Vec<String>,
}

impl fmt::Debug for Dataset {
    // The derived form would print every pixel.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("kind", &self.kind)
            .field("split", &self.split)
            .field("len", &self.len())
            .field("shape", &self.shape)
            .field("num_classes", &self.num_classes())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Reads and decodes one split from `dir`, or from [`DatasetKind::default_dir`] when `dir` is `None`.
    ///
    /// Fashion-MNIST wants `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    /// `t10k-labels-idx1-ubyte`, each with or without `.gz`. CIFAR-10 wants `data_batch_1.bin`..
    /// `data_batch_5.bin` and `test_batch.bin` (class names from `batches.meta.txt` if present); CIFAR-100
    /// wants `train.bin` and `test.bin` (names from `fine_label_names.txt`). The CIFAR files may be in `dir`
    /// or in the archive's own folder under it (`cifar-10-batches-bin`, `cifar-100-binary`).
    ///
    /// Sizes are checked exactly (no truncation, no trailing bytes) and every label must be a class.
    pub fn load(kind: DatasetKind, split: Split, dir: Option<&Path>) -> Result<Dataset, DataError> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => kind.default_dir().ok_or(DataError::NoDefaultDir { kind })?,
        };
        match kind {
            DatasetKind::FashionMnist => idx::load(&dir, split),
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => cifar::load(kind, &dir, split),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images (only [`subset(0)`](Self::subset) makes such a set).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of values in one image, `H * W * C`.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i`, `H x W x C` values. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// How many images each class has, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }

    /// A class-balanced subset of `n` images, kept in their original order, for quick runs (`--subset N`).
    ///
    /// Classes take turns in label order, each giving its next image in file order, until `n` are taken, so
    /// any `n >= num_classes()` includes every class and class sizes differ by at most one (unless a class
    /// runs out). The same set and `n` always give the same subset. `n >= len()` keeps the whole set.
    pub fn subset(self, n: usize) -> Dataset {
        if n >= self.len() {
            return self;
        }
        let classes = self.labels.iter().map(|&l| usize::from(l) + 1).max().unwrap_or(0);
        let mut by_class = vec![Vec::new(); classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        // Round `r` takes the `r`th image of every class that has one; n < len() ends the rounds in time.
        let mut chosen: Vec<usize> = (0..)
            .flat_map(|round| by_class.iter().filter_map(move |members| members.get(round).copied()))
            .take(n)
            .collect();
        chosen.sort_unstable();
        let mut images = Vec::with_capacity(n * self.image_len());
        for &i in &chosen {
            images.extend_from_slice(self.image(i));
        }
        let labels = chosen.iter().map(|&i| self.labels[i]).collect();
        Dataset { images, labels, ..self }
    }

    /// Keeps the first `n` images (all of them if there are fewer), e.g. for `qfd-host eval --limit N`.
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.images.truncate(self.labels.len() * self.image_len());
    }

    /// Per-channel mean and population standard deviation of `pixel / 255` over all images (computed exactly
    /// from per-channel histograms); both 0 for an empty set.
    pub fn channel_stats(&self) -> Normalization {
        let channels = self.shape[2].max(1);
        let mut hist = vec![[0u64; 256]; channels];
        for px in self.images.chunks_exact(channels) {
            for (h, &v) in hist.iter_mut().zip(px) {
                h[usize::from(v)] += 1;
            }
        }
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for h in &hist {
            let count = h.iter().sum::<u64>().max(1) as f64;
            let values = || h.iter().enumerate().map(|(v, &c)| (v as f64 / 255.0, c as f64));
            let m = values().map(|(x, c)| x * c).sum::<f64>() / count;
            let var = values().map(|(x, c)| (x - m) * (x - m) * c).sum::<f64>() / count;
            mean.push(m as f32);
            std.push(var.sqrt() as f32);
        }
        Normalization { mean, std }
    }
}

/// Reads a file of the set, turning "not found" into [`DataError::Missing`] with the fix.
fn read_required(path: &Path, kind: DatasetKind) -> Result<Vec<u8>, DataError> {
    read_optional(path)?
        .ok_or_else(|| DataError::Missing { path: path.to_path_buf(), hint: kind.how_to_get() })
}

/// Reads a file, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DataError> {
    match fsutil::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(FsError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A [`DataError::Corrupt`] for `path` with the set's fix.
fn corrupt(path: &Path, kind: DatasetKind) -> impl FnOnce(Corruption) -> DataError + '_ {
    move |problem| DataError::Corrupt { path: PathBuf::from(path), problem, hint: kind.how_to_get() }
}

/// Checks that every label is below `classes`.
fn check_labels(labels: &[u8], classes: usize) -> Result<(), Corruption> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(index) => Err(Corruption::LabelOutOfRange { index, label: labels[index], classes }),
        None => Ok(()),
    }
}
