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
#[cfg(feature = "postgres")]
pub use inputs::rows_from_pg;
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
    /// A ground-truth or ranks file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file is not a revisitop ground-truth pickle.
    #[error("{path}: not a valid revisitop ground-truth pickle (expected a dict with imlist, qimlist, gnd): {source}")]
    Pickle {
        /// The pickle file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_pickle::Error,
    },

    /// A list of the ground-truth pickle has the wrong length (e.g. `gnd` versus `qimlist`).
    #[error("{path}: `{key}` has {found} entries, expected {expected}")]
    GndCount {
        /// The pickle file.
        path: PathBuf,
        /// The pickle key whose list has the wrong length.
        key: &'static str,
        /// The expected number of entries.
        expected: usize,
        /// The number of entries found.
        found: usize,
    },

    /// A query's `easy`/`hard`/`junk` list names an image outside the database.
    #[error("{path}: query {query}: `{key}` contains index {index}, outside the database (imlist has {n_db} images)")]
    GndIndex {
        /// The pickle file.
        path: PathBuf,
        /// The 0-based query index.
        query: usize,
        /// The list holding the bad index: `easy`, `hard` or `junk`.
        key: &'static str,
        /// The offending database index (negative or at least `n_db`).
        index: i64,
        /// The number of database images (`imlist` length).
        n_db: usize,
    },

    /// A query's `easy`/`hard`/`junk` list is not strictly increasing.
    #[error("{path}: query {query}: `{key}` is not strictly increasing ({prev} then {next})")]
    GndUnsorted {
        /// The pickle file.
        path: PathBuf,
        /// The 0-based query index.
        query: usize,
        /// The unsorted list: `easy`, `hard` or `junk`.
        key: &'static str,
        /// The earlier of the two out-of-order indices.
        prev: i64,
        /// The later index, not greater than `prev`.
        next: i64,
    },

    /// A query's bounding box is malformed.
    #[error("{path}: query {query}: bad `bbx` {bbx:?}: {reason}")]
    GndBox {
        /// The pickle file.
        path: PathBuf,
        /// The 0-based query index.
        query: usize,
        /// The box as stored in the pickle (expected `[x1, y1, x2, y2]` in pixels).
        bbx: Vec<f64>,
        /// Why the box was rejected.
        reason: &'static str,
    },

    /// A groups CSV does not start with the `image,group` header.
    #[error("{path}:{line}: bad header: expected `image,group`, found `{found}`")]
    GroupsHeader {
        /// The groups CSV file.
        path: PathBuf,
        /// The 1-based line number of the header.
        line: usize,
        /// The header line as found.
        found: String,
    },

    /// A row of a groups CSV is malformed (wrong field count, empty name, bad quoting).
    #[error("{path}:{line}: {reason}")]
    GroupsSyntax {
        /// The groups CSV file.
        path: PathBuf,
        /// The 1-based line number of the bad row.
        line: usize,
        /// What is wrong with the row.
        reason: String,
    },

    /// An image is listed twice in a groups CSV.
    #[error("{path}:{line}: image `{image}` already listed on line {first_line}")]
    DuplicateImage {
        /// The groups CSV file.
        path: PathBuf,
        /// The 1-based line of the repeated entry.
        line: usize,
        /// The repeated image name.
        image: String,
        /// The 1-based line where the image was first listed.
        first_line: usize,
    },

    /// A flat descriptor buffer is not a whole number of rows.
    #[error("{what}: {len} values is not a whole number of rows of dimension {dim}")]
    Shape {
        /// Which buffer ("database descriptors" or "query descriptors").
        what: &'static str,
        /// The number of `f32` values in the buffer.
        len: usize,
        /// The descriptor width the rows were expected to have.
        dim: usize,
    },

    /// Two counts that must agree do not (e.g. queries in a ranking versus in the ground truth).
    #[error("{what}: expected {expected}, found {found}")]
    CountMismatch {
        /// What was counted.
        what: &'static str,
        /// The required count.
        expected: usize,
        /// The count found.
        found: usize,
    },

    /// A query or database index is out of range.
    #[error("query {query}: {what} index {index} out of range (size {len})")]
    IndexOutOfRange {
        /// Which kind of index ("query", "database", "relevant database").
        what: &'static str,
        /// The 0-based query being evaluated.
        query: usize,
        /// The out-of-range index.
        index: usize,
        /// The size of the indexed collection.
        len: usize,
    },

    /// A ranked list is not a permutation of the database indices.
    #[error("ranks column {query} is not a permutation of 0..{n_db}: database index {index} {problem}")]
    NotAPermutation {
        /// The 0-based query whose ranked list is bad.
        query: usize,
        /// The database size.
        n_db: usize,
        /// The offending database index.
        index: usize,
        /// What is wrong with it: "is out of range" or "appears twice".
        problem: &'static str,
    },

    /// A similarity score is NaN, so the ranking would be undefined.
    #[error("query {query}: similarity with database item {db_index} is NaN (non-finite descriptor?)")]
    NanScore {
        /// The 0-based query index.
        query: usize,
        /// The 0-based database index.
        db_index: usize,
    },

    /// A position was asked for an item outside the query's relevant set (positives and ignored items).
    #[error("query {query}: no position was computed for database item {index} (not in its relevant set)")]
    NotRelevant {
        /// The 0-based query index.
        query: usize,
        /// The 0-based database index that has no computed position.
        index: usize,
    },

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

    /// The descriptor cache could not be created, cleared or written.
    #[error("cannot {action} {path}: {source}")]
    Cache {
        /// What was being done: "create cache directory", "remove", "write".
        action: &'static str,
        /// The cache directory or file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Some images of the ground truth could not be described; all of them are needed.
    #[error("{} {set} image(s) could not be described (every image of the ground truth is needed): {}", failures.len(), images::list_failures(failures))]
    NotDescribed {
        /// The image set being described.
        set: ImageSet,
        /// Every image that failed, with its error.
        failures: Vec<ImageFailure>,
    },

    /// A descriptor file has a different number of rows than the ground truth has images.
    #[error("{path}: {found} rows, but the ground truth has {expected} {what}")]
    RowCount {
        /// The descriptor file.
        path: PathBuf,
        /// The number of rows in the file.
        found: usize,
        /// The number of images in the ground truth.
        expected: usize,
        /// Which images: "database images (imlist)" or "queries (qimlist)".
        what: &'static str,
    },

    /// The database and query descriptor files have different widths.
    #[error("descriptor widths differ: {} has {}, {} has {}", db.display(), db_dim, queries.display(), queries_dim)]
    WidthMismatch {
        /// The database descriptor file.
        db: PathBuf,
        /// The database descriptor width.
        db_dim: usize,
        /// The query descriptor file.
        queries: PathBuf,
        /// The query descriptor width.
        queries_dim: usize,
    },

    /// Distractor descriptors are not as wide as the database descriptors.
    #[error("{path}: distractor descriptors are {found}-d, the database is {expected}-d")]
    DistractorWidth {
        /// The distractor descriptor file.
        path: PathBuf,
        /// The distractors' width.
        found: usize,
        /// The database descriptors' width.
        expected: usize,
    },

    /// Two rows of a `dolg extract` output map to the same image name.
    #[error("{path}: image '{image}' appears twice in the names file")]
    DuplicateName {
        /// The descriptor file whose names file has the duplicate.
        path: PathBuf,
        /// The repeated name (relative to the images folder, or the file name).
        image: String,
    },

    /// An image of the groups CSV has no descriptor row.
    #[error("image '{image}' of the groups file has no descriptor in {path}")]
    MissingDescriptor {
        /// The descriptor file or collection folder searched.
        path: PathBuf,
        /// The image without a descriptor.
        image: String,
    },

    /// A descriptor row names an image that the groups CSV does not list.
    #[error("{path}: image '{image}' has a descriptor but is not in the groups file ({count} extra in all)")]
    ExtraDescriptor {
        /// The descriptor file.
        path: PathBuf,
        /// One of the extra images.
        image: String,
        /// How many rows are not in the groups CSV.
        count: usize,
    },

    /// A ranks file is not a readable `.npy` file.
    #[error("{path}: not a .npy file: {source}")]
    NotNpy {
        /// The ranks file.
        path: PathBuf,
        /// The read or parse error.
        #[source]
        source: std::io::Error,
    },

    /// A ranks array is not 2-D.
    #[error("{path}: expected a 2-D array [n_db, n_queries], found shape {shape:?}")]
    RanksShape {
        /// The ranks file.
        path: PathBuf,
        /// The array shape found.
        shape: Vec<u64>,
    },

    /// A ranks array is not int32 or int64.
    #[error("{path}: expected int32 or int64 ranks, found dtype '{dtype}'")]
    RanksDtype {
        /// The ranks file.
        path: PathBuf,
        /// The `.npy` dtype string found (e.g. `<f4`).
        dtype: String,
    },

    /// A ranks array contains a negative database index.
    #[error("{path}: negative database index {index}")]
    NegativeRank {
        /// The ranks file.
        path: PathBuf,
        /// The negative value.
        index: i64,
    },

    /// A ranks array's shape does not match the ground truth.
    #[error("{path}: shape [{n_db}, {n_queries}] does not match the ground truth ({expected_db} database images, {expected_queries} queries)")]
    RanksMismatch {
        /// The ranks file.
        path: PathBuf,
        /// Rows of the array (database images).
        n_db: usize,
        /// Columns of the array (queries).
        n_queries: usize,
        /// Database images in the ground truth.
        expected_db: usize,
        /// Queries in the ground truth.
        expected_queries: usize,
    },
}

/// Result alias for this layer.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
