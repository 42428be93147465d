//! [`PgCollection`]: a collection whose store is PostgreSQL + pgvector shards
//! ([`crate::index::postgres`]) instead of an index folder. Names, models, adding, removing,
//! importing and searching mean what they mean for [`super::Collection`]: the same photo gets the
//! same name and descriptor, vectors of another model are refused, a file already stored with the
//! same content is not described again, an indexed query photo reuses its stored descriptor and is
//! left out of its own results, and exact search ranks exactly as the local exact index does.
//!
//! What a local collection has and this one does not (yet): the stat cache (every file is hashed
//! to check it, which costs a read but no decoding), DBA layers, dedup and compaction
//! (PostgreSQL's `VACUUM` does that job).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use serde::Serialize;

use super::dedup::{default_threshold, find_duplicates, DedupInput, DedupOptions, DuplicateGroup, LocalReader};
use super::error::{CollectionError as Error, Result};
use super::{
    absolute_dir, check_import, describe_into, identity, local, name_in, path_in, sha256_file, AddEvent, AddOptions, AddReport, Checked, CreateOptions,
    Failure, Query, SearchRequest, SyncReport, VectorOrigin,
};
use crate::descriptors::{l2_normalize, write_descriptors};
use crate::index::postgres::{PgMeta, PgStore, ShardFailure};
use crate::index::{IndexKind, LocalConfig, ModelIdentity, NamedHit, OpenMode, Record};
use crate::model::LocalFeatures;
use crate::spec::{LoadedModel, ModelSpec};

/// Query vectors ([nq, dim]), the stored name of each query photo (left out of its own results),
/// and with spatial re-ranking their local features.
type QueryInputs = (Vec<f32>, Vec<Option<String>>, Vec<LocalFeatures>);

/// A collection on PostgreSQL shards.
pub struct PgCollection {
    store: PgStore,
    device: Device,
    /// Built on first need: searching by stored photos or vectors needs no model.
    model: OnceLock<LoadedModel>,
}

impl std::fmt::Debug for PgCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCollection").field("store", &self.store).finish()
    }
}

/// What a PostgreSQL collection holds ([`PgCollection::info`]).
#[derive(Debug, Clone, Serialize)]
pub struct PgInfo {
    /// The `--db` value, password hidden.
    pub db: String,
    /// Search backend on every shard.
    pub kind: IndexKind,
    /// The model's name.
    pub model: String,
    /// Descriptor width.
    pub dim: usize,
    /// The model fingerprint (`None` for imported vectors).
    pub fingerprint: Option<String>,
    /// Live entries over all shards.
    pub entries: usize,
    /// Each shard's `host:port/db` and entry count, in order.
    pub shards: Vec<(String, usize)>,
    /// Vectors stored as float16 (`halfvec`).
    pub half: bool,
    /// The folder photo names are relative to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Local features stored with each photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalConfig>,
}

/// Search results and the shards that did not answer (only with `allow_partial`).
#[derive(Debug, Clone)]
pub struct PgResults {
    /// Best first, per query.
    pub hits: Vec<Vec<NamedHit>>,
    /// Shards left out of the results.
    pub failed: Vec<ShardFailure>,
}

impl PgCollection {
    /// Create the collection on the shards `db` names, for the model `spec` (loaded now), with
    /// `options` as for a local collection; `half` stores vectors as float16.
    pub fn create(db: &str, spec: ModelSpec, options: &CreateOptions, half: bool, device: &Device) -> Result<Self> {
        let spec = spec.absolute();
        let loaded = local::load_with_local(&spec, options.local.as_ref(), device)?;
        let root = options.root.as_deref().map(absolute_dir).transpose()?;
        let meta = PgMeta::new(identity(&spec, &loaded), options.kind, root, options.local.clone(), half);
        let store = PgStore::create(db, meta)?;
        Ok(Self { store, device: device.clone(), model: loaded.into() })
    }

