//! The data sets the trainer knows: their names, classes, standard location, statistics and augmentation.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::Normalization;

/// Where the Debian package `dataset-fashion-mnist` (installed by `scripts/setup.sh`) puts the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

const FASHION_MNIST_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const CIFAR10_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// A data set the trainer can load; written `fashion-mnist`, `cifar10` or `cifar100` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Fashion-MNIST: 28x28 grey images of clothes in 10 classes, 60,000 train and 10,000 test, IDX files.
    FashionMnist,
    /// CIFAR-10: 32x32 colour images in 10 classes, 50,000 train and 10,000 test, binary version.
    Cifar10,
    /// CIFAR-100: 32x32 colour images in 100 (fine) classes, 50,000 train and 10,000 test, binary version.
    Cifar100,
}

/// Text that names no known data set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data set '{0}': expected one of fashion-mnist, cifar10, cifar100")]
pub struct UnknownDataset(pub String);

/// Label-preserving random transformations the trainer applies to each training batch (on the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Random crop: pad the image with this many zero (black) pixels on every side, before normalisation as
    /// torchvision's `RandomCrop(padding=..)` does, then cut an `H x W` window at a uniform offset; 0 for none.
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
}

impl DatasetKind {
    /// Every kind, in the order the help text lists them.
    pub const ALL: [DatasetKind; 3] =
        [DatasetKind::FashionMnist, DatasetKind::Cifar10, DatasetKind::Cifar100];

    /// The command-line name: `fashion-mnist`, `cifar10` or `cifar100`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
        }
    }

    /// Number of classes (for CIFAR-100, of fine labels).
    pub fn num_classes(self) -> usize {
        match self {
            DatasetKind::FashionMnist | DatasetKind::Cifar10 => 10,
            DatasetKind::Cifar100 => 100,
        }
    }

    /// The standard class names, used when the set's own names file is absent (`class0`.. for CIFAR-100).
    pub fn default_class_names(self) -> Vec<String> {
        match self {
            DatasetKind::FashionMnist => FASHION_MNIST_NAMES.iter().map(|s| s.to_string()).collect(),
            DatasetKind::Cifar10 => CIFAR10_NAMES.iter().map(|s| s.to_string()).collect(),
            DatasetKind::Cifar100 => (0..100).map(|i| format!("class{i}")).collect(),
        }
    }

    /// Where the set is found when no directory is given: [`FASHION_MNIST_DIR`] for Fashion-MNIST; none for
    /// CIFAR, which has no packaged location.
    pub fn default_dir(self) -> Option<PathBuf> {
        match self {
            DatasetKind::FashionMnist => Some(PathBuf::from(FASHION_MNIST_DIR)),
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => None,
        }
    }

    /// What the user can do to get the files, quoted in every error about a missing or corrupt file.
    pub fn how_to_get(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => {
                "install it with `scripts/setup.sh` or `apt-get install dataset-fashion-mnist`, or pass \
                 --data DIR with the four IDX files (gzipped or not)"
            }
            DatasetKind::Cifar10 => {
                "download the CIFAR-10 binary version (cifar-10-binary.tar.gz from \
                 https://www.cs.toronto.edu/~kriz/cifar.html), extract it into DIR and pass --data DIR"
            }
            DatasetKind::Cifar100 => {
                "download the CIFAR-100 binary version (cifar-100-binary.tar.gz from \
                 https://www.cs.toronto.edu/~kriz/cifar.html), extract it into DIR and pass --data DIR"
            }
        }
    }

    /// The published per-channel mean and standard deviation of `pixel / 255` over the train split, computed
    /// as [`Dataset::channel_stats`](super::Dataset::channel_stats) does (over all pixels, population std).
    ///
    /// For when the train split is not at hand; a test checks the Fashion-MNIST values against the real files.
    pub fn reference_normalization(self) -> Normalization {
        let (mean, std): (&[f32], &[f32]) = match self {
            DatasetKind::FashionMnist => (&[0.2860], &[0.3530]),
            DatasetKind::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            DatasetKind::Cifar100 => (&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
        };
        Normalization { mean: mean.to_vec(), std: std.to_vec() }
    }

    /// The training augmentation for this set.
    ///
    /// CIFAR: the standard 4-pixel padded crop and horizontal flip. Fashion-MNIST: a 2-pixel padded crop (the
    /// items are centred and fill most of the 28x28 frame, so a larger shift would cut them off) and
    /// horizontal flip, which preserves every label: clothes and bags are left-right symmetric, and a
    /// mirrored shoe is still the same kind of shoe. (The set draws every shoe facing left, so flipped shoes
    /// are a view the test split never shows; that costs no label noise, and the flip is the usual practice.)
    pub fn augment(self) -> Augment {
        match self {
            DatasetKind::FashionMnist => Augment { crop_padding: 2, hflip: true },
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Augment { crop_padding: 4, hflip: true },
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDataset(s.to_string()))
    }
}
