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

pub mod gnd;
pub mod groups;
pub mod metric;
pub mod rank;

use std::path::PathBuf;

pub use gnd::{QueryGnd, RevisitedGnd};
pub use groups::GroupsGt;
pub use metric::{compute_ap, score_query, PositionSource, Protocol, ProtocolResult, QueryScore, RanksMatrix, RevisitedPositions, RevisitedResult, KAPPAS};
pub use rank::{full_ranking, stream_positions, Database, RelevantPositions, DEFAULT_BLOCK_ROWS};

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
}

/// Result alias for this layer.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
