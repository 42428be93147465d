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

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the collection layer itself reads or writes (search result arrays, exports).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Inputs(#[from] crate::inputs::InputsError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Pretrained(#[from] PretrainedError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    #[cfg(feature = "train")]
    Train(#[from] TrainError),
    #[error(transparent)]
    Spatial(#[from] SpatialError),
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
