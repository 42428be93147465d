//! What `dolg serve` ([`crate::serve`]) needs beyond the batch API: describe a query photo without
//! holding the collection (so searches go on while an upload is decoded and described), search with
//! a descriptor or a stored entry, and commit one already-described photo.

use std::path::Path;

use super::{identity, Collection, SearchParams};
use crate::descriptors::Description;
use crate::error::{Error, Result};
use crate::index::{NamedHit, Record};
use crate::model::LocalFeatures;
use crate::rerank::Rerank;
use crate::spec::LoadedModel;

impl Collection {
    /// A model of its own for describing query photos and uploads outside the collection: built
    /// from the recorded spec (and [`Collection::use_weights`]), checked against the recorded
    /// fingerprint like the collection's own. Its descriptors equal the collection's.
    pub fn load_query_model(&self) -> Result<LoadedModel> {
        let recorded = self.index.store().model();
        let mut spec = recorded.spec.clone().ok_or_else(|| Error::NoModel { index: self.dir().to_owned() })?;
        if let Some(w) = &self.weights {
            spec.weights = Some(w.clone());
        }
        let mut loaded = spec.load(&self.device)?;
        if let Some(cfg) = self.index.store().local_config() {
            loaded.extractor.local = Some(super::local::load_local_model(cfg, &loaded.extractor, &self.device)?);
        }
        self.index.check_model(&identity(&spec, &loaded))?;
        Ok(loaded)
    }

    /// Top-k results for one descriptor as the extractor returns it: the same ranking as
    /// [`Collection::search_images`] gives for a photo that is not indexed (or is cropped),
    /// through the index's DBA layer when it has a fresh one.
    pub fn search_described(&self, descriptor: &[f32], params: &SearchParams) -> Result<Vec<NamedHit>> {
        self.search_described_reranked(descriptor, None, params, &Rerank::default())
    }

    /// [`Collection::search_described`] followed by `rerank`, as
    /// [`Collection::search_images_reranked`] does for that photo; `local` are the query's local
    /// features, which spatial re-ranking needs.
    pub fn search_described_reranked(
        &self,
        descriptor: &[f32],
        local: Option<&LocalFeatures>,
        params: &SearchParams,
        rerank: &Rerank,
    ) -> Result<Vec<NamedHit>> {
        if descriptor.len() != self.dim() {
            return Err(Error::VectorLength { expected: self.dim(), values: descriptor.len() });
        }
        Ok(self.rerank_excluding(descriptor, &[None], params, rerank, local.map(std::slice::from_ref))?.pop().unwrap_or_default())
    }

    /// Top-k results for the indexed entry `name`, with its stored descriptor, left out of its own
    /// results: what [`Collection::search_images`] gives for that photo uncropped.
    pub fn search_name(&self, name: &str, params: &SearchParams) -> Result<Vec<NamedHit>> {
        self.search_name_reranked(name, None, params, &Rerank::default())
    }

    /// [`Collection::search_name`] followed by `rerank`, as [`Collection::search_images_reranked`]
    /// does for that photo uncropped. Spatial re-ranking uses `local` when given (the photo's file
    /// described, for an entry stored without local features), else the entry's stored ones.
    pub fn search_name_reranked(&self, name: &str, local: Option<&LocalFeatures>, params: &SearchParams, rerank: &Rerank) -> Result<Vec<NamedHit>> {
        let store = self.index.store();
        let row = store.lookup(name).ok_or_else(|| Error::NotInIndex { index: self.dir().to_owned(), name: name.to_owned() })?;
        let stored;
        let local = match local {
            Some(l) => Some(l),
            None if rerank.spatial.is_some() => {
                stored = self.local_features(row)?.ok_or_else(|| Error::LocalUnavailable {
                    extractor: name.to_owned(),
                    reason: "the entry was stored without local features; describe its photo for spatial re-ranking".into(),
                })?;
                Some(&stored)
            }
            None => None,
        };
        let v = store.vector(row).to_vec();
        Ok(self.rerank_excluding(&v, &[Some(row)], params, rerank, local.map(std::slice::from_ref))?.pop().unwrap_or_default())
    }

    /// Store one photo described elsewhere (with [`Collection::load_query_model`]) under `name`,
    /// with the SHA-256 of its file; durable when this returns. Replaces an entry of that name.
    pub fn add_described(&mut self, name: String, hash: Option<[u8; 32]>, descriptor: Vec<f32>) -> Result<()> {
        self.add_description(name, hash, Description { descriptor, local: None })
    }

    /// [`Collection::add_described`] with the photo's local features, for an index that stores them.
    pub fn add_description(&mut self, name: String, hash: Option<[u8; 32]>, d: Description) -> Result<()> {
        if d.descriptor.len() != self.dim() {
            return Err(Error::VectorLength { expected: self.dim(), values: d.descriptor.len() });
        }
        self.index.commit(vec![Record::Add { name, hash, vector: d.descriptor, local: d.local }])?;
        Ok(())
    }

    /// The names of the live entries, with the SHA-256 of their file when known.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Option<&[u8; 32]>)> {
        self.index.store().live_rows().map(|(_, r)| (r.name.as_str(), r.hash.as_ref()))
    }

    /// Save derived search structures (an HNSW graph) after writes; see [`crate::index::Index::flush`].
    pub fn flush(&mut self) -> Result<()> {
        self.index.flush()?;
        Ok(())
    }

    /// Whether `path` lies inside the collection's root (after resolving links).
    pub fn contains_path(&self, path: &Path) -> bool {
        match (self.root(), std::fs::canonicalize(path)) {
            (Some(r), Ok(p)) => p.starts_with(r),
            _ => false,
        }
    }
}
