//! [`Served`]: what the server asks of a collection, so that one server serves an index folder
//! ([`Collection`]) or PostgreSQL shards ([`crate::collection::postgres::PgCollection`]) alike. Each method means what the
//! local collection's method of the same name means; what a PostgreSQL collection cannot do yet
//! (dedup) is an error the handlers turn into a 4xx naming it.

use std::path::{Path, PathBuf};

use crate::collection::{Collection, CollectionError, DedupMethod, DedupOptions, DuplicateGroup, NamedHit, Query, SearchRequest};
use crate::descriptors::Description;
use crate::index::LocalConfig;
use crate::metadata::PhotoMeta;
use crate::model::LocalFeatures;
use crate::rerank::SpatialRerank;
use crate::spec::LoadedModel;

type Result<T> = std::result::Result<T, CollectionError>;

/// A collection as the server uses it; see the module doc.
pub trait Served: Send + Sync {
    /// Live entries.
    fn count(&self) -> Result<usize>;
    /// [`Collection::search`].
    fn search(&self, query: Query, request: &SearchRequest) -> Result<Vec<Vec<NamedHit>>>;
    /// HNSW: candidates examined per query.
    fn set_ef_search(&mut self, ef: usize);
    /// Where the photo `name` is expected on disk.
    fn path_of(&self, name: &str) -> PathBuf;
    /// The name a photo at `path` is stored under.
    fn name_of(&self, path: &Path) -> String;
    /// The folder photo names are relative to.
    fn root(&self) -> Option<&Path>;
    /// Whether `path` lies inside the root (after resolving links).
    fn contains_path(&self, path: &Path) -> bool {
        match (self.root(), std::fs::canonicalize(path)) {
            (Some(r), Ok(p)) => p.starts_with(r),
            _ => false,
        }
    }
    /// `None` when `name` is not stored; else the SHA-256 of its file, when known.
    fn entry_hash(&self, name: &str) -> Result<Option<Option<[u8; 32]>>>;
    /// The stored local features of `name` (`None`: not stored, or stored without).
    fn stored_local(&self, name: &str) -> Result<Option<LocalFeatures>>;
    /// What local features the collection stores.
    fn local_config(&self) -> Option<&LocalConfig>;
    /// `--rerank spatial`'s settings for the collection's local features.
    fn spatial_rerank_defaults(&self) -> SpatialRerank;
    /// Every live entry's name.
    fn names(&self) -> Result<Vec<String>>;
    /// The model's name and fingerprint, as recorded.
    fn model(&self) -> (String, Option<String>);
    /// Groups of near-duplicates at `threshold` (the collection's default when `None`): the
    /// threshold and method used, and the groups.
    fn duplicates(&self, threshold: Option<f32>, method: DedupMethod) -> Result<(f32, DedupMethod, Vec<DuplicateGroup>)>;
    /// Store one photo described elsewhere, with its file's metadata; durable when this returns.
    fn add_description(&mut self, name: String, hash: Option<[u8; 32]>, d: Description, meta: Option<PhotoMeta>) -> Result<()>;
    /// Remove entries by name.
    fn remove(&mut self, names: &[String]) -> Result<usize>;
    /// Save derived search structures after writes.
    fn flush(&mut self) -> Result<()>;
    /// Build the recorded model, checked against its fingerprint.
    fn load_query_model(&self) -> Result<LoadedModel>;
}

