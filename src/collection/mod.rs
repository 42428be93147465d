//! [`Collection`]: a searchable photo collection — the model that describes it plus the durable
//! index of its descriptors. The CLI, the HTTP server and the Python package are thin layers over
//! this type.
//!
//! * Photos under the collection's root folder are named by their path relative to it (`a/b.jpg`),
//!   so moving or remounting the whole folder keeps the index valid ([`Collection::set_root`]);
//!   other photos, and all photos of an index made without a root, by their absolute path.
//!   Symbolic links are resolved first, so any spelling of a path finds the same entry. Imported
//!   vectors keep the names they were imported with.
//! * Adding is incremental: a file whose content hash (SHA-256) is already indexed under its name
//!   is not described again, and a file whose size, mtime and inode are unchanged since it was
//!   hashed is not even read (the stat cache). [`Collection::sync`] also re-describes changed
//!   files, removes vanished ones and keeps the descriptor of renamed or moved ones. Descriptors
//!   are committed in batches; a crash loses at most the batch in flight (see
//!   [`crate::index::store`]).
//! * A query photo that is itself indexed (and not cropped) reuses its stored descriptor, needs no
//!   model, and is left out of its own results.
//! * The model is built on first need from the [`ModelSpec`] recorded in the index, and checked
//!   against the recorded fingerprint before any of its vectors are used.
//!
//! Index three photos and ask which photos look most like the first one. (The example runs as a
//! test with a randomly initialised DOLG-R50 from `../shared`; it is ignored without it.)
//!
#![cfg_attr(dolg_shared, doc = "```")]
#![cfg_attr(not(dolg_shared), doc = "```ignore")]
//! use dolg::collection::{AddOptions, Collection, CreateOptions, IndexKind, Query, SearchRequest};
//! use dolg::spec::ModelSpec;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let weights = "../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz";
//! # let dir = tempfile::tempdir()?;
//! # let db = dir.path().join("photos.idx");
//! let device = dolg::kernels::device("cpu")?;
//! let spec = ModelSpec::dolg(weights).with_scales(vec![1.0]);
//! let options = CreateOptions::kind(IndexKind::Exact).with_root(Some("examples".as_ref()));
//! let mut photos = Collection::create(&db, spec, &options, &device)?;
//!
//! let images = ["wxbs-kyiv_1.jpg", "wxbs-kyiv_2.jpg", "wxbs-tyn_1.jpg"];
//! let paths: Vec<_> = images.iter().map(|f| std::path::Path::new("examples/landmarks/images").join(f)).collect();
//! let report = photos.add_paths(&paths, &AddOptions::default(), |_| {})?;
//! assert_eq!((report.added, report.failed.len()), (3, 0));
//!
//! // An indexed query photo reuses its stored descriptor and is left out of its own results.
//! let hits = &photos.search(Query::Images(&paths[..1]), &SearchRequest::top(5))?[0];
//! assert_eq!(hits.len(), 2);
//! assert!(hits[0].score >= hits[1].score && hits[0].name != "landmarks/images/wxbs-kyiv_1.jpg");
//! # Ok(())
//! # }
//! ```

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;
use sha2::{Digest, Sha256};

use self::error::{CollectionError as Error, Result};
use crate::descriptors::{l2_normalize, write_descriptors, Description, DescriptorError};
use crate::index::{exact, Index, LocalConfig, ModelIdentity, Record, Store};
pub use crate::index::{IndexKind, NamedHit, OpenMode};
use crate::model::LocalFeatures;
use crate::preprocess::CropBox;
use crate::spec::{LoadedModel, ModelSpec};

pub mod dba;
pub mod dedup;
mod error;
pub mod filter;
pub mod local;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rerank;
mod search;
mod serve_support;
mod stat_cache;
pub use crate::rerank::{QueryExpansion, Rerank, SuperGlobal};
pub use dedup::{
    components, default_threshold, self_join, DedupMethod, DedupOptions, DedupVerify, DuplicateGroup, DuplicatePair, ScoredPair, DEFAULT_BLOCK_ROWS,
    SCORE_TOLERANCE,
};
pub use error::CollectionError;
pub use filter::{Filter, FilterError};
pub use search::{Query, SearchRequest, DEFAULT_K};
use stat_cache::{FileStat, StatCache};

/// Options of [`Collection::add_paths`].
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Images per durable commit: a crash loses at most this many.
    pub batch: usize,
}

impl Default for AddOptions {
    fn default() -> Self {
        Self { batch: 32 }
    }
}

