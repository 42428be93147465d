//! Retrieval evaluation: ground truth (Revisited Oxford/Paris pickles, grouped image folders),
//! ranking of descriptors (full or streaming), and the revisitop/cirtorch metrics.
//!
//! The pieces meet at *positions*: for each query, the 0-based position in the full ranking of
//! every database item the ground truth cares about (positives and ignored items). That is all
//! AP and mP@k need, so a ranking never has to be materialised for large databases:
//!
//! - [`rank::full_ranking`] + [`metric::RanksMatrix`] for small cases and golden fixtures;
//! - [`rank::stream_positions`] for large ones (e.g. +1M distractors), O(block + queries + relevant).
//!
//! Both implement [`metric::PositionSource`], which [`gnd::RevisitedGnd::evaluate`] and
//! [`groups::GroupsGt::evaluate`] consume.
//!
//! Inputs come from files ([`inputs`]: ranking matrices, descriptor files checked against the
//! ground truth, `dolg extract` outputs matched to a groups CSV by name) or from the images
//! themselves ([`images`]: all-or-nothing description of every image, with a descriptor cache for
//! Revisited Oxford/Paris).
//!
//! [`spatial`] adds DELG's second stage (local features + RANSAC over the top K) to the
//! Revisited evaluation, with the candidates chosen label-free or, as DELG's evaluation does,
//! after removing each protocol's ignored images.

pub mod gnd;
pub mod groups;
pub mod images;
pub mod inputs;
pub mod metric;
pub mod rank;
pub mod spatial;

use std::path::PathBuf;

use crate::descriptors::DescriptorError;
use crate::spec::SpecError;

pub use gnd::{QueryGnd, RevisitedGnd};
pub use groups::GroupsGt;
pub use images::{
    describe_all, describe_groups, describe_revisited, describe_revisited_cached, describe_revisited_queries, DescribeEvent, ImageFailure, ImageSet,
    RevisitedCache, RevisitedDescriptors,
};
pub use inputs::{read_distractors, read_ranks, read_revisited_descriptors, rows_by_name, rows_from_collection};
pub use metric::{compute_ap, score_query, PositionSource, Protocol, ProtocolResult, QueryScore, RanksMatrix, RevisitedPositions, RevisitedResult, KAPPAS};
pub use rank::{full_ranking, reranked_ranking, scored_ranking, stream_positions, unscored, Database, RelevantPositions, DEFAULT_BLOCK_ROWS};
pub use spatial::{spatial_columns, verify_pairs, RerankProtocol};

/// Everything that can go wrong while loading ground truth, ranking or scoring.
///
/// Variants carry what a user needs to fix the input: the file, the line or query, the key,
/// and what was expected versus found.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a valid revisitop ground-truth pickle (expected a dict with imlist, qimlist, gnd): {source}")]
    Pickle {
        path: PathBuf,
        #[source]
        source: serde_pickle::Error,
    },

    #[error("{path}: `{key}` has {found} entries, expected {expected}")]
    GndCount { path: PathBuf, key: &'static str, expected: usize, found: usize },

    #[error("{path}: query {query}: `{key}` contains index {index}, outside the database (imlist has {n_db} images)")]
    GndIndex { path: PathBuf, query: usize, key: &'static str, index: i64, n_db: usize },

    #[error("{path}: query {query}: `{key}` is not strictly increasing ({prev} then {next})")]
    GndUnsorted { path: PathBuf, query: usize, key: &'static str, prev: i64, next: i64 },

    #[error("{path}: query {query}: bad `bbx` {bbx:?}: {reason}")]
    GndBox { path: PathBuf, query: usize, bbx: Vec<f64>, reason: &'static str },

    #[error("{path}:{line}: bad header: expected `image,group`, found `{found}`")]
    GroupsHeader { path: PathBuf, line: usize, found: String },

    #[error("{path}:{line}: {reason}")]
    GroupsSyntax { path: PathBuf, line: usize, reason: String },

    #[error("{path}:{line}: image `{image}` already listed on line {first_line}")]
    DuplicateImage { path: PathBuf, line: usize, image: String, first_line: usize },

    #[error("{what}: {len} values is not a whole number of rows of dimension {dim}")]
    Shape { what: &'static str, len: usize, dim: usize },

    #[error("{what}: expected {expected}, found {found}")]
    CountMismatch { what: &'static str, expected: usize, found: usize },

    #[error("query {query}: {what} index {index} out of range (size {len})")]
    IndexOutOfRange { what: &'static str, query: usize, index: usize, len: usize },

    #[error("ranks column {query} is not a permutation of 0..{n_db}: database index {index} {problem}")]
    NotAPermutation { query: usize, n_db: usize, index: usize, problem: &'static str },

    #[error("query {query}: similarity with database item {db_index} is NaN (non-finite descriptor?)")]
    NanScore { query: usize, db_index: usize },

    #[error("query {query}: no position was computed for database item {index} (not in its relevant set)")]
    NotRelevant { query: usize, index: usize },

    /// A descriptor file could not be read or written.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),

    /// Spatial verification refused the local features (widths differ, inconsistent sets).
    #[error(transparent)]
    Spatial(#[from] crate::spatial::SpatialError),

    /// Descriptors or local features read from an index.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),

    /// The model that describes images for an end-to-end evaluation could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error("cannot {action} {path}: {source}")]
    Cache {
        /// What was being done: "create cache directory", "remove", "write".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} {set} image(s) could not be described (every image of the ground truth is needed): {}", failures.len(), images::list_failures(failures))]
    NotDescribed { set: ImageSet, failures: Vec<ImageFailure> },

    #[error("{path}: {found} rows, but the ground truth has {expected} {what}")]
    RowCount { path: PathBuf, found: usize, expected: usize, what: &'static str },

    #[error("descriptor widths differ: {} has {}, {} has {}", db.display(), db_dim, queries.display(), queries_dim)]
    WidthMismatch { db: PathBuf, db_dim: usize, queries: PathBuf, queries_dim: usize },

    #[error("{path}: distractor descriptors are {found}-d, the database is {expected}-d")]
    DistractorWidth { path: PathBuf, found: usize, expected: usize },

    #[error("{path}: image '{image}' appears twice in the names file")]
    DuplicateName { path: PathBuf, image: String },

    #[error("image '{image}' of the groups file has no descriptor in {path}")]
    MissingDescriptor { path: PathBuf, image: String },

    #[error("{path}: image '{image}' has a descriptor but is not in the groups file ({count} extra in all)")]
    ExtraDescriptor { path: PathBuf, image: String, count: usize },

    #[error("{path}: not a .npy file: {source}")]
    NotNpy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: expected a 2-D array [n_db, n_queries], found shape {shape:?}")]
    RanksShape { path: PathBuf, shape: Vec<u64> },

    #[error("{path}: expected int32 or int64 ranks, found dtype '{dtype}'")]
    RanksDtype { path: PathBuf, dtype: String },

    #[error("{path}: negative database index {index}")]
    NegativeRank { path: PathBuf, index: i64 },

    #[error("{path}: shape [{n_db}, {n_queries}] does not match the ground truth ({expected_db} database images, {expected_queries} queries)")]
    RanksMismatch { path: PathBuf, n_db: usize, n_queries: usize, expected_db: usize, expected_queries: usize },
}

/// Result alias for this layer.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
