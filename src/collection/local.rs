//! Local features in a collection: which extractor an index stores ([`LocalConfig`]), loading
//! it beside the global model, and the spatial-verification re-ranking of the top K global
//! results ([`crate::spatial`]), the second stage of DELG-style retrieval.
//!
//! The verification settings depend on the local features ([`spatial_defaults`]): DELG's are the
//! DOLG authors' DELG evaluation settings; XFeat's matching was chosen on `landmarks-dev`, where
//! the authors' loose distance bound made XFeat's 1000 keypoints match unrelated photos, and its
//! ordering by leave-one-source-out on the validation corpus (`docs/quality.md`).

use super::error::{CollectionError as Error, Result};
use super::{Collection, NamedHit};
use crate::checkpoint::Checkpoint;
use crate::descriptors::Extractor;
use crate::index::{LocalConfig, LocalEncoding};
use crate::model::{xfeat, Delg, LocalFeatures, LocalKind, LocalModel, RetrievalModel};
use crate::pretrained::Pretrained;
pub use crate::rerank::SpatialRerank;
use crate::spatial::{verify_and_order, SpatialParams};
use crate::spec::ModelSpec;

/// Why `--local delg` cannot go with a global model.
fn delg_needs_delg(what: &str) -> Error {
    Error::LocalUnavailable {
        extractor: "delg".into(),
        reason: format!(
            "--local delg needs a DELG checkpoint as the global model (-w DELG.pyth, one with 'globalmodel.head.fc.weight' and 'localmodel.conv1.weight' keys); {what} is not one (use --local xfeat with it)"
        ),
    }
}

/// Build the local model an index records, beside `global` (the collection's extractor):
/// XFeat's own network, or DELG's, shared with the global model (which must then be DELG).
pub fn load_local_model(cfg: &LocalConfig, global: &Extractor, device: &burn::tensor::Device) -> Result<LocalModel> {
    match cfg.extractor.as_str() {
        "xfeat" => {
            let path = Pretrained::XFeat.fetch()?;
            let net = xfeat::XFeat::load(&path, device).map_err(crate::model::ModelError::from)?;
            let size = cfg.size.map_or(xfeat::XFeatSize::AtMost(crate::preprocess::DEFAULT_MAX_SIZE), xfeat::XFeatSize::Exactly);
            Ok(LocalModel::XFeat { net: Box::new(net), params: xfeat::XFeatParams { size, ..xfeat::XFeatParams::default() } })
        }
        "delg" => match &global.model {
            RetrievalModel::Delg(net) if net.local_dim() == cfg.dim => Ok(LocalModel::Delg { net: net.clone(), max_size: global.max_size }),
            RetrievalModel::Delg(net) => Err(Error::LocalUnavailable {
                extractor: "delg".into(),
                reason: format!("the index stores {}-d DELG local features, the model gives {}-d", cfg.dim, net.local_dim()),
            }),
            other => Err(delg_needs_delg(&other.name())),
        },
        other => Err(Error::LocalUnavailable { extractor: other.to_owned(), reason: "this dolg cannot extract it".into() }),
    }
}

/// Build the global model `spec` and, when the collection stores local features `local`, their
/// extractor beside it: what every collection loads to describe photos.
pub(crate) fn load_with_local(spec: &ModelSpec, local: Option<&LocalConfig>, device: &burn::tensor::Device) -> Result<crate::spec::LoadedModel> {
    let mut loaded = spec.load(device)?;
    if let Some(cfg) = local {
        loaded.extractor.local = Some(load_local_model(cfg, &loaded.extractor, device)?);
    }
    Ok(loaded)
}

/// The [`LocalConfig`] an index built with `kind` and the global model `spec` records (`None`
/// for no local features). `--local delg` needs a DELG checkpoint (its keys are read here, so a
/// wrong model is refused before anything is built).
pub fn local_config(kind: LocalKind, encoding: LocalEncoding, spec: &ModelSpec) -> Result<Option<LocalConfig>> {
    Ok(match kind {
        LocalKind::None => None,
        LocalKind::Xfeat => Some(LocalConfig { extractor: "xfeat".into(), dim: xfeat::DIM, encoding, size: Some(xfeat::CANONICAL_SIZE) }),
        LocalKind::Delg => {
            let weights = match (&spec.weights, spec.backbone) {
                (Some(w), _) => w,
                (None, Some(b)) => return Err(delg_needs_delg(&format!("--backbone {}", b.name()))),
                (None, None) => return Err(delg_needs_delg("no model")),
            };
            let ckpt = Checkpoint::open(weights)?;
            if !Delg::is_delg(&ckpt) {
                return Err(delg_needs_delg(&weights.display().to_string()));
            }
            let dim = match ckpt.shape("localmodel.conv1.weight") {
                Some(&[dim, ..]) => dim,
                _ => unreachable!("checked by is_delg"),
            };
            Some(LocalConfig { extractor: "delg".into(), dim, encoding, size: None })
        }
    })
}