/// Progress of [`Collection::add_paths`] and [`Collection::sync`], reported as it happens.
#[derive(Debug)]
pub enum AddEvent<'a> {
    /// One file was checked against the index (by its stat record or its content hash).
    Checked {
        /// Files checked so far, this one included.
        done: usize,
        /// Files to check in all.
        total: usize,
    },
    /// Checking is done: this many files will be described, this many are already indexed.
    Planned {
        /// Files to describe (new, changed or not yet hashed).
        describe: usize,
        /// Files already indexed with the same content, not described again.
        unchanged: usize,
    },
    /// One file was described (and will be committed with its batch) or failed.
    Described {
        /// The file, as given.
        path: &'a Path,
        /// Why it could not be described; `None` when it was.
        error: Option<&'a DescriptorError>,
    },
}

/// A file that could not be added, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The file, as given.
    pub path: PathBuf,
    /// Why it could not be described (the error's message, which names the file).
    pub error: String,
}

/// What [`Collection::add_paths`] did.
#[derive(Debug, Clone, Serialize)]
pub struct AddReport {
    /// New or changed files described and stored.
    pub added: usize,
    /// Files already indexed with the same content, skipped without being described.
    pub unchanged: usize,
    /// Files that could not be described, in input order; the others were still added.
    pub failed: Vec<Failure>,
    /// Live entries after the call.
    pub entries: usize,
}

/// What [`Collection::sync`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// New files described and stored.
    pub added: usize,
    /// Files whose content changed, described again.
    pub updated: usize,
    /// Files found under a new name with the content of a vanished entry: stored under the new
    /// name with their old descriptor, not described again.
    pub renamed: usize,
    /// Entries whose file vanished.
    pub removed: usize,
    /// Files already indexed with the same content, left as they were.
    pub unchanged: usize,
    /// New or changed files that could not be described; a changed file's old entry is kept.
    pub failed: Vec<Failure>,
    /// Live entries after the call.
    pub entries: usize,
}

/// Where imported vectors come from; the index cannot check bare vectors itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOrigin {
    /// The caller vouches that the vectors were made with this collection's model and options.
    SameModel,
    /// Unknown origin: only accepted into an index that has no model (imported vectors only).
    Unverified,
}

/// How [`Collection::create`] and [`Collection::open_or_create`] make a collection.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The search backend.
    pub kind: IndexKind,
    /// The folder photos are named relative to (photos elsewhere keep their absolute path);
    /// `None`: every photo by its absolute path.
    pub root: Option<PathBuf>,
    /// Local features stored with each photo, for spatial re-ranking ([`local::local_config`]).
    pub local: Option<LocalConfig>,
}

impl Default for CreateOptions {
    /// An exact index, no root, no local features.
    fn default() -> Self {
        Self { kind: IndexKind::Exact, root: None, local: None }
    }
}

impl CreateOptions {
    /// The defaults (no root, no local features) with the search backend `kind`.
    pub fn kind(kind: IndexKind) -> Self {
        Self { kind, ..Self::default() }
    }

    /// These options with [`CreateOptions::root`] set to `root`.
    pub fn with_root(self, root: Option<&Path>) -> Self {
        Self { root: root.map(Path::to_path_buf), ..self }
    }

    /// These options with [`CreateOptions::local`] set to `local`.
    pub fn with_local(self, local: Option<LocalConfig>) -> Self {
        Self { local, ..self }
    }
}

/// A search's limits as the search paths take them ([`SearchRequest`] is the public form).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchParams<'a> {
    /// Results per query (at most the number of entries).
    pub k: usize,
    /// Results scoring below this cosine similarity are dropped.
    pub min_score: f32,
    /// Only rows marked here (live rows a filter keeps), when given.
    pub keep: Option<&'a [bool]>,
}

impl<'a> SearchParams<'a> {
    /// The rows a search may return, one flag per row id: `keep`, else every live row.
    pub fn rows(&self, store: &Store) -> std::borrow::Cow<'a, [bool]> {
        match self.keep {
            Some(keep) => std::borrow::Cow::Borrowed(keep),
            None => std::borrow::Cow::Owned(store.live_mask()),
        }
    }
}

/// What an index holds, as `dolg index info` reports it. Opening verified every checksum.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The index directory.
    pub index: PathBuf,
    /// The search backend.
    pub kind: IndexKind,
    /// Human name of the model, e.g. `DOLG-R50`, or `imported descriptors`.
    pub model: String,
    /// Descriptor width.
    pub dim: usize,
    /// SHA-256 (hex) of the weights file and every option that changes descriptors; `None` for imported vectors only.
    pub fingerprint: Option<String>,
    /// How the model is rebuilt to describe new photos; `None` for imported vectors only.
    pub spec: Option<ModelSpec>,
    /// Live entries.
    pub entries: usize,
    /// Rows stored since the last compaction, removed and replaced ones included.
    pub stored_rows: usize,
    /// Number of segment files.
    pub segments: usize,
    /// The folder photo names are relative to (indexes made before roots existed have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// A photo collection: its index plus the model that describes new photos.