    /// Open the collection for writing if the shards hold one of the same model and kind, else
    /// create it ([`PgCollection::create`]); as [`super::Collection::open_or_create`].
    pub fn open_or_create(db: &str, spec: ModelSpec, options: &CreateOptions, half: bool, device: &Device) -> Result<Self> {
        if !PgStore::exists(db)? {
            return Self::create(db, spec, options, half, device);
        }
        let mut c = Self::open(db, OpenMode::Write, device)?;
        let stored = c.store.meta().local.clone();
        let same = |a: &LocalConfig, b: &LocalConfig| (&a.extractor, a.dim, a.encoding) == (&b.extractor, b.dim, b.encoding);
        if let Some(l) = &options.local {
            if stored.as_ref().is_none_or(|s| !same(l, s)) {
                return Err(Error::LocalUnavailable {
                    extractor: l.extractor.clone(),
                    reason: format!(
                        "{} stores local features: {}; local features are chosen when a collection is created",
                        c.store.display(),
                        stored.map_or("none".into(), |s| s.extractor)
                    ),
                });
            }
        }
        let spec = spec.absolute();
        let loaded = local::load_with_local(&spec, stored.as_ref(), device)?;
        c.store.meta().model.accepts(&identity(&spec, &loaded))?;
        if c.store.meta().kind != options.kind {
            return Err(Error::KindMismatch { index: PathBuf::from(c.store.display()), existing: c.store.meta().kind, requested: options.kind });
        }
        c.model = loaded.into();
        if let Some(r) = &options.root {
            c.set_root(r)?;
        }
        Ok(c)
    }

    /// Create a collection of `dim`-d vectors with no model, for [`PgCollection::import`].
    pub fn create_for_vectors(db: &str, dim: usize, kind: IndexKind, half: bool, device: &Device) -> Result<Self> {
        let model = ModelIdentity { name: "imported descriptors".into(), dim, fingerprint: None, spec: None };
        let meta = PgMeta::new(model, kind, None, None, half);
        Ok(Self { store: PgStore::create(db, meta)?, device: device.clone(), model: OnceLock::new() })
    }

