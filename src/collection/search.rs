//! [`Collection::search`]: the one way to search a collection. The query is photos, vectors, an
//! indexed name or photos described elsewhere ([`Query`]); the request holds the number of results
//! or a score range, the crop, a filter and the re-ranking ([`SearchRequest`]). The CLI, the server and
//! Python all come through here, so a query means the same ranking in each.

use std::borrow::Cow;
use std::path::PathBuf;

use super::error::{CollectionError as Error, Result};
use super::filter::Filter;
use super::{Collection, NamedHit, SearchParams};
use crate::descriptors::Description;
use crate::model::LocalFeatures;
use crate::preprocess::CropBox;
use crate::rerank::Rerank;

/// What a search starts from.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    /// Photo files. An indexed photo (not cropped) uses its stored descriptor and local
    /// features, needs no model, and is left out of its own results; any other photo is described
    /// with the collection's model (built on first need from its recorded spec).
    Images(&'a [PathBuf]),
    /// Descriptors, `[n, dim]` row-major; normalised here. Spatial re-ranking needs photos.
    Vectors(&'a [f32]),
    /// The indexed entry `name`, with its stored descriptor, left out of its own results: what
    /// [`Query::Images`] gives for that photo uncropped. Spatial re-ranking uses `local` when given
    /// (the photo's file described, for an entry stored without local features), else the
    /// entry's stored ones.
    Name {
        /// The entry's name in the collection (as [`Collection::name_of`] gives it).
        name: &'a str,
        /// Local features to re-rank with instead of the entry's stored ones.
        local: Option<&'a LocalFeatures>,
    },
    /// Photos described elsewhere ([`Collection::load_query_model`]: the server describes uploads
    /// without holding the collection), with their local features for spatial re-ranking. The
    /// same ranking as [`Query::Images`] for photos that are not indexed.
    Described(&'a [Description]),
}

/// How many results, which ones, and how they are re-ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// Results per query (at most the number of entries); 0 asks for every entry scoring at least
    /// `min_score` (a range query: exact whatever the index kind, best first, no re-ranking).
    pub k: usize,
    /// Results scoring below this cosine similarity are dropped.
    pub min_score: Option<f32>,
    /// Crop query photos to this box first ([`Query::Images`] only; a cropped photo is always
    /// described, never taken from the index).
    pub crop: Option<CropBox>,
    /// Only entries this keeps are searched (filtering comes before ranking, so a selective
    /// filter still gets `k` results when `k` entries pass it).
    pub filter: Filter,
    /// Applied after the first search, in the fixed order α-QE, SuperGlobal, spatial; build it
    /// from a caller's options with [`crate::rerank::RerankSpec::resolve`].
    pub rerank: Rerank,
}

/// `dolg search`'s default number of results, and the server's.
pub const DEFAULT_K: usize = 10;

impl Default for SearchRequest {
    fn default() -> Self {
        Self::top(DEFAULT_K)
    }
}

impl SearchRequest {
    /// The best `k` results.
    pub fn top(k: usize) -> Self {
        Self { k, min_score: None, crop: None, filter: Filter::default(), rerank: Rerank::default() }
    }

    /// Every entry scoring at least `min_score`.
    pub fn range(min_score: f32) -> Self {
        Self { k: 0, min_score: Some(min_score), ..Self::top(0) }
    }

    /// This request with the re-ranking [`SearchRequest::rerank`] replaced.
    pub fn with_rerank(self, rerank: Rerank) -> Self {
        Self { rerank, ..self }
    }

    /// This request with the query-photo crop [`SearchRequest::crop`] replaced.
    pub fn with_crop(self, crop: Option<CropBox>) -> Self {
        Self { crop, ..self }
    }

    /// This request with the entry filter [`SearchRequest::filter`] replaced.
    pub fn with_filter(self, filter: Filter) -> Self {
        Self { filter, ..self }
    }

    /// This request with the cosine-similarity floor [`SearchRequest::min_score`] replaced.
    pub fn with_min_score(self, min_score: Option<f32>) -> Self {
        Self { min_score, ..self }
    }

    /// A range query (`k` 0).
    pub fn is_range(&self) -> bool {
        self.k == 0
    }

    /// Requests that cannot be carried out, whatever the collection.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &'static str| Err(Error::Request { reason });
        if let Some(s) = self.min_score.filter(|s| !s.is_finite()) {
            return Err(Error::Request { reason: if s.is_nan() { "min_score is not a number" } else { "min_score is not finite" } });
        }
        if self.is_range() && self.min_score.is_none() {
            return bad("k 0 asks for every entry above a score: give min_score");
        }
        if self.is_range() && !self.rerank.is_none() {
            return bad("re-ranking (qe, superglobal, spatial) applies to top-k searches, not to range queries (k 0)");
        }
        Ok(())
    }

    fn params<'a>(&self, keep: Option<&'a [bool]>) -> SearchParams<'a> {
        SearchParams { k: self.k, min_score: self.min_score.unwrap_or(f32::MIN), keep }
    }
}

