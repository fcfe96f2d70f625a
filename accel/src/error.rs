//! Why the engine cannot run a model or a batch.

use crate::backend::Backend;

/// Why the engine cannot run a model or a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccelError {
    /// The model uses an op the engine does not run.
    #[error(
        "op {op} ({kind}) is not supported by the burn engine, which runs convolutional models only; \
         evaluate this model with the runtime (--engine runtime)"
    )]
    UnsupportedOp {
        /// 0-based index of the op.
        op: usize,
        /// Its kind, as `qfd-host inspect` names it.
        kind: &'static str,
    },
    /// The backend was not compiled into this build.
    #[error("the {backend} backend is not in this build; rebuild with `--features {feature}`")]
    NotBuilt {
        /// The backend asked for.
        backend: Backend,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The backend is built but its device could not be opened (no GPU, no driver).
    #[error("the {backend} backend cannot open its device: {reason}")]
    DeviceUnavailable {
        /// The backend asked for.
        backend: Backend,
        /// What the backend said.
        reason: String,
    },
    /// The input bytes are not a whole number of images.
    #[error("the input is {found} bytes, not a whole number of {image_len}-byte images")]
    InputLength {
        /// Bytes of one image (`H * W * C` codes, one per byte).
        image_len: usize,
        /// Bytes given.
        found: usize,
    },
    /// An input code is above the model's input range.
    #[error("byte {index} of image {image} is {code}, above the largest {bits}-bit input code")]
    InputCodeOutOfRange {
        /// The image in the batch.
        image: usize,
        /// The byte in the image.
        index: usize,
        /// The byte's value.
        code: u8,
        /// The model's input bit-width.
        bits: u8,
    },
    /// The backend failed while running or returned data of an unexpected type.
    #[error("the {backend} backend failed: {reason}")]
    Backend {
        /// The backend.
        backend: Backend,
        /// What went wrong.
        reason: String,
    },
}
