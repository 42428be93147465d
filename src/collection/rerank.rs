//! Re-ranked searches: α-QE then SuperGlobal over the collection's search backend, in the fixed
//! order of [`crate::rerank`] (DBA, when the index has that layer, is already in the vectors).

use std::path::PathBuf;

use super::{Collection, NamedHit, SearchParams};
use crate::error::Result;
use crate::rerank::{expand_query, superglobal_ranking, Rerank};

impl Collection {
    /// [`Collection::search_vectors`] followed by `rerank` (α-QE: a second search with the
    /// expanded query; SuperGlobal over its top M). `params.min_score` applies to the final
    /// scores.
    pub fn search_vectors_reranked(&self, vectors: &[f32], params: &SearchParams, rerank: &Rerank) -> Result<Vec<Vec<NamedHit>>> {
        let queries = self.normalized_queries(vectors)?;
        self.rerank_excluding(&queries, &vec![None; queries.len() / self.dim()], params, rerank)
    }

    /// [`Collection::search_images`] followed by `rerank`; an indexed query photo stays out of
    /// its own results (and so out of its own expansion).
    pub fn search_images_reranked(&mut self, paths: &[PathBuf], params: &SearchParams, rerank: &Rerank) -> Result<Vec<Vec<NamedHit>>> {
        let (vectors, stored) = self.query_vectors(paths, params.crop)?;
        self.rerank_excluding(&vectors, &stored, params, rerank)
    }

    fn rerank_excluding(&self, queries: &[f32], exclude: &[Option<usize>], params: &SearchParams, rerank: &Rerank) -> Result<Vec<Vec<NamedHit>>> {
        if rerank.is_none() {
            return self.search_excluding(queries, exclude, params);
        }
        let dim = self.dim();
        let qe_n = rerank.qe.map_or(0, |q| q.n);
        let depth = params.k.max(rerank.depth()).max(qe_n);
        let wide = SearchParams { k: depth, min_score: f32::MIN, crop: None };
        let store = self.index.store();
        let mut out = Vec::with_capacity(exclude.len());
        for (q, ex) in queries.chunks(dim).zip(exclude) {
            let ex = std::slice::from_ref(ex);
            let mut hits = self.search_excluding(q, ex, &wide)?.remove(0);
            let mut query = q.to_vec();
            if let Some(qe) = rerank.qe.filter(|qe| qe.n > 0) {
                let top: Vec<f32> = hits.iter().take(qe.n).flat_map(|h| self.search_vector(h.row).iter().copied()).collect();
                query = expand_query(q, &top, qe.alpha);
                hits = self.search_excluding(&query, ex, &wide)?.remove(0);
            }
            if let Some(sg) = &rerank.superglobal {
                let ranking: Vec<(usize, f32)> = hits.iter().map(|h| (h.row, h.score)).collect();
                let ranking = superglobal_ranking(&query, &ranking, |r| self.search_vector(r), sg);
                hits = ranking.into_iter().map(|(row, score)| NamedHit { row, name: store.rows()[row].name.clone(), score }).collect();
            }
            hits.truncate(params.k);
            hits.retain(|h| h.score >= params.min_score);
            out.push(hits);
        }
        Ok(out)
    }

    /// The vector searches compare queries with for `row`: the stored descriptor (or its DBA
    /// version when the index has that layer).
    pub(crate) fn search_vector(&self, row: usize) -> &[f32] {
        self.index.store().vector(row)
    }
}
