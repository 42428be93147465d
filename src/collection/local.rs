//! Local features in a collection: which extractor an index stores ([`LocalConfig`]), loading
//! it beside the global model, and the spatial-verification re-ranking of the top K global
//! results ([`crate::spatial`]), the second stage of DELG-style retrieval.

use super::{Collection, NamedHit};
use crate::error::{Error, Result};
use crate::index::{LocalConfig, LocalEncoding};
use crate::model::{xfeat, LocalFeatures, LocalKind, LocalModel};
use crate::pretrained::Pretrained;
pub use crate::rerank::SpatialRerank;
use crate::spatial::verify_and_order;

/// Build the local model an index records.
pub fn load_local_model(cfg: &LocalConfig, device: &burn::tensor::Device) -> Result<LocalModel> {
    match cfg.extractor.as_str() {
        "xfeat" => {
            let path = Pretrained::XFeat.fetch()?;
            let net = xfeat::XFeat::load(&path, device).map_err(crate::model::ModelError::from)?;
            Ok(LocalModel::XFeat { net: Box::new(net), params: xfeat::XFeatParams::default() })
        }
        other => Err(Error::LocalUnavailable { extractor: other.to_owned(), reason: "this dolg cannot extract it".into() }),
    }
}

/// The [`LocalConfig`] an index built with `kind` records (`None` for no local features).
pub fn local_config(kind: LocalKind, encoding: LocalEncoding) -> Result<Option<LocalConfig>> {
    Ok(match kind {
        LocalKind::None => None,
        LocalKind::Xfeat => Some(LocalConfig { extractor: "xfeat".into(), dim: xfeat::DIM, encoding }),
        LocalKind::Delg => {
            return Err(Error::LocalUnavailable { extractor: "delg".into(), reason: "storing DELG local features is not wired into indexes yet".into() })
        }
    })
}

impl Collection {
    /// What local features the index stores, if any.
    pub fn local_config(&self) -> Option<&LocalConfig> {
        self.index.store().local_config()
    }

    /// The stored local features of the entry at `row` (`None`: it has none).
    pub fn local_features(&self, row: usize) -> Result<Option<LocalFeatures>> {
        Ok(self.index.store().local_features(row)?)
    }

    /// Spatially verify the top `sp.k` of `hits` against `query` and re-order them: by inliers
    /// (at least `min_inliers`), ties in global order, then the rest in global order; results past
    /// K keep their place. Each verified hit's `inliers` is set. Entries without stored local
    /// features count 0 inliers.
    pub fn spatial_rerank(&self, query: &LocalFeatures, hits: Vec<NamedHit>, sp: &SpatialRerank) -> Result<Vec<NamedHit>> {
        let k = sp.k.min(hits.len());
        let empty = LocalFeatures::empty(query.dim);
        let stored: Vec<Option<LocalFeatures>> = hits[..k].iter().map(|h| self.local_features(h.row)).collect::<Result<_>>()?;
        let candidates: Vec<&LocalFeatures> = stored.iter().map(|f| f.as_ref().unwrap_or(&empty)).collect();
        let (order, inliers) = verify_and_order(query, &candidates, &sp.params)?;
        let mut head: Vec<Option<NamedHit>> = hits[..k].iter().cloned().map(Some).collect();
        let mut out: Vec<NamedHit> = order
            .into_iter()
            .map(|j| {
                let mut h = head[j].take().expect("a permutation");
                h.inliers = Some(inliers[j] as u32);
                h
            })
            .collect();
        out.extend(hits.into_iter().skip(k));
        Ok(out)
    }
}
