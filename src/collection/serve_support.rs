//! What `dolg serve` ([`crate::serve`]) needs beyond the batch API: describe a query photo without
//! holding the collection (so searches go on while an upload is decoded and described), search with
//! a descriptor or a stored entry ([`super::Query`]), and commit one already-described photo.

use super::error::{CollectionError as Error, Result};
use super::{identity, Collection};
use crate::descriptors::Description;
use crate::index::Record;
use crate::metadata::PhotoMeta;
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
        let loaded = super::local::load_with_local(&spec, self.index.store().local_config(), &self.device)?;
        self.index.check_model(&identity(&spec, &loaded))?;
        Ok(loaded)
    }

    /// Store one photo described elsewhere (with [`Collection::load_query_model`]) under `name`,
    /// with the SHA-256 of its file; durable when this returns. Replaces an entry of that name.
    pub fn add_described(&mut self, name: String, hash: Option<[u8; 32]>, descriptor: Vec<f32>) -> Result<()> {
        self.add_description(name, hash, Description { descriptor, local: None }, None)
    }

    /// [`Collection::add_described`] with the photo's local features, for an index that stores
    /// them, and its metadata.
    pub(crate) fn add_description(&mut self, name: String, hash: Option<[u8; 32]>, d: Description, meta: Option<PhotoMeta>) -> Result<()> {
        if d.descriptor.len() != self.dim() {
            return Err(Error::VectorLength { expected: self.dim(), values: d.descriptor.len() });
        }
        self.index.commit(vec![Record::Add { name, hash, vector: d.descriptor, local: d.local, meta: meta.map(Box::new) }])?;
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
}
