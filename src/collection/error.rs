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

/// Everything that can go wrong in the collection layer.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// A file the collection layer itself reads or writes (search result arrays, exports).
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The inputs could not be listed (an unreadable list file, a bad exclude glob).
    #[error(transparent)]
    Inputs(#[from] crate::inputs::InputsError),
    /// An image could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A weights file could not be opened or matched to the model.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// Pretrained backbone weights could not be found or loaded.
    #[error(transparent)]
    Pretrained(#[from] crate::pretrained::PretrainedError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model specification is invalid, or its model could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A descriptor file could not be read or written.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The underlying index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Spatial verification refused the local features.
    #[error(transparent)]
    Spatial(#[from] SpatialError),
    /// A re-ranking request that cannot be carried out as given.
    #[error(transparent)]
    Rerank(#[from] crate::rerank::RerankError),
    /// Local features that cannot be extracted or used as asked.
    #[error("local features '{extractor}': {reason}")]
    LocalUnavailable {
        /// The local feature extractor: `xfeat`, `delg`, or the unknown name asked for.
        extractor: String,
        /// Why the features are unavailable.
        reason: String,
    },
    /// A name that the index does not hold.
    #[error("{index}: no entry named '{name}' (give a path as it was indexed, or an imported name)")]
    NotInIndex {
        /// The collection directory.
        index: PathBuf,
        /// The name looked up.
        name: String,
    },
    /// Images were given to a collection that has no model (it holds only imported vectors).
    #[error("{index} holds only imported vectors and has no model: search it with vectors, not images")]
    NoModel {
        /// The collection directory.
        index: PathBuf,
    },
    /// An existing index cannot be rebuilt with another backend.
    #[error("{index} is an existing {existing} index; it cannot be rebuilt as a {requested} index")]
    KindMismatch {
        /// The collection directory.
        index: PathBuf,
        /// The backend the index already uses.
        existing: IndexKind,
        /// The backend asked for.
        requested: IndexKind,
    },
    /// Vectors imported into an index built with a model, without `--same-model` to vouch for them.
    #[error(
        "{index} was built with {model}; dolg cannot verify that imported vectors come from the same model. If they do (made with the same weights and options), import them as the same model (`--same-model`)"
    )]
    UnverifiedVectors {
        /// The collection directory.
        index: PathBuf,
        /// The name of the index's model.
        model: String,
    },
    /// A flat vector buffer is not a whole, non-zero number of index-width vectors.
    #[error("{values} values are not a whole, non-zero number of {expected}-d vectors (the index's dimension)")]
    VectorLength {
        /// The index's descriptor width.
        expected: usize,
        /// The number of `f32` values given.
        values: usize,
    },
    /// The numbers of imported vectors and of names differ.
    #[error("{rows} vectors but {names} names were given")]
    NameCount {
        /// The number of vectors.
        rows: usize,
        /// The number of names.
        names: usize,
    },
    /// A weights file was given for an index whose model uses a pretrained backbone.
    #[error("this index uses a pretrained backbone ({backbone}); a weights file does not apply")]
    WeightsNotApplicable {
        /// The pretrained backbone's name.
        backbone: &'static str,
    },
    /// A search request that cannot be carried out whatever the collection (a range query with
    /// re-ranking, k 0 without a score).
    #[error("search request: {reason}")]
    Request {
        /// Why the request cannot be carried out.
        reason: &'static str,
    },
    /// A recall estimate needs at least two entries.
    #[error("recall needs at least 2 entries; {index} holds {entries}")]
    TooFewForRecall {
        /// The collection directory.
        index: PathBuf,
        /// The number of live entries.
        entries: usize,
    },
}