pub struct Collection {
    index: Index,
    device: Device,
    /// Built on first need: searching by stored photos or vectors needs no model.
    model: std::sync::OnceLock<LoadedModel>,
    /// Weights to build the recorded model from instead of the recorded path.
    weights: Option<PathBuf>,
    /// The fresh DBA layer, read once per state of the store ([`dba`]).
    dba_cache: dba::DbaCache,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection").field("index", &self.index).field("model_loaded", &self.model.get().is_some()).finish()
    }
}

fn sha256_file(path: &Path) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    std::fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut h)).ok().map(|_| h.finalize().into())
}

/// `path` relative to `root` with `/` separators, if it lies under it.
fn relative_name(path: &Path, root: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.filter(|p| !p.is_empty()).map(|p| p.join("/"))
}

/// The deepest folder containing every existing path (canonical): the default collection root.
/// Paths that do not resolve are left out (they will fail to be described anyway).
pub fn common_root(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut root: Option<PathBuf> = None;
    for p in paths {
        let Ok(abs) = std::fs::canonicalize(p) else { continue };
        let dir = if abs.is_dir() { abs } else { abs.parent()?.to_owned() };
        root = Some(match root {
            None => dir,
            Some(r) => r.components().zip(dir.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    root
}

/// Describe `todo` with `ex` and hand the records to `commit` in batches of `batch`; returns
/// (stored, failures). A failed commit stops extraction at once: nothing more could be stored.
/// Each file is hashed from the read that decodes it, so the stored hash is of exactly the content
/// described; the stat cache, when given, learns it.
fn describe_into(
    ex: &crate::descriptors::Extractor,
    todo: Vec<Checked>,
    batch_size: usize,
    mut cache: Option<&mut StatCache>,
    on_event: &mut impl FnMut(AddEvent),
    mut commit: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<(usize, Vec<Failure>)> {
    let mut stored = 0usize;
    let mut failed = Vec::new();
    if todo.is_empty() {
        return Ok((stored, failed));
    }
    let paths: Vec<PathBuf> = todo.iter().map(|t| t.path.clone()).collect();
    let mut batch = Vec::new();
    let mut commit_err = None;
    ex.describe_many_hashed(&paths, |i, path, r| {
        match r {
            Ok((d, facts)) => {
                if let (Some(st), Some(cache)) = (todo[i].stat, cache.as_deref_mut()) {
                    cache.insert(todo[i].name.clone(), st, facts.hash);
                }
                batch.push(Record::Add {
                    name: todo[i].name.clone(),
                    hash: Some(facts.hash),
                    vector: d.descriptor,
                    local: d.local,
                    meta: Some(Box::new(facts.meta)),
                });
                stored += 1;
                on_event(AddEvent::Described { path, error: None });
            }
            Err(e) => {
                on_event(AddEvent::Described { path, error: Some(&e) });
                failed.push(Failure { path: path.to_owned(), error: e.to_string() });
            }
        }
        if batch.len() >= batch_size.max(1) {
            if let Err(e) = commit(std::mem::take(&mut batch)) {
                commit_err = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(e) = commit_err {
        return Err(e);
    }
    commit(batch)?;
    Ok((stored, failed))
}

/// Refuse an import of `vectors` under `names` into the collection `index` of `model`: a ragged
/// buffer, a name count that differs from the row count, or vectors nobody vouched for in a
/// collection that has a model.
fn check_import(index: &Path, model: &ModelIdentity, vectors: &[f32], names: &[String], origin: VectorOrigin) -> Result<()> {
    let dim = model.dim;
    if !vectors.len().is_multiple_of(dim) {
        return Err(Error::VectorLength { expected: dim, values: vectors.len() });
    }
    if vectors.len() / dim != names.len() {
        return Err(Error::NameCount { rows: vectors.len() / dim, names: names.len() });
    }
    if model.fingerprint.is_some() && origin != VectorOrigin::SameModel {
        return Err(Error::UnverifiedVectors { index: index.to_owned(), model: model.name.clone() });
    }
    Ok(())
}

/// The name a photo is indexed under in a collection with `root` ([`Collection::name_of`]).
fn name_in(root: Option<&Path>, path: &Path) -> String {
    // A file that no longer exists (being removed) cannot be canonicalised: made absolute
    // lexically instead, it still finds its entry unless a symbolic link led to it.
    let abs = std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_owned());
    root.and_then(|r| relative_name(&abs, r)).unwrap_or_else(|| abs.display().to_string())
}

/// Where the photo `name` is expected on disk in a collection with `root` ([`Collection::path_of`]).
fn path_in(root: Option<&Path>, name: &str) -> PathBuf {
    match root {
        Some(r) if !Path::new(name).is_absolute() => r.join(name),
        _ => PathBuf::from(name),
    }
}

/// A file checked against the index.
struct Checked {
    path: PathBuf,
    name: String,
    /// `None`: not hashed yet (a name the index does not hold: hashed while it is decoded, so a
    /// new photo is read once) or unreadable (extraction reports why).
    hash: Option<[u8; 32]>,
    /// Taken before any read, so a file changed after it is hashed again next time.
    stat: Option<FileStat>,
}

/// Query vectors ([nq, dim]), the indexed row of each query photo, and their local features.
type QueryInputs = (Vec<f32>, Vec<Option<usize>>, Vec<LocalFeatures>);

impl Collection {
    /// Create the collection `dir` (which must not hold an index yet) for the model `spec` (loaded
    /// now): an index of `options.kind`, storing each photo's local features when `options.local`
    /// says so (see [`local::local_config`]). Photos under `options.root` are named by their path
    /// relative to it, so the index stays valid when the whole folder moves
    /// ([`Collection::set_root`]); others, and every photo without a root, by their absolute path.
    pub fn create(dir: &Path, spec: ModelSpec, options: &CreateOptions, device: &Device) -> Result<Self> {
        let spec = spec.absolute();
        let loaded = local::load_with_local(&spec, options.local.as_ref(), device)?;
        let root = options.root.as_deref().map(absolute_dir).transpose()?;
        let index = Index::create_with(dir, identity(&spec, &loaded), options.kind, root, options.local.clone())?;
        Ok(Self { index, device: device.clone(), model: loaded.into(), weights: None, dba_cache: Default::default() })
    }

    /// Open `dir` for writing if it holds an index of the same model and kind, else create it
    /// ([`Collection::create`]). A `root` given for an existing index replaces its recorded one
    /// (the photos moved); `local`, when given, must match what an existing index stores (`None`
    /// accepts whatever it stores).
    pub fn open_or_create(dir: &Path, spec: ModelSpec, options: &CreateOptions, device: &Device) -> Result<Self> {
        if !Store::exists(dir) {
            return Self::create(dir, spec, options, device);
        }
        let (kind, root, local) = (options.kind, options.root.as_deref(), options.local.clone());
        let spec = spec.absolute();
        let index = Index::open(dir, OpenMode::Write)?;
        let stored = index.store().local_config().cloned();
        // An index's extraction size is its own (XFeat indexes from before the fixed 640 px size
        // record none and keep extracting as they did), so it does not count as a mismatch.
        let same = |a: &LocalConfig, b: &LocalConfig| (&a.extractor, a.dim, a.encoding) == (&b.extractor, b.dim, b.encoding);
        if local.as_ref().is_some_and(|l| stored.as_ref().is_none_or(|s| !same(l, s))) {
            let has = stored.map_or("none".to_string(), |c| format!("{} ({:?})", c.extractor, c.encoding).to_lowercase());
            return Err(Error::LocalUnavailable {
                extractor: local.map(|c| c.extractor).unwrap_or_default(),
                reason: format!("{} stores local features: {has}; local features are chosen when an index is created", dir.display()),
            });
        }
        let loaded = local::load_with_local(&spec, index.store().local_config(), device)?;
        index.check_model(&identity(&spec, &loaded))?;
        if index.kind() != kind {
            return Err(Error::KindMismatch { index: dir.to_owned(), existing: index.kind(), requested: kind });
        }
        let mut c = Self { index, device: device.clone(), model: loaded.into(), weights: None, dba_cache: Default::default() };
        if let Some(r) = root {
            c.set_root(r)?;
        }
        Ok(c)
    }

    /// Record where the photos now are: names relative to the old root resolve under the new one.
    pub fn set_root(&mut self, root: &Path) -> Result<()> {
        let root = absolute_dir(root)?;
        if self.index.store().root() != Some(root.as_path()) {
            self.index.set_root(root)?;
        }
        Ok(())
    }

    /// The folder photo names are relative to, if any.
    pub fn root(&self) -> Option<&Path> {
        self.index.store().root()
    }

    /// The name a photo is indexed under: its path relative to the root when it lies under it,
    /// else its absolute path (symbolic links resolved, so any spelling finds the same entry).
    pub fn name_of(&self, path: &Path) -> String {
        name_in(self.root(), path)
    }

    /// Where the photo named `name` is expected on disk (imported names are returned as given).
    pub fn path_of(&self, name: &str) -> PathBuf {
        path_in(self.root(), name)
    }

    /// Create an index of `dim`-d vectors with no model, for [`Collection::import`].
    pub fn create_for_vectors(dir: &Path, dim: usize, device: &Device) -> Result<Self> {
        let model = ModelIdentity { name: "imported descriptors".into(), dim, fingerprint: None, spec: None };
        let index = Index::create(dir, model, IndexKind::Exact)?;
        Ok(Self { index, device: device.clone(), model: Default::default(), weights: None, dba_cache: Default::default() })
    }

    /// Open an existing collection. [`OpenMode::Read`] shares the index with other readers;
    /// [`OpenMode::Write`] excludes every other process.
    pub fn open(dir: &Path, mode: OpenMode, device: &Device) -> Result<Self> {
        Ok(Self { index: Index::open(dir, mode)?, device: device.clone(), model: Default::default(), weights: None, dba_cache: Default::default() })
    }

    /// Build the recorded model from `weights` instead of the recorded path (the file moved). The
    /// fingerprint check still applies, so it must be the same file.
    pub fn use_weights(&mut self, weights: PathBuf) -> Result<()> {
        if let Some(b) = self.index.store().model().spec.as_ref().and_then(|s| s.backbone) {
            return Err(Error::WeightsNotApplicable { backbone: b.name() });
        }
        self.weights = Some(weights);
        self.model = std::sync::OnceLock::new();
        Ok(())
    }

    /// The underlying index (store and search backend).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        self.index.store().dir()
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.index.store().live_count()
    }

    /// Whether the collection has no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Descriptor width of the collection's vectors.
    pub fn dim(&self) -> usize {
        self.index.store().dim()
    }

    /// HNSW collections: candidates examined per query (recall against speed).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.index.set_ef_search(ef);
    }

    /// The collection's model, built from its recorded spec and checked against its fingerprint.
    fn model(&self) -> Result<&LoadedModel> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        // Two threads may both load it; the first stored wins and the other copy is dropped.
        let _ = self.model.set(self.load_query_model()?);
        Ok(self.model.get().expect("set above"))
    }

    /// Name and stat each file, and hash those `need_hash` asks for (their content decides
    /// whether they are described), using the stat cache for files unchanged since they were last
    /// hashed (so a no-change run reads no image). Other files are hashed while they are decoded.
    fn check(&self, paths: &[PathBuf], cache: &mut StatCache, need_hash: impl Fn(&str) -> bool, on_event: &mut impl FnMut(AddEvent)) -> Vec<Checked> {
        let total = paths.len();
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = self.name_of(p);
                let stat = std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| FileStat::of(&m));
                let hash = match stat {
                    Some(st) => cache.hash(&name, &st).or_else(|| {
                        if !need_hash(&name) {
                            return None;
                        }
                        let h = sha256_file(p)?;
                        cache.insert(name.clone(), st, h);
                        Some(h)
                    }),
                    None => None,
                };
                on_event(AddEvent::Checked { done: i + 1, total });
                Checked { path: p.clone(), name, hash, stat }
            })
            .collect()
    }

    /// Describe `todo` and commit in batches of `batch` ([`describe_into`]).
    fn describe_and_commit(
        &mut self,
        todo: Vec<Checked>,
        batch_size: usize,
        cache: &mut StatCache,
        on_event: &mut impl FnMut(AddEvent),
    ) -> Result<(usize, Vec<Failure>)> {
        if todo.is_empty() {
            return Ok((0, Vec::new()));
        }
        self.model()?;
        let ex = &self.model.get().expect("loaded above").extractor;
        let index = &mut self.index;
        describe_into(ex, todo, batch_size, Some(cache), on_event, |records| Ok(index.commit(records)?))
    }

    /// Drop stat-cache entries of names no longer indexed, and save it (best effort: it is a
    /// cache, so a failure costs re-hashing next time, with a warning).
    fn save_cache(&self, mut cache: StatCache) {
        let store = self.index.store();
        cache.retain(|name| store.lookup(name).is_some());
        if let Err(e) = cache.save(store.dir()) {
            tracing::warn!("{}: cannot save the stat cache ({e}); unchanged files will be hashed again next time", store.dir().display());
        }
    }

    /// Describe and add image files. Files already indexed with the same content are skipped
    /// without being decoded (a file whose size, mtime and inode are unchanged since it was last
    /// hashed is not even read); unreadable files are reported in the result and skipped, the rest
    /// go on. A failed commit (disk full, lost lock) stops at once with that error: everything
    /// committed before it stays. `on_event` sees the plan and every file as it is done.
    pub fn add_paths(&mut self, paths: &[PathBuf], options: &AddOptions, mut on_event: impl FnMut(AddEvent)) -> Result<AddReport> {
        let mut cache = StatCache::load(self.dir());
        // Only an indexed name's content decides anything before extraction.
        let store = self.index.store();
        let checked = self.check(paths, &mut cache, |name| store.lookup(name).is_some(), &mut on_event);
        let (unchanged, todo): (Vec<Checked>, Vec<Checked>) = checked.into_iter().partition(|c| c.hash.is_some_and(|h| self.index.is_current(&c.name, &h)));
        on_event(AddEvent::Planned { describe: todo.len(), unchanged: unchanged.len() });
        let result = self.describe_and_commit(todo, options.batch, &mut cache, &mut on_event);
        self.index.flush()?;
        self.save_cache(cache);
        let (added, failed) = result?;
        Ok(AddReport { added, unchanged: unchanged.len(), failed, entries: self.len() })
    }

    /// Make the index equal to the photo files `files` found under the folders `dirs`: new files
    /// are described and added, changed files described again, files found under a new name with
    /// the content of an entry whose file vanished keep that entry's descriptor (a rename or move,
    /// matched by content hash), and entries whose file vanished from under `dirs` are removed.
    /// Entries outside `dirs`, and imported vectors, are left alone. Unchanged files are
    /// recognised by the stat cache without being read.
    pub fn sync(&mut self, dirs: &[PathBuf], files: &[PathBuf], options: &AddOptions, mut on_event: impl FnMut(AddEvent)) -> Result<SyncReport> {
        let mut cache = StatCache::load(self.dir());
        let scopes: Vec<PathBuf> = dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).collect();
        let names: Vec<String> = files.iter().map(|f| self.name_of(f)).collect();
        let seen: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let store = self.index.store();
        // Entries of photos (they have a content hash) under the synced folders whose file is gone.
        let mut vanished: std::collections::HashMap<[u8; 32], Vec<usize>> = std::collections::HashMap::new();
        for (row, r) in store.live_rows() {
            if let Some(h) = r.hash {
                if !seen.contains(r.name.as_str()) && scopes.iter().any(|s| self.path_of(&r.name).starts_with(s)) {
                    vanished.entry(h).or_default().push(row);
                }
            }
        }
        // A new name is hashed before extraction only when it may be a vanished entry's file
        // under a new name (a rename keeps its descriptor); otherwise while it is decoded.
        let any_vanished = !vanished.is_empty();
        let checked = self.check(files, &mut cache, |name| any_vanished || store.lookup(name).is_some(), &mut on_event);
        let mut report = SyncReport::default();
        let mut moves = Vec::new();
        let mut todo = Vec::new();
        let mut updated_names = std::collections::HashSet::new();
        for c in checked {
            let current = store.lookup(&c.name);
            match (current, c.hash) {
                (Some(row), Some(h)) if store.rows()[row].hash == Some(h) => report.unchanged += 1,
                (Some(_), _) => {
                    updated_names.insert(c.name.clone());
                    todo.push(c);
                }
                (None, Some(h)) => match vanished.get_mut(&h).and_then(Vec::pop) {
                    Some(old) => {
                        // A renamed photo keeps its local features too.
                        let local = store.local_features(old)?;
                        let meta = store.rows()[old].meta.clone();
                        moves.push(Record::Add { name: c.name, hash: Some(h), vector: store.vector(old).to_vec(), local, meta });
                        moves.push(Record::Remove { name: store.rows()[old].name.clone() });
                        report.renamed += 1;
                    }
                    None => todo.push(c),
                },
                (None, None) => todo.push(c),
            }
        }
        let removals: Vec<Record> = vanished.into_values().flatten().map(|row| Record::Remove { name: store.rows()[row].name.clone() }).collect();
        report.removed = removals.len();
        on_event(AddEvent::Planned { describe: todo.len(), unchanged: report.unchanged });
        // Renames and removals first, each one commit: they need no model and are cheap.
        self.index.commit(moves)?;
        self.index.commit(removals)?;
        let n_updates = todo.iter().filter(|c| updated_names.contains(&c.name)).count();
        let result = self.describe_and_commit(todo, options.batch, &mut cache, &mut on_event);
        self.index.flush()?;
        self.save_cache(cache);
        let (stored, failed) = result?;
        let failed_updates = failed.iter().filter(|f| updated_names.contains(&self.name_of(&f.path))).count();
        report.updated = n_updates - failed_updates;
        report.added = stored - report.updated;
        report.failed = failed;
        report.entries = self.len();
        Ok(report)
    }

    /// Remove entries by indexed name or by image path (resolved as [`Collection::add_paths`]
    /// names it). Nothing is removed unless every name is found. Returns the count removed.
    pub fn remove(&mut self, names: &[String]) -> Result<usize> {
        let store = self.index.store();
        let mut records = Vec::with_capacity(names.len());
        for n in names {
            let name = if store.lookup(n).is_some() { n.clone() } else { self.name_of(Path::new(n)) };
            if store.lookup(&name).is_none() {
                return Err(Error::NotInIndex { index: self.dir().to_owned(), name: n.clone() });
            }
            records.push(Record::Remove { name });
        }
        let count = records.len();
        self.index.commit(records)?;
        self.index.flush()?;
        Ok(count)
    }

    /// Add precomputed vectors ([n, dim] row-major, L2-normalised here) under `names`, committed
    /// in chunks of 65,536 rows; `on_chunk` sees the rows done so far.
    pub fn import(&mut self, vectors: &mut [f32], names: &[String], origin: VectorOrigin, mut on_chunk: impl FnMut(usize)) -> Result<()> {
        let dim = self.dim();
        check_import(self.dir(), self.index.store().model(), vectors, names, origin)?;
        const CHUNK: usize = 65_536;
        let mut done = 0;
        for (chunk, names) in vectors.chunks_mut(dim * CHUNK).zip(names.chunks(CHUNK)) {
            let records = chunk
                .chunks_mut(dim)
                .zip(names)
                .map(|(v, name)| {
                    l2_normalize(v);
                    Record::add(name.clone(), None, v.to_vec())
                })
                .collect::<Vec<_>>();
            done += records.len();
            self.index.commit(records)?;
            on_chunk(done);
        }
        self.index.flush()?;
        Ok(())
    }

    /// Rewrite the index into one segment, dropping removed and superseded entries.
    pub fn compact(&mut self) -> Result<()> {
        self.index.compact()?;
        self.index.flush()?;
        Ok(())
    }

    /// The descriptor of each query photo: the stored one when the photo is indexed and not
    /// cropped (with its row, to leave it out of its own results), else freshly described.
    /// The query photos' vectors (the stored one for an indexed, uncropped photo, else
    /// described), the row each one is, and with `with_local` their local features (stored, else
    /// extracted in the same pass as the vector); without it the last list is empty.
    fn query_vectors(&self, paths: &[PathBuf], crop: Option<CropBox>, with_local: bool) -> Result<QueryInputs> {
        let mut vectors = Vec::with_capacity(paths.len() * self.dim());
        let mut stored = Vec::with_capacity(paths.len());
        let mut locals = Vec::new();
        for p in paths {
            let row = if crop.is_none() { self.index.store().lookup(&self.name_of(p)) } else { None };
            let stored_local = if with_local { row.map(|r| self.local_features(r)).transpose()?.flatten() } else { None };
            // Described when not indexed, or when its local features are needed but not stored.
            let described = if row.is_none() || (with_local && stored_local.is_none()) {
                let ex = &self.model()?.extractor;
                Some(if with_local { ex.describe_file_full(p, crop)? } else { Description { descriptor: ex.describe_file(p, crop)?.descriptor, local: None } })
            } else {
                None
            };
            match (row, &described) {
                (Some(r), _) => vectors.extend_from_slice(self.index.store().vector(r)),
                (None, d) => vectors.extend_from_slice(&d.as_ref().expect("described when not indexed").descriptor),
            }
            if with_local {
                let local = stored_local.or(described.and_then(|d| d.local)).ok_or_else(|| Error::LocalUnavailable {
                    extractor: "none".into(),
                    reason: format!("{} stores no local features; build it with --local xfeat to use --rerank spatial", self.dir().display()),
                })?;
                locals.push(local);
            }
            stored.push(row);
        }
        Ok((vectors, stored, locals))
    }

    fn normalized_queries(&self, vectors: &[f32]) -> Result<Vec<f32>> {
        let dim = self.dim();
        if vectors.is_empty() || !vectors.len().is_multiple_of(dim) {
            return Err(Error::VectorLength { expected: dim, values: vectors.len() });
        }
        let mut q = vectors.to_vec();
        q.chunks_mut(dim).for_each(l2_normalize);
        Ok(q)
    }

    fn search_excluding(&self, queries: &[f32], exclude: &[Option<usize>], params: &SearchParams) -> Result<Vec<Vec<NamedHit>>> {
        // One extra result covers a query that finds itself; never ask for more than the index holds.
        let k = params.k.min(self.len());
        let results = self.index.search_where(queries, k + 1, params.min_score, params.keep)?;
        Ok(results.into_iter().zip(exclude).map(|(hits, ex)| hits.into_iter().filter(|h| Some(h.row) != *ex).take(k).collect()).collect())
    }

    fn range_excluding(&self, queries: &[f32], exclude: &[Option<usize>], params: &SearchParams) -> Result<Vec<Vec<NamedHit>>> {
        let s = self.index.store();
        let dim = s.dim();
        let min_score = params.min_score;
        let layer = self.fresh_dba()?;
        let base = layer.as_ref().map_or(s.vectors(), |l| &l.vectors[..]);
        let alive = params.rows(s);
        let live = alive.iter().filter(|&&a| a).count();
        Ok(queries
            .chunks(dim)
            .zip(exclude)
            .map(|(q, ex)| {
                // Widen k until the k-th hit falls below the threshold: the top-k heaps stay the
                // size of the answer (at most twice it), not of the index.
                let mut k = 64.min(live + 1);
                loop {
                    let hits = exact::search(base, dim, Some(&alive), q, k, min_score).remove(0);
                    if hits.len() < k || k > live {
                        break hits
                            .into_iter()
                            .filter(|h| Some(h.row) != *ex)
                            .map(|h| NamedHit { row: h.row, name: s.rows()[h.row].name.clone(), score: h.score, inliers: None })
                            .collect();
                    }
                    k = (k * 2).min(live + 1);
                }
            })
            .collect())
    }

    /// Names and vectors ([n, dim] row-major) of every live entry, in storage order.
    pub fn export(&self) -> (Vec<String>, Vec<f32>) {
        let s = self.index.store();
        let mut names = Vec::with_capacity(s.live_count());
        let mut vectors = Vec::with_capacity(s.live_count() * s.dim());
        for (i, r) in s.live_rows() {
            names.push(r.name.clone());
            vectors.extend_from_slice(s.vector(i));
        }
        (names, vectors)
    }

    /// [`Collection::export`] to a float32 `.npy` [n, dim] with its names file beside it.
    pub fn export_npy(&self, path: &Path) -> Result<usize> {
        let (names, vectors) = self.export();
        let rows: Vec<Vec<f32>> = vectors.chunks(self.dim()).map(<[f32]>::to_vec).collect();
        write_descriptors(path, &rows, self.dim(), Some(&names))?;
        Ok(names.len())
    }

    /// What the index holds ([`Info`]), read from the open store.
    pub fn info(&self) -> Info {
        let s = self.index.store();
        let m = s.model();
        Info {
            index: s.dir().to_owned(),
            kind: self.index.kind(),
            model: m.name.clone(),
            dim: m.dim,
            fingerprint: m.fingerprint.clone(),
            spec: m.spec.clone(),
            entries: s.live_count(),
            stored_rows: s.rows().len(),
            segments: s.segments(),
            root: s.root().map(Path::to_owned),
        }
    }

    /// Mean recall@10 of the collection's backend against exact search, querying with up to 200
    /// stored vectors spread over the index (each left out of its own results).
    pub fn recall_at_10(&self) -> Result<f64> {
        let s = self.index.store();
        let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
        if live.len() < 2 {
            return Err(Error::TooFewForRecall { index: self.dir().to_owned(), entries: live.len() });
        }
        let n = live.len().min(200);
        let picks: Vec<usize> = (0..n).map(|i| live[i * live.len() / n]).collect();
        let queries: Vec<f32> = picks.iter().flat_map(|&r| s.vector(r).iter().copied()).collect();
        let approx = self.index.search(&queries, 11, f32::MIN)?;
        let exact = self.index.search_exact(&queries, 11);
        let mut total = 0.0;
        for ((q, a), e) in picks.iter().zip(&approx).zip(&exact) {
            let truth: Vec<usize> = e.iter().copied().filter(|r| r != q).take(10).collect();
            let found = a.iter().filter(|h| h.row != *q).take(10).filter(|h| truth.contains(&h.row)).count();
            total += found as f64 / truth.len().max(1) as f64;
        }
        Ok(total / picks.len() as f64)
    }
}

/// `dir` made absolute and canonical; it must exist.
fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })
}

