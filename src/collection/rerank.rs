//! Re-ranked searches: α-QE then SuperGlobal over the collection's search backend, in the fixed
//! order of [`crate::rerank`], behind [`Collection::search`]. When the index has a fresh DBA layer
//! ([`super::dba`]), every search compares queries with the DBA vectors, exactly, whatever the
//! backend.

use super::dba::DbaLayer;
use super::error::{CollectionError as Error, Result};
use super::{Collection, NamedHit, SearchParams};
use crate::index::exact;
use crate::model::LocalFeatures;
use crate::rerank::{expand_query, superglobal_ranking, Rerank};

impl Collection {
    /// The re-ranking pipeline for `queries` ([nq, dim]); `query_local[i]` are query i's local
    /// features, needed when `rerank.spatial` is set.
    pub(super) fn rerank_excluding(
        &self,
        queries: &[f32],
        exclude: &[Option<usize>],
        params: &SearchParams,
        rerank: &Rerank,
        query_local: Option<&[&LocalFeatures]>,
    ) -> Result<Vec<Vec<NamedHit>>> {
        let layer = self.fresh_dba()?;
        if rerank.is_none() && layer.is_none() {
            return self.search_excluding(queries, exclude, params);
        }
        let dim = self.dim();
        let qe_n = rerank.qe.map_or(0, |q| q.n);
        let depth = params.k.max(rerank.depth()).max(qe_n);
        let wide = SearchParams { k: depth, min_score: f32::MIN, keep: params.keep };
        let store = self.index.store();
        let mut out = Vec::with_capacity(exclude.len());
        for (i, (q, ex)) in queries.chunks(dim).zip(exclude).enumerate() {
            let ex = std::slice::from_ref(ex);
            let mut hits = self.layer_search(layer.as_deref(), q, ex, &wide)?;
            let mut query = q.to_vec();
            if let Some(qe) = rerank.qe.filter(|qe| qe.n > 0) {
                let top: Vec<f32> = hits.iter().take(qe.n).flat_map(|h| self.search_vector(layer.as_deref(), h.row).iter().copied()).collect();
                query = expand_query(q, &top, qe.alpha);
                hits = self.layer_search(layer.as_deref(), &query, ex, &wide)?;
            }
            if let Some(sg) = &rerank.superglobal {
                let ranking: Vec<(usize, f32)> = hits.iter().map(|h| (h.row, h.score)).collect();
                let ranking = superglobal_ranking(&query, &ranking, |r| self.search_vector(layer.as_deref(), r), sg);
                hits = ranking.into_iter().map(|(row, score)| NamedHit { row, name: store.rows()[row].name.clone(), score, inliers: None }).collect();
            }
            if let Some(sp) = &rerank.spatial {
                let local = query_local.and_then(|l| l.get(i)).ok_or_else(|| Error::LocalUnavailable {
                    extractor: "query".into(),
                    reason: "spatial re-ranking was asked for without the query's local features".into(),
                })?;
                hits = self.spatial_rerank(local, hits, sp)?;
            }
            hits.truncate(params.k);
            hits.retain(|h| h.score >= params.min_score);
            out.push(hits);
        }
        Ok(out)
    }

    /// The vector searches compare queries with for `row`: its DBA version when the index has a
    /// fresh DBA layer, else the stored descriptor.
    fn search_vector<'a>(&'a self, layer: Option<&'a DbaLayer>, row: usize) -> &'a [f32] {
        match layer {
            Some(l) => &l.vectors[row * self.dim()..(row + 1) * self.dim()],
            None => self.index.store().vector(row),
        }
    }

    /// One query's top results: through the backend, or exactly over the DBA vectors.
    fn layer_search(&self, layer: Option<&DbaLayer>, q: &[f32], ex: &[Option<usize>], params: &SearchParams) -> Result<Vec<NamedHit>> {
        let Some(l) = layer else { return Ok(self.search_excluding(q, ex, params)?.remove(0)) };
        let s = self.index.store();
        let alive = params.rows(s);
        let k = params.k.min(self.len());
        let hits = exact::search(&l.vectors, self.dim(), Some(&alive), q, k + 1, params.min_score).remove(0);
        Ok(hits
            .into_iter()
            .filter(|h| Some(h.row) != ex[0])
            .take(k)
            .map(|h| NamedHit { row: h.row, name: s.rows()[h.row].name.clone(), score: h.score, inliers: None })
            .collect())
    }
}