/// The verification settings for features of `extractor` (an index's [`LocalConfig::extractor`]):
/// - `delg`: the DOLG authors' DELG evaluation settings ([`SpatialParams::default`]: nearest
///   neighbour under distance 0.99, no mutual check, homography, 20 px, 1000 iterations, order
///   by inliers);
/// - `xfeat` (and anything else): mutual nearest neighbours under the same distance bound,
///   homography, 8 px in the frame XFeat saw (`scaled_locations`: 640 px for every photo); candidates ordered by global score + 2 × the evidence of the inliers
///   beyond [`crate::spatial::XFEAT_MNN_MIN_INLIERS`], half-saturating at 50 more ([`crate::spatial::rerank_order`]).
///
/// The XFeat ordering was chosen by leave-one-source-out over the five sources of the
/// validation corpus (`scripts/select_defaults.sh`, `docs/quality.md`): each source scored with
/// the setting chosen on the other four gains 0.0 to 18.7 mAP over global only, where ordering
/// by raw inliers lost up to 12.9. The matching settings (mutual, 8 px) are landmarks-dev's.
pub fn spatial_defaults(extractor: &str) -> SpatialParams {
    match extractor {
        "delg" => SpatialParams::default(),
        _ => {
            let (min_inliers, weight, half_inliers) = crate::spatial::default_ordering(crate::spatial::Matcher::Mnn);
            SpatialParams { mutual: true, threshold_px: 8.0, scaled_locations: true, min_inliers, weight, half_inliers, ..SpatialParams::default() }
        }
    }
}

impl Collection {
    /// What local features the index stores, if any.
    pub fn local_config(&self) -> Option<&LocalConfig> {
        self.index.store().local_config()
    }

    /// `--rerank spatial` with the settings for this index's local features
    /// ([`spatial_defaults`]; the DELG authors' when it stores none), verifying the top 100.
    pub fn spatial_rerank_defaults(&self) -> SpatialRerank {
        spatial_rerank_defaults_for(self.local_config())
    }

    /// The stored local features of the entry at `row` (`None`: it has none).
    pub fn local_features(&self, row: usize) -> Result<Option<LocalFeatures>> {
        Ok(self.index.store().local_features(row)?)
    }

    /// Spatially verify the top `sp.k` of `hits` against `query` and re-order them
    /// ([`crate::spatial::rerank_order`]: by inliers, or by the global score plus the geometric
    /// evidence); results past K keep their place. The hits keep their global `score`. Each verified hit's `inliers` is set. Entries without stored local
    /// features count 0 inliers.
    pub fn spatial_rerank(&self, query: &LocalFeatures, hits: Vec<NamedHit>, sp: &SpatialRerank) -> Result<Vec<NamedHit>> {
        let k = sp.k.min(hits.len());
        let stored: Vec<Option<LocalFeatures>> = hits[..k].iter().map(|h| self.local_features(h.row)).collect::<Result<_>>()?;
        spatial_rerank_with(query, hits, sp, stored)
    }
}

/// `--rerank spatial` with the settings for local features `local` (the DELG authors' for none),
/// verifying the top 100.
pub(crate) fn spatial_rerank_defaults_for(local: Option<&LocalConfig>) -> SpatialRerank {
    let params = local.map_or_else(SpatialParams::default, |c| spatial_defaults(&c.extractor));
    SpatialRerank { params, ..SpatialRerank::default() }
}

/// [`Collection::spatial_rerank`] given the stored local features of the top `sp.k` hits (in
/// order; `None`: stored without), wherever they were read from.
pub(crate) fn spatial_rerank_with(query: &LocalFeatures, hits: Vec<NamedHit>, sp: &SpatialRerank, stored: Vec<Option<LocalFeatures>>) -> Result<Vec<NamedHit>> {
    let k = sp.k.min(hits.len());
    let empty = LocalFeatures::empty(query.dim);
    let candidates: Vec<&LocalFeatures> = stored.iter().map(|f| f.as_ref().unwrap_or(&empty)).collect();
    let global: Vec<f32> = hits[..k].iter().map(|h| h.score).collect();
    let (order, inliers) = verify_and_order(query, &candidates, &global, &sp.params)?;
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