impl Collection {
    /// Results for each query, best first, as `request` asks: the top `k` (re-ranked as asked) or
    /// every entry above `min_score`. With a fresh DBA layer ([`super::dba`]) entries are compared
    /// through it. Describing query photos loads the collection's model on first need.
    pub fn search(&self, query: Query<'_>, request: &SearchRequest) -> Result<Vec<Vec<NamedHit>>> {
        request.validate()?;
        let spatial = request.rerank.spatial.is_some();
        // Owners of local features the queries borrow (described photos, a stored entry's).
        let image_locals: Vec<LocalFeatures>;
        let stored_local: LocalFeatures;
        // Each query as its vector, the row it is in the index (left out of its own results) and,
        // with spatial re-ranking, its local features.
        let (vectors, exclude, locals): (Cow<'_, [f32]>, Vec<Option<usize>>, Vec<&LocalFeatures>) = match query {
            Query::Images(paths) => {
                let (vectors, rows, locals) = self.query_vectors(paths, request.crop, spatial)?;
                image_locals = locals;
                (Cow::Owned(vectors), rows, image_locals.iter().collect())
            }
            Query::Vectors(vectors) => {
                if spatial {
                    return Err(Error::LocalUnavailable {
                        extractor: "query".into(),
                        reason: "spatial re-ranking needs query photos (or indexed names), not vectors".into(),
                    });
                }
                let queries = self.normalized_queries(vectors)?;
                let n = queries.len() / self.dim();
                (Cow::Owned(queries), vec![None; n], Vec::new())
            }
            Query::Name { name, local } => {
                let store = self.index.store();
                let row = store.lookup(name).ok_or_else(|| Error::NotInIndex { index: self.dir().to_owned(), name: name.to_owned() })?;
                let locals = match local {
                    _ if !spatial => Vec::new(),
                    Some(l) => vec![l],
                    None => {
                        stored_local = self.local_features(row)?.ok_or_else(|| Error::LocalUnavailable {
                            extractor: name.to_owned(),
                            reason: "the entry was stored without local features; search with its photo for spatial re-ranking".into(),
                        })?;
                        vec![&stored_local]
                    }
                };
                (Cow::Borrowed(store.vector(row)), vec![Some(row)], locals)
            }
            Query::Described(described) => {
                let dim = self.dim();
                if let Some(d) = described.iter().find(|d| d.descriptor.len() != dim) {
                    return Err(Error::VectorLength { expected: dim, values: d.descriptor.len() });
                }
                let vectors: Vec<f32> = described.iter().flat_map(|d| d.descriptor.iter().copied()).collect();
                // A query without local features is refused by the spatial stage, naming it.
                let locals = if spatial { described.iter().map_while(|d| d.local.as_ref()).collect() } else { Vec::new() };
                (Cow::Owned(vectors), vec![None; described.len()], locals)
            }
        };
        let store = self.index.store();
        let keep: Option<Vec<bool>> =
            (!request.filter.is_empty()).then(|| store.rows().iter().map(|r| r.alive && request.filter.keeps(&r.name, r.meta.as_deref())).collect());
        let params = request.params(keep.as_deref());
        if request.is_range() {
            return self.range_excluding(&vectors, &exclude, &params);
        }
        self.rerank_excluding(&vectors, &exclude, &params, &request.rerank, spatial.then_some(&locals[..]))
    }
}