impl Served for Collection {
    fn count(&self) -> Result<usize> {
        Ok(Collection::len(self))
    }
    fn search(&self, query: Query, request: &SearchRequest) -> Result<Vec<Vec<NamedHit>>> {
        Collection::search(self, query, request)
    }
    fn set_ef_search(&mut self, ef: usize) {
        Collection::set_ef_search(self, ef)
    }
    fn path_of(&self, name: &str) -> PathBuf {
        Collection::path_of(self, name)
    }
    fn name_of(&self, path: &Path) -> String {
        Collection::name_of(self, path)
    }
    fn root(&self) -> Option<&Path> {
        Collection::root(self)
    }
    fn entry_hash(&self, name: &str) -> Result<Option<Option<[u8; 32]>>> {
        let store = self.index().store();
        Ok(store.lookup(name).map(|r| store.rows()[r].hash))
    }
    fn stored_local(&self, name: &str) -> Result<Option<LocalFeatures>> {
        match self.index().store().lookup(name) {
            Some(row) => self.local_features(row),
            None => Ok(None),
        }
    }
    fn local_config(&self) -> Option<&LocalConfig> {
        Collection::local_config(self)
    }
    fn spatial_rerank_defaults(&self) -> SpatialRerank {
        Collection::spatial_rerank_defaults(self)
    }
    fn names(&self) -> Result<Vec<String>> {
        Ok(self.entries().map(|(n, _)| n.to_owned()).collect())
    }
    fn model(&self) -> (String, Option<String>) {
        let i = self.info();
        (i.model, i.fingerprint)
    }
    fn duplicates(&self, threshold: Option<f32>, method: DedupMethod) -> Result<(f32, DedupMethod, Vec<DuplicateGroup>)> {
        let threshold = threshold.unwrap_or_else(|| self.default_duplicate_threshold());
        let method = self.dedup_method(method);
        let groups = Collection::duplicates(self, threshold, &DedupOptions { method, ..DedupOptions::default() })?;
        Ok((threshold, method, groups))
    }
    fn add_description(&mut self, name: String, hash: Option<[u8; 32]>, d: Description, meta: Option<PhotoMeta>) -> Result<()> {
        Collection::add_description(self, name, hash, d, meta)
    }
    fn remove(&mut self, names: &[String]) -> Result<usize> {
        Collection::remove(self, names)
    }
    fn flush(&mut self) -> Result<()> {
        Collection::flush(self)
    }
    fn load_query_model(&self) -> Result<LoadedModel> {
        Collection::load_query_model(self)
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::collection::postgres::PgCollection;
    use crate::index::postgres::PgStore;

    impl Served for PgCollection {
        fn count(&self) -> Result<usize> {
            PgCollection::count(self)
        }
        fn search(&self, query: Query, request: &SearchRequest) -> Result<Vec<Vec<NamedHit>>> {
            Ok(PgCollection::search(self, query, request, false)?.hits)
        }
        fn set_ef_search(&mut self, ef: usize) {
            PgCollection::set_ef_search(self, ef)
        }
        fn path_of(&self, name: &str) -> PathBuf {
            PgCollection::path_of(self, name)
        }
        fn name_of(&self, path: &Path) -> String {
            PgCollection::name_of(self, path)
        }
        fn root(&self) -> Option<&Path> {
            PgCollection::root(self)
        }
        fn entry_hash(&self, name: &str) -> Result<Option<Option<[u8; 32]>>> {
            Ok(self.store().hashes(&[name.to_owned()])?.remove(name).map(|(h, _)| h))
        }
        fn stored_local(&self, name: &str) -> Result<Option<LocalFeatures>> {
            Ok(self.store().get(&[name.to_owned()], true)?.remove(0).and_then(|s| s.local))
        }
        fn local_config(&self) -> Option<&LocalConfig> {
            self.store().meta().local.as_ref()
        }
        fn spatial_rerank_defaults(&self) -> SpatialRerank {
            PgCollection::spatial_rerank_defaults(self)
        }
        fn names(&self) -> Result<Vec<String>> {
            Ok(self.store().names()?.into_keys().collect())
        }
        fn model(&self) -> (String, Option<String>) {
            let m = &self.store().meta().model;
            (m.name.clone(), m.fingerprint.clone())
        }
        fn duplicates(&self, threshold: Option<f32>, method: DedupMethod) -> Result<(f32, DedupMethod, Vec<DuplicateGroup>)> {
            let threshold = threshold.unwrap_or_else(|| self.default_duplicate_threshold_for(self.store().meta().local.is_some()));
            let method = crate::collection::dedup::resolve_method(method, self.count()?);
            let groups = PgCollection::duplicates(self, threshold, &DedupOptions { method, ..DedupOptions::default() })?;
            Ok((threshold, method, groups))
        }
        fn add_description(&mut self, name: String, hash: Option<[u8; 32]>, d: Description, meta: Option<PhotoMeta>) -> Result<()> {
            if d.descriptor.len() != self.dim() {
                return Err(CollectionError::VectorLength { expected: self.dim(), values: d.descriptor.len() });
            }
            let local = d.local.filter(|_| self.store().meta().local.is_some());
            let store: &PgStore = self.store();
            store.commit(vec![crate::index::Record::Add { name, hash, vector: d.descriptor, local, meta: meta.map(Box::new) }])?;
            store.ensure_index()?;
            Ok(())
        }
        fn remove(&mut self, names: &[String]) -> Result<usize> {
            PgCollection::remove(self, names)
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn load_query_model(&self) -> Result<LoadedModel> {
            PgCollection::load_query_model(self)
        }
    }
}
