//! [`Error`]: the one error type at the crate boundary.
//!
//! Each module keeps its own error enum, whose variants carry what a caller needs to act (the
//! file, key, row or value at fault); this enum wraps them, so an application handles one type
//! and can still match on the module's variant. What only the
//! [`Collection`](crate::collection::Collection) layer knows is its own enum,
//! [`CollectionError`], wrapped as [`Error::Collection`].

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::collection::CollectionError;
use crate::decode::DecodeError;
use crate::descriptors::DescriptorError;
use crate::eval::EvalError;
use crate::index::IndexError;
use crate::model::ModelError;
use crate::pretrained::PretrainedError;
use crate::spatial::SpatialError;
use crate::spec::SpecError;
#[cfg(feature = "train")]
use crate::train::TrainError;

/// Result alias with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the crate returns at its boundary, one variant per layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the collection layer itself reads or writes (search result arrays, exports).
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Inputs (images, folders, a list file) could not be listed.
    #[error(transparent)]
    Inputs(#[from] crate::inputs::InputsError),
    /// An image could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A checkpoint could not be opened, read, matched to the model or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Pretrained weights could not be found, verified or fetched.
    #[error(transparent)]
    Pretrained(#[from] PretrainedError),
    /// The model specification is invalid, or its model could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A descriptor file could not be read or written, or an image could not be described.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Evaluation failed (ground truth, ranking, scoring).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Training failed.
    #[error(transparent)]
    #[cfg(feature = "train")]
    Train(#[from] TrainError),
    /// Spatial verification refused the local features.
    #[error(transparent)]
    Spatial(#[from] SpatialError),
    /// A re-ranking request that cannot be carried out as given.
    #[error(transparent)]
    Rerank(#[from] crate::rerank::RerankError),
    /// What only the collection layer knows (no such entry, no model, a request it cannot
    /// carry out); errors of lower layers that pass through a collection keep their own variant
    /// above ([`From<CollectionError>`](#impl-From<CollectionError>-for-Error)).
    #[error(transparent)]
    Collection(CollectionError),
}

impl From<CollectionError> for Error {
    /// A lower layer's error that passed through a collection keeps its own variant (a decode
    /// error is [`Error::Decode`] whichever layer returned it); the collection's own are
    /// [`Error::Collection`].
    fn from(e: CollectionError) -> Self {
        match e {
            CollectionError::Io { path, source } => Self::Io { path, source },
            CollectionError::Inputs(e) => Self::Inputs(e),
            CollectionError::Decode(e) => Self::Decode(e),
            CollectionError::Checkpoint(e) => Self::Checkpoint(e),
            CollectionError::Pretrained(e) => Self::Pretrained(e),
            CollectionError::Model(e) => Self::Model(e),
            CollectionError::Spec(e) => Self::Spec(e),
            CollectionError::Descriptor(e) => Self::Descriptor(e),
            CollectionError::Index(e) => Self::Index(e),
            CollectionError::Spatial(e) => Self::Spatial(e),
            CollectionError::Rerank(e) => Self::Rerank(e),
            own => Self::Collection(own),
        }
    }
}