    /// Copy every live entry of the local collection `from` (names, hashes, vectors, local
    /// features, model, root) into a new collection on the shards `db` names, of `kind` (float16
    /// vectors with `half`), in batches of 4,096 (each a binary `COPY` per shard); `on_rows` sees the rows done so far.
    pub fn import_collection(db: &str, from: &super::Collection, kind: IndexKind, half: bool, mut on_rows: impl FnMut(usize)) -> Result<Self> {
        let s = from.index().store();
        let meta = PgMeta::new(s.model().clone(), kind, s.root().map(Path::to_owned), s.local_config().cloned(), half);
        let c = Self { store: PgStore::create(db, meta)?, device: from.device.clone(), model: OnceLock::new() };
        let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
        let mut done = 0;
        for rows in live.chunks(4096) {
            let records = rows
                .iter()
                .map(|&r| {
                    let row = &s.rows()[r];
                    Ok(Record::Add {
                        name: row.name.clone(),
                        hash: row.hash,
                        vector: s.vector(r).to_vec(),
                        local: s.local_features(r)?,
                        meta: row.meta.clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            c.store.commit(records)?;
            done += rows.len();
            on_rows(done);
        }
        c.store.ensure_index()?;
        Ok(c)
    }

    /// Open an existing collection ([`OpenMode::Read`] reads from replicas when there are any).
    pub fn open(db: &str, mode: OpenMode, device: &Device) -> Result<Self> {
        Ok(Self { store: PgStore::open(db, mode)?, device: device.clone(), model: OnceLock::new() })
    }

    /// Whether `db` holds a collection (its first shard answers with one).
    pub fn exists(db: &str) -> Result<bool> {
        Ok(PgStore::exists(db)?)
    }

    /// The underlying store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// Descriptor width.
    pub fn dim(&self) -> usize {
        self.store.meta().model.dim
    }

    /// The folder photo names are relative to.
    pub fn root(&self) -> Option<&Path> {
        self.store.meta().root.as_deref()
    }

    /// Record where the photos now are.
    pub fn set_root(&mut self, root: &Path) -> Result<()> {
        let root = absolute_dir(root)?;
        if self.root() != Some(root.as_path()) {
            self.store.set_root(root)?;
        }
        Ok(())
    }

    /// The name a photo is stored under ([`super::Collection::name_of`]).
    pub fn name_of(&self, path: &Path) -> String {
        name_in(self.root(), path)
    }

    /// Where the photo `name` is expected on disk.
    pub fn path_of(&self, name: &str) -> PathBuf {
        path_in(self.root(), name)
    }

    /// HNSW: candidates examined per query.
    pub fn set_ef_search(&mut self, ef: usize) {
        self.store.set_ef_search(ef);
    }

    /// Live entries over all shards.
    pub fn count(&self) -> Result<usize> {
        Ok(self.store.count()?)
    }

    fn model(&self) -> Result<&LoadedModel> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let _ = self.model.set(self.load_query_model()?);
        Ok(self.model.get().expect("set above"))
    }

    /// Build the recorded model (with its local-feature extractor), checked against the recorded
    /// fingerprint: what the server describes uploads with.
    pub fn load_query_model(&self) -> Result<LoadedModel> {
        let meta = self.store.meta();
        let spec = meta.model.spec.clone().ok_or_else(|| Error::NoModel { index: PathBuf::from(self.store.display()) })?;
        let loaded = local::load_with_local(&spec, meta.local.as_ref(), &self.device)?;
        meta.model.accepts(&identity(&spec, &loaded))?;
        Ok(loaded)
    }

    /// Describe and add image files, as [`super::Collection::add_paths`]: a file stored under its
    /// name with the same content and model is skipped; unreadable files are reported and
    /// skipped; each batch is one transaction per shard, so a killed run loses at most the batch
    /// in flight and a re-run finishes the job without duplicates.
    pub fn add_paths(&mut self, paths: &[PathBuf], options: &AddOptions, mut on_event: impl FnMut(AddEvent)) -> Result<AddReport> {
        let total = paths.len();
        let names: Vec<String> = paths.iter().map(|p| self.name_of(p)).collect();
        let known = self.store.hashes(&names)?;
        let model_key = self.store.model_key();
        let mut unchanged = 0;
        let mut todo = Vec::new();
        for (i, (p, name)) in paths.iter().zip(names).enumerate() {
            // Only a stored name's content decides anything before extraction; new photos are
            // hashed while they are decoded.
            let current = known.contains_key(&name) && sha256_file(p).is_some_and(|h| PgStore::is_current(&known, &name, &h, &model_key));
            on_event(AddEvent::Checked { done: i + 1, total });
            if current {
                unchanged += 1;
            } else {
                todo.push(Checked { path: p.clone(), name, hash: None, stat: None });
            }
        }
        on_event(AddEvent::Planned { describe: todo.len(), unchanged });
        let (added, failed) = self.describe_and_commit(todo, options.batch, &mut on_event)?;
        Ok(AddReport { added, unchanged, failed, entries: self.count()? })
    }

    /// Describe `todo` and commit it in batches of `batch` ([`describe_into`]), then bring the HNSW
    /// index up to date; returns (stored, failures).
    fn describe_and_commit(&self, todo: Vec<Checked>, batch: usize, on_event: &mut impl FnMut(AddEvent)) -> Result<(usize, Vec<Failure>)> {
        let done = if todo.is_empty() {
            (0, Vec::new())
        } else {
            let ex = &self.model()?.extractor;
            describe_into(ex, todo, batch, None, on_event, |records| Ok(self.store.commit(records)?))?
        };
        self.store.ensure_index()?;
        Ok(done)
    }

    /// Make the collection equal to the photo files `files` found under the folders `dirs`, as
    /// [`super::Collection::sync`]: new files added, changed files described again, a file found
    /// under a new name with the content of an entry whose file vanished keeps that entry's
    /// descriptor and local features (a rename), and entries whose file vanished from under
    /// `dirs` are removed. Every file whose name is stored (or, while some entry vanished, every
    /// file) is hashed to decide; there is no stat cache here.
    pub fn sync(&mut self, dirs: &[PathBuf], files: &[PathBuf], options: &AddOptions, mut on_event: impl FnMut(AddEvent)) -> Result<SyncReport> {
        let scopes: Vec<PathBuf> = dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).collect();
        let names: Vec<String> = files.iter().map(|f| self.name_of(f)).collect();
        let seen: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let stored = self.store.names()?;
        let model_key = self.store.model_key();
        let mut vanished: std::collections::HashMap<[u8; 32], Vec<String>> = std::collections::HashMap::new();
        for (name, (hash, _)) in &stored {
            if let Some(h) = hash {
                if !seen.contains(name.as_str()) && scopes.iter().any(|s| self.path_of(name).starts_with(s)) {
                    vanished.entry(*h).or_default().push(name.clone());
                }
            }
        }
        let mut report = SyncReport::default();
        let (mut renames, mut todo, mut updated) = (Vec::new(), Vec::new(), std::collections::HashSet::new());
        let total = files.len();
        for (i, (path, name)) in files.iter().zip(names).enumerate() {
            let known = stored.get(&name);
            let hash = if known.is_some() || !vanished.is_empty() { sha256_file(path) } else { None };
            on_event(AddEvent::Checked { done: i + 1, total });
            match (known, hash) {
                (Some((Some(h0), m)), Some(h)) if *h0 == h && *m == model_key => report.unchanged += 1,
                (Some(_), _) => {
                    updated.insert(name.clone());
                    todo.push(Checked { path: path.clone(), name, hash: None, stat: None });
                }
                (None, Some(h)) => match vanished.get_mut(&h).and_then(Vec::pop) {
                    Some(old) => {
                        renames.push((old, name, h));
                        report.renamed += 1;
                    }
                    None => todo.push(Checked { path: path.clone(), name, hash: None, stat: None }),
                },
                (None, None) => todo.push(Checked { path: path.clone(), name, hash: None, stat: None }),
            }
        }
        on_event(AddEvent::Planned { describe: todo.len(), unchanged: report.unchanged });
        // Renames keep the stored vector and local features; one batch with the removals.
        let olds: Vec<String> = renames.iter().map(|(old, _, _)| old.clone()).collect();
        let kept = self.store.get(&olds, true)?;
        let mut records = Vec::new();
        for ((old, new, h), s) in renames.into_iter().zip(kept) {
            let s = s.ok_or_else(|| Error::NotInIndex { index: PathBuf::from(self.store.display()), name: old.clone() })?;
            records.push(Record::Add { name: new, hash: Some(h), vector: s.vector, local: s.local, meta: s.meta.map(Box::new) });
            records.push(Record::Remove { name: old });
        }
        let removals: Vec<String> = vanished.into_values().flatten().collect();
        report.removed = removals.len();
        records.extend(removals.into_iter().map(|name| Record::Remove { name }));
        self.store.commit(records)?;
        let n_updates = todo.iter().filter(|c| updated.contains(&c.name)).count();
        let (stored_now, failed) = self.describe_and_commit(todo, options.batch, &mut on_event)?;
        let failed_updates = failed.iter().filter(|f| updated.contains(&self.name_of(&f.path))).count();
        report.updated = n_updates - failed_updates;
        report.added = stored_now - report.updated;
        report.failed = failed;
        report.entries = self.count()?;
        Ok(report)
    }

    /// Remove entries by stored name or by image path; nothing is removed unless every name is
    /// found. Returns the count removed.
    pub fn remove(&mut self, names: &[String]) -> Result<usize> {
        // Each name as given and as a path would be named, looked up in one query.
        let as_paths: Vec<String> = names.iter().map(|n| self.name_of(Path::new(n))).collect();
        let found = self.store.hashes(&[names, &as_paths[..]].concat())?;
        let resolved: Vec<String> = names.iter().zip(as_paths).map(|(n, p)| if found.contains_key(n) { n.clone() } else { p }).collect();
        if let Some((given, _)) = names.iter().zip(&resolved).find(|(_, r)| !found.contains_key(*r)) {
            return Err(Error::NotInIndex { index: PathBuf::from(self.store.display()), name: given.clone() });
        }
        let records: Vec<Record> = resolved.into_iter().map(|name| Record::Remove { name }).collect();
        let n = records.len();
        self.store.commit(records)?;
        Ok(n)
    }

    /// Add precomputed vectors ([n, dim], L2-normalised here) under `names` in chunks of 16,384
    /// rows (each chunk one binary `COPY` per shard); `on_chunk` sees the rows done so far.
    pub fn import(&mut self, vectors: &mut [f32], names: &[String], origin: VectorOrigin, mut on_chunk: impl FnMut(usize)) -> Result<()> {
        let dim = self.dim();
        check_import(Path::new(self.store.display()), &self.store.meta().model, vectors, names, origin)?;
        const CHUNK: usize = 16_384;
        let mut done = 0;
        for (chunk, names) in vectors.chunks_mut(dim * CHUNK).zip(names.chunks(CHUNK)) {
            let records: Vec<Record> = chunk
                .chunks_mut(dim)
                .zip(names)
                .map(|(v, name)| {
                    l2_normalize(v);
                    Record::add(name.clone(), None, v.to_vec())
                })
                .collect();
            done += records.len();
            self.store.commit(records)?;
            on_chunk(done);
        }
        self.store.ensure_index()?;
        Ok(())
    }

    /// Search, as [`super::Collection::search`]: the same queries, filters, range queries and
    /// re-ranking (α-QE, SuperGlobal, spatial with the stored local features), with the same
    /// results as a local index holding the same photos. With `allow_partial`, shards that fail
    /// are left out and named in [`PgResults::failed`] instead of failing the search.
    pub fn search(&self, query: Query, request: &SearchRequest, allow_partial: bool) -> Result<PgResults> {
        request.validate()?;
        let spatial = request.rerank.spatial.is_some();
        let (mut queries, exclude, locals) = self.query_vectors(query, request, spatial)?;
        let dim = self.dim();
        if queries.is_empty() || !queries.len().is_multiple_of(dim) {
            return Err(Error::VectorLength { expected: dim, values: queries.len() });
        }
        queries.chunks_mut(dim).for_each(l2_normalize);
        if request.filter.uses_metadata() && self.store.meta().schema < 2 {
            return Err(Error::Request {
                reason: "this PostgreSQL collection predates stored photo metadata: open it for writing once (e.g. `dolg index sync`) to add the columns, then re-add photos to fill them",
            });
        }
        let filter = request.filter.sql();
        let min_score = request.min_score.unwrap_or(f32::MIN);
        // With a fresh DBA layer every comparison is with the DBA vectors, exactly (as locally).
        let dba = self.store.dba_layer(allow_partial)?.is_some_and(|(_, _, fresh)| fresh);
        if request.rerank.is_none() {
            let (hits, failed) = self.store.search(&queries, request.k, min_score, filter.as_ref(), &exclude, false, dba, allow_partial)?;
            return Ok(PgResults { hits, failed });
        }
        // Re-ranked, one query at a time as the local pipeline does (super::rerank).
        let rerank = &request.rerank;
        let qe_n = rerank.qe.map_or(0, |q| q.n);
        let depth = request.k.max(rerank.depth()).max(qe_n);
        let mut failed = Vec::new();
        let mut out = Vec::with_capacity(exclude.len());
        for (i, (q, ex)) in queries.chunks(dim).zip(&exclude).enumerate() {
            let ex = std::slice::from_ref(ex);
            let mut first = |v: &[f32]| -> Result<Vec<NamedHit>> {
                let (mut hits, f) = self.store.search(v, depth, f32::MIN, filter.as_ref(), ex, false, dba, allow_partial)?;
                failed = f;
                Ok(hits.remove(0))
            };
            let mut hits = first(q)?;
            let mut query = q.to_vec();
            if let Some(qe) = rerank.qe.filter(|qe| qe.n > 0) {
                let top: Vec<f32> = self.vectors_of(&hits[..qe.n.min(hits.len())], dba)?.into_iter().flatten().collect();
                query = crate::rerank::expand_query(q, &top, qe.alpha);
                hits = first(&query)?;
            }
            if let Some(sg) = &rerank.superglobal {
                let vectors = self.vectors_of(&hits, dba)?;
                let at: std::collections::HashMap<usize, usize> = hits.iter().enumerate().map(|(j, h)| (h.row, j)).collect();
                let names: std::collections::HashMap<usize, String> = hits.iter().map(|h| (h.row, h.name.clone())).collect();
                let ranking: Vec<(usize, f32)> = hits.iter().map(|h| (h.row, h.score)).collect();
                let ranking = crate::rerank::superglobal_ranking(&query, &ranking, |r| &vectors[at[&r]], sg);
                hits = ranking.into_iter().map(|(row, score)| NamedHit { row, name: names[&row].clone(), score, inliers: None }).collect();
            }
            if let Some(sp) = &rerank.spatial {
                let local = locals.get(i).ok_or_else(|| Error::LocalUnavailable {
                    extractor: "query".into(),
                    reason: "spatial re-ranking was asked for without the query's local features".into(),
                })?;
                let top: Vec<String> = hits.iter().take(sp.k).map(|h| h.name.clone()).collect();
                let stored = self.store.get(&top, true)?.into_iter().map(|s| s.and_then(|s| s.local)).collect();
                hits = super::local::spatial_rerank_with(local, hits, sp, stored)?;
            }
            hits.truncate(request.k);
            hits.retain(|h| h.score >= min_score);
            out.push(hits);
        }
        Ok(PgResults { hits: out, failed })
    }

    /// The vectors searches compare with for `hits`, in order: stored, or with `dba` their DBA
    /// vectors.
    fn vectors_of(&self, hits: &[NamedHit], dba: bool) -> Result<Vec<Vec<f32>>> {
        let names: Vec<String> = hits.iter().map(|h| h.name.clone()).collect();
        let found = if dba { self.store.get_dba(&names)? } else { self.store.get(&names, false)?.into_iter().map(|s| s.map(|s| s.vector)).collect() };
        found.into_iter().zip(&names).map(|(v, n)| v.ok_or_else(|| Error::NotInIndex { index: PathBuf::from(self.store.display()), name: n.clone() })).collect()
    }

    /// Compute α-DBA over every entry (each with its `k` nearest neighbours, ties to the
    /// earlier-added entry, as the local layer) and store it in the shards as the collection's
    /// DBA layer, which searches then use. Computed here, in full, from every vector read from
    /// the shards; fails, asking for a re-run, when entries change meanwhile.
    pub fn build_dba(&mut self, k: usize, alpha: f32) -> Result<()> {
        let stamps = self.store.stamps()?;
        let (names, vectors) = self.export()?;
        let layer = crate::rerank::dba(&vectors, self.dim(), k, alpha);
        self.store.write_dba(&names, &layer, k, alpha, &stamps)?;
        Ok(())
    }

    /// After a change: compute a DBA layer the change made stale again, in full (the local
    /// index recomputes only the affected entries). Returns `(k, α, entries)` when it did.
    pub fn refresh_dba(&mut self) -> Result<Option<(usize, f32, usize)>> {
        match self.store.dba_layer(false)? {
            Some((k, alpha, false)) => {
                self.build_dba(k, alpha)?;
                Ok(Some((k, alpha, self.count()?)))
            }
            _ => Ok(None),
        }
    }

    /// `--rerank spatial`'s settings for the local features the collection stores (the DELG
    /// authors' when it stores none), as for a local collection.
    pub fn spatial_rerank_defaults(&self) -> crate::rerank::SpatialRerank {
        super::local::spatial_rerank_defaults_for(self.store.meta().local.as_ref())
    }

    /// Query vectors, for stored photos the name to leave out of their own results, and with
    /// `with_local` each query's local features (stored, else extracted with its vector).
    fn query_vectors(&self, query: Query, request: &SearchRequest, with_local: bool) -> Result<QueryInputs> {
        let no_local = |what: &str| Error::LocalUnavailable {
            extractor: what.to_owned(),
            reason: "spatial re-ranking needs query photos (or stored names) with local features".into(),
        };
        match query {
            Query::Vectors(v) => {
                if with_local {
                    return Err(no_local("query"));
                }
                Ok((v.to_vec(), vec![None; v.len() / self.dim().max(1)], Vec::new()))
            }
            Query::Described(ds) => {
                let locals = if with_local { ds.iter().map(|d| d.local.clone().ok_or_else(|| no_local("query"))).collect::<Result<_>>()? } else { Vec::new() };
                Ok((ds.iter().flat_map(|d| d.descriptor.iter().copied()).collect(), vec![None; ds.len()], locals))
            }
            Query::Name { name, local } => {
                let stored = self.store.get(&[name.to_owned()], with_local && local.is_none())?.remove(0);
                let s = stored.ok_or_else(|| Error::NotInIndex { index: PathBuf::from(self.store.display()), name: name.to_owned() })?;
                let locals = match (with_local, local) {
                    (false, _) => Vec::new(),
                    (true, Some(l)) => vec![l.clone()],
                    (true, None) => vec![s.local.ok_or_else(|| no_local(name))?],
                };
                Ok((s.vector, vec![Some(name.to_owned())], locals))
            }
            Query::Images(paths) => {
                let names: Vec<String> = paths.iter().map(|p| self.name_of(p)).collect();
                let stored = if request.crop.is_none() { self.store.get(&names, with_local)? } else { vec![None; names.len()] };
                let mut vectors = Vec::with_capacity(paths.len() * self.dim());
                let mut exclude = Vec::with_capacity(paths.len());
                let mut locals = Vec::new();
                for ((p, name), s) in paths.iter().zip(names).zip(stored) {
                    // Described when not stored, or when its local features are needed but not stored.
                    let described = match &s {
                        Some(s) if !with_local || s.local.is_some() => None,
                        _ => {
                            let ex = &self.model()?.extractor;
                            Some(if with_local {
                                ex.describe_file_full(p, request.crop)?
                            } else {
                                crate::descriptors::Description { descriptor: ex.describe_file(p, request.crop)?.descriptor, local: None }
                            })
                        }
                    };
                    match s {
                        Some(s) => {
                            vectors.extend_from_slice(&s.vector);
                            exclude.push(Some(name));
                            if with_local {
                                locals.push(s.local.or_else(|| described.and_then(|d| d.local)).ok_or_else(|| no_local("query"))?);
                            }
                        }
                        None => {
                            let d = described.expect("described when not stored");
                            vectors.extend_from_slice(&d.descriptor);
                            exclude.push(None);
                            if with_local {
                                locals.push(d.local.ok_or_else(|| no_local("query"))?);
                            }
                        }
                    }
                }
                Ok((vectors, exclude, locals))
            }
        }
    }

    /// What the collection holds.
    pub fn info(&self) -> Result<PgInfo> {
        let m = self.store.meta();
        let counts = self.store.counts()?;
        Ok(PgInfo {
            db: self.store.display().to_owned(),
            kind: m.kind,
            model: m.model.name.clone(),
            dim: m.model.dim,
            fingerprint: m.model.fingerprint.clone(),
            entries: counts.iter().sum(),
            shards: self.store.shard_labels().into_iter().zip(counts).collect(),
            half: m.half,
            root: m.root.clone(),
            local: m.local.clone(),
        })
    }

    /// Mean recall@10 of the shards' search against exact search, querying with up to 200
    /// stored vectors spread over the collection (each left out of its own results).
    pub fn recall_at_10(&self) -> Result<f64> {
        let (names, vectors) = self.export()?;
        if names.len() < 2 {
            return Err(Error::TooFewForRecall { index: PathBuf::from(self.store.display()), entries: names.len() });
        }
        let dim = self.dim();
        let n = names.len().min(200);
        let picks: Vec<usize> = (0..n).map(|i| i * names.len() / n).collect();
        let queries: Vec<f32> = picks.iter().flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied()).collect();
        let exclude: Vec<Option<String>> = picks.iter().map(|&r| Some(names[r].clone())).collect();
        let (approx, _) = self.store.search(&queries, 10, f32::MIN, None, &exclude, false, false, false)?;
        let (exact, _) = self.store.search(&queries, 10, f32::MIN, None, &exclude, true, false, false)?;
        let total: f64 = approx
            .iter()
            .zip(&exact)
            .map(|(a, e)| {
                let truth: Vec<&str> = e.iter().map(|h| h.name.as_str()).collect();
                a.iter().filter(|h| truth.contains(&h.name.as_str())).count() as f64 / truth.len().max(1) as f64
            })
            .sum();
        Ok(total / picks.len() as f64)
    }

    /// Groups of near-duplicate photos, found and grouped as [`super::Collection::duplicates`]
    /// finds them. Every vector is read from the shards into this process (with its name: about
    /// 2 KB a photo at 512-d, so 2 GB per million photos) and paired here; the local features of
    /// the candidate pairs, for the check, are fetched from their shards in one query each.
    pub fn duplicates(&self, threshold: f32, options: &DedupOptions) -> Result<Vec<DuplicateGroup>> {
        let (names, vectors) = self.export()?;
        let read = |rows: &[usize]| -> Result<Vec<Option<LocalFeatures>>> {
            let wanted: Vec<String> = rows.iter().map(|&r| names[r].clone()).collect();
            Ok(self.store.get(&wanted, true)?.into_iter().map(|s| s.and_then(|s| s.local)).collect())
        };
        let input = DedupInput {
            vectors: &vectors,
            dim: self.dim(),
            alive: None,
            name: &|r| names[r].clone(),
            search: None,
            local: self.store.meta().local.as_ref().map(|c| (c, &read as &LocalReader<'_>)),
        };
        find_duplicates(&input, threshold, options)
    }

    /// The near-duplicate threshold measured to suit this collection's model, with
    /// (`verified`) or without the local check ([`super::dedup::default_threshold`]).
    pub fn default_duplicate_threshold_for(&self, verified: bool) -> f32 {
        default_threshold(&self.store.meta().model, verified)
    }

    /// Names and vectors of every entry, in the order they were added.
    pub fn export(&self) -> Result<(Vec<String>, Vec<f32>)> {
        Ok(self.store.export()?)
    }

    /// [`PgCollection::export`] to a float32 `.npy` [n, dim] with its names file beside it.
    pub fn export_npy(&self, path: &Path) -> Result<usize> {
        let (names, vectors) = self.export()?;
        let rows: Vec<Vec<f32>> = vectors.chunks(self.dim()).map(<[f32]>::to_vec).collect();
        write_descriptors(path, &rows, self.dim(), Some(&names))?;
        Ok(names.len())
    }
}
