//! A `.qfdm` file read from disk: its bytes, its path, and the validated [`Model`] they hold.

use std::path::{Path, PathBuf};

use qfd_runtime::{LoadError, Model};

use crate::fsutil::{self, FsError};

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// The runtime refused the file.
    #[error("{}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why the runtime refused it.
        #[source]
        source: LoadError,
    },
}

impl ModelFileError {
    /// What the user can do about the error, if there is something to say beyond its message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ModelFileError::Read(_) => None,
            ModelFileError::Invalid { source: LoadError::UnsupportedVersion { .. }, .. } => {
                Some("re-export the model with this version of qfd-host")
            }
            ModelFileError::Invalid { .. } => {
                Some("the file is corrupted or not a .qfdm model; re-export it")
            }
        }
    }
}

/// The bytes of a model file and where they came from.
#[derive(Debug, Clone)]
pub struct ModelFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl ModelFile {
    /// Reads the file; [`model`](Self::model) validates it.
    pub fn read(path: &Path) -> Result<Self, ModelFileError> {
        Ok(ModelFile { path: path.to_path_buf(), bytes: fsutil::read(path)? })
    }

    /// Wraps bytes already in memory; `path` names them in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        ModelFile { path: path.into(), bytes }
    }

    /// The path the bytes came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw file bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the file is empty (an empty file is never a valid model).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Parses and validates the model, as a board would.
    pub fn model(&self) -> Result<Model<'_>, ModelFileError> {
        Model::load(&self.bytes).map_err(|source| ModelFileError::Invalid { path: self.path.clone(), source })
    }
}
