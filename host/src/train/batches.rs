//! Mini-batches from a data set held on the training device as one `u8` tensor, augmented there in whole
//! batches, so that a GPU is never waiting for the host.
//!
//! The random choices of an epoch (the order, and each position's crop offset and flip) are drawn on the host
//! from a generator seeded by `(seed, epoch)` alone and sent to the device as three small tensors; they do
//! not touch libtorch's global generator. So an epoch's batches are the same on every run, on CPU and GPU,
//! and a resumed run sees exactly the batches the interrupted one would have seen. (`tch` exposes no
//! per-call generator for `randperm`, and reseeding the global one would also reseed everything else.)

use tch::{Device, Kind, Tensor};

use crate::data::{Augment, Dataset};

/// Images and labels that do not form a data set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// The images are not an `N x C x H x W` `u8` tensor with one label per image.
    #[error(
        "images must be N x C x H x W u8 and labels N integers; got images {images:?} ({image_kind:?}), \
         labels {labels:?}"
    )]
    Shape {
        /// Shape of the images.
        images: Vec<i64>,
        /// Element kind of the images.
        image_kind: Kind,
        /// Shape of the labels.
        labels: Vec<i64>,
    },
}

/// One mini-batch: `images` `B x C x H x W` float pixels `/ 255` in `[0, 1]`, `labels` `B` int64.
#[derive(Debug)]
pub struct Batch {
    /// The pixels, scaled to `[0, 1]` (normalisation is the model's first step).
    pub images: Tensor,
    /// The class of each image.
    pub labels: Tensor,
}

/// A whole split on one device: images `N x C x H x W` `u8`, labels `N` int64.
#[derive(Debug)]
pub struct DeviceData {
    images: Tensor,
    labels: Tensor,
}

/// Number of batches of an epoch of `n` images: the last batch holds the remainder.
pub fn steps_per_epoch(n: usize, batch_size: usize) -> u64 {
    n.div_ceil(batch_size.max(1)) as u64
}

impl DeviceData {
    /// Checks the shapes and kinds; the tensors stay on their device.
    pub fn new(images: Tensor, labels: Tensor) -> Result<DeviceData, BatchError> {
        let (is, ls) = (images.size(), labels.size());
        if is.len() != 4 || images.kind() != Kind::Uint8 || ls.len() != 1 || ls[0] != is[0] {
            return Err(BatchError::Shape { images: is, image_kind: images.kind(), labels: ls });
        }
        let labels = labels.to_kind(Kind::Int64);
        Ok(DeviceData { images, labels })
    }

    /// Copies a decoded split (`N x H x W x C`) to `device` once, as `N x C x H x W`.
    pub fn from_dataset(data: &Dataset, device: Device) -> DeviceData {
        let [h, w, c] = data.shape.map(|d| d as i64);
        let images = Tensor::from_slice(&data.images)
            .to_device(device)
            .view([data.len() as i64, h, w, c])
            .permute([0, 3, 1, 2])
            .contiguous();
        let labels = Tensor::from_slice(&data.labels).to_device(device).to_kind(Kind::Int64);
        DeviceData { images, labels }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All images, `N x C x H x W` `u8` (e.g. for a calibration batch).
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// All labels, `N` int64.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The training batches of epoch `epoch`: shuffled and augmented as drawn from `(seed, epoch)`.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn train_batches(&self, batch_size: usize, seed: u64, epoch: usize, augment: Augment) -> Batches<'_> {
        assert!(batch_size > 0, "batch size must be at least 1");
        let n = self.len();
        let mut rng = SplitMix64(SplitMix64(seed).next() ^ epoch as u64);
        let mut order: Vec<i64> = (0..n as i64).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let span = 2 * augment.crop_padding as u64 + 1;
        let offsets: Vec<i64> = (0..2 * n).map(|_| rng.below(span) as i64).collect();
        let flips: Vec<i64> = (0..n).map(|_| (augment.hflip && rng.next() >> 63 == 1) as i64).collect();
        let device = self.images.device();
        let random = Random {
            order: Tensor::from_slice(&order).to_device(device),
            offsets: Tensor::from_slice(&offsets).to_device(device).view([n as i64, 2]),
            flips: Tensor::from_slice(&flips).to_device(device).gt(0),
            padding: augment.crop_padding as i64,
        };
        Batches { data: self, batch_size, next: 0, random: Some(random) }
    }

    /// The evaluation batches: in order, not augmented.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn test_batches(&self, batch_size: usize) -> Batches<'_> {
        assert!(batch_size > 0, "batch size must be at least 1");
        Batches { data: self, batch_size, next: 0, random: None }
    }
}

struct Random {
    order: Tensor,
    offsets: Tensor,
    flips: Tensor,
    padding: i64,
}

/// The batches of one pass over a [`DeviceData`]; see [`DeviceData::train_batches`].
pub struct Batches<'a> {
    data: &'a DeviceData,
    batch_size: usize,
    next: usize,
    random: Option<Random>,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let n = self.data.len();
        if self.next >= n {
            return None;
        }
        let (start, len) = (self.next as i64, self.batch_size.min(n - self.next) as i64);
        self.next += len as usize;
        let (images, labels) = match &self.random {
            None => (self.data.images.narrow(0, start, len), self.data.labels.narrow(0, start, len)),
            Some(r) => {
                let idx = r.order.narrow(0, start, len);
                let images = self.data.images.index_select(0, &idx);
                let offsets = r.offsets.narrow(0, start, len);
                let flips = r.flips.narrow(0, start, len);
                (crop_flip(&images, r.padding, &offsets, &flips), self.data.labels.index_select(0, &idx))
            }
        };
        Some(Batch { images: images.to_kind(Kind::Float) / 255.0, labels })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.data.len().saturating_sub(self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Random crop with zero padding and horizontal flip of a batch, in two gathers, on the batch's device.
///
/// `images` is `B x C x H x W`; image `b` is padded by `padding` zeros on every side, cut to the `H x W`
/// window whose top-left corner is at `(offsets[b, 0], offsets[b, 1])` (each in `0..=2 * padding`) in the
/// padded image, then mirrored left-right where `flips[b]`. Offsets `(padding, padding)` keep the image.
pub fn crop_flip(images: &Tensor, padding: i64, offsets: &Tensor, flips: &Tensor) -> Tensor {
    let [b, c, h, w] = images.size()[..] else { panic!("crop_flip: images must be B x C x H x W") };
    let padded = if padding > 0 { images.constant_pad_nd([padding; 4]) } else { images.shallow_clone() };
    let device = images.device();
    let dy = offsets.select(1, 0).view([b, 1]);
    let dx = offsets.select(1, 1).view([b, 1]);
    let rows = (Tensor::arange(h, (Kind::Int64, device)).view([1, h]) + dy).view([b, 1, h, 1]);
    let cols = Tensor::arange(w, (Kind::Int64, device)).view([1, w]);
    let cols = cols.where_self(&flips.view([b, 1]).logical_not(), &cols.flip([1]));
    let cols = (cols + dx).view([b, 1, 1, w]);
    padded.gather(2, &rows.expand([b, c, h, w + 2 * padding], false), false).gather(
        3,
        &cols.expand([b, c, h, w], false),
        false,
    )
}

/// SplitMix64 (Steele et al.): a tiny generator whose output is fixed by its seed on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (multiply-shift; the bias of at most `n / 2^64` is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}
