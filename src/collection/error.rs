//! [`CollectionError`]: what can go wrong in the collection layer. Its own variants say what only
//! a collection knows (no entry of that name, no model, a request it cannot carry out), carrying
//! the index, name or value to act on; errors of the layers below pass through in their own
//! variants. At the crate boundary [`crate::Error`] takes it apart again, so an application
//! matches one type.

use std::path::PathBuf;

use crate::decode::DecodeError;
use crate::descriptors::DescriptorError;
use crate::index::{IndexError, IndexKind};
use crate::model::ModelError;
use crate::spatial::SpatialError;
use crate::spec::SpecError;

pub type Result<T, E = CollectionError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// A file the collection layer itself reads or writes (search result arrays, exports).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Inputs(#[from] crate::inputs::InputsError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Pretrained(#[from] crate::pretrained::PretrainedError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Spatial(#[from] SpatialError),
    #[error(transparent)]
    Rerank(#[from] crate::rerank::RerankError),
    /// Local features that cannot be extracted or used as asked.
    #[error("local features '{extractor}': {reason}")]
    LocalUnavailable { extractor: String, reason: String },
    #[error("{index}: no entry named '{name}' (give a path as it was indexed, or an imported name)")]
    NotInIndex { index: PathBuf, name: String },
    #[error("{index} holds only imported vectors and has no model: search it with vectors, not images")]
    NoModel { index: PathBuf },
    #[error("{index} is an existing {existing} index; it cannot be rebuilt as a {requested} index")]
    KindMismatch { index: PathBuf, existing: IndexKind, requested: IndexKind },
    #[error(
        "{index} was built with {model}; dolg cannot verify that imported vectors come from the same model. If they do (made with the same weights and options), import them as the same model (`--same-model`)"
    )]
    UnverifiedVectors { index: PathBuf, model: String },
    #[error("{values} values are not a whole, non-zero number of {expected}-d vectors (the index's dimension)")]
    VectorLength { expected: usize, values: usize },
    #[error("{rows} vectors but {names} names were given")]
    NameCount { rows: usize, names: usize },
    #[error("this index uses a pretrained backbone ({backbone}); a weights file does not apply")]
    WeightsNotApplicable { backbone: &'static str },
    /// A search request that cannot be carried out whatever the collection (a range query with
    /// re-ranking, k 0 without a score).
    #[error("search request: {reason}")]
    Request { reason: &'static str },
    #[error("recall needs at least 2 entries; {index} holds {entries}")]
    TooFewForRecall { index: PathBuf, entries: usize },
}