/// What the index records about a loaded model.
fn identity(spec: &ModelSpec, loaded: &LoadedModel) -> ModelIdentity {
    let m = &loaded.extractor.model;
    ModelIdentity { name: m.name(), dim: m.out_dim(), fingerprint: Some(loaded.fingerprint.clone()), spec: Some(spec.clone()) }
}

/// Write search results as arrays for scripts: `PREFIX.ids.npy` (int64 [nq, width] index row
/// ids, -1 padding), `PREFIX.scores.npy` (float32 [nq, width], NaN padding) and `PREFIX.rows.tsv`
/// (row id, tab, name for every id used; row ids are the index's internal positions). Each file
/// is replaced atomically.
pub fn write_hits_npy(prefix: &Path, results: &[Vec<NamedHit>], width: usize) -> Result<()> {
    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));
    let shape = [results.len() as u64, width as u64];
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let ids = results.iter().flat_map(|hits| (0..width).map(move |i| hits.get(i).map_or(-1i64, |h| h.row as i64)));
    crate::descriptors::write_npy(&file("ids.npy"), &shape, ids).map_err(io(file("ids.npy")))?;
    let scores = results.iter().flat_map(|hits| (0..width).map(move |i| hits.get(i).map_or(f32::NAN, |h| h.score)));
    crate::descriptors::write_npy(&file("scores.npy"), &shape, scores).map_err(io(file("scores.npy")))?;
    let names: std::collections::BTreeMap<usize, &str> = results.iter().flatten().map(|h| (h.row, h.name.as_str())).collect();
    let table: String = names.into_iter().map(|(row, name)| format!("{row}\t{name}\n")).collect();
    crate::atomic_file::write(&file("rows.tsv"), crate::atomic_file::Mode::Shared, table.as_bytes()).map_err(io(file("rows.tsv")))?;
    Ok(())
}
