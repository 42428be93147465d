//! `dolg.Collection`: a searchable photo collection (the library's `Collection`), with what the
//! `dolg index ...`, `dolg search` and `dolg dedup` commands do around it (folders expanded the
//! same way, the DBA layer refreshed after every change).

use std::path::PathBuf;
use std::sync::Mutex;

use dolg::collection::dedup::resolve_method;
use dolg::collection::postgres::PgCollection;
use dolg::collection::{
    common_root, AddOptions, Collection as Local, CollectionError, CreateOptions, DedupMethod, DedupOptions, Filter, IndexKind, NamedHit, OpenMode, Query,
    Rerank, SearchRequest, VectorOrigin,
};
use dolg::preprocess::CropBox;
use dolg::rerank::{RerankError, RerankSpec, SpatialRerank};
use numpy::{PyArray2, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::model::Model;
use crate::{bad_choice, json_to_py, lib_err, list_files, matrix, value_enum, DolgError};

/// A photo collection: a durable, incremental index of descriptors plus the model that makes
/// them. Create one with `Collection.create(path, model)`, open one with `Collection.open(path)`.
/// `path` may also name PostgreSQL shards (`postgres://...` URLs, comma-separated), as `--db`
/// does on the command line. Methods may be called from several Python threads; they take turns
/// (one lock per collection) and release the GIL while they work.
#[pyclass(frozen, module = "dolg._dolg")]
pub struct Collection {
    inner: Mutex<Inner>,
}

/// The collection behind a `dolg.Collection`: an index folder or PostgreSQL shards.
enum Inner {
    Local(Local),
    Pg(PgCollection),
}

/// `$e` with `$x` bound to whichever collection `$c` holds (the same method on both kinds).
macro_rules! either {
    ($c:expr, $x:ident => $e:expr) => {
        match $c {
            Inner::Local($x) => $e,
            Inner::Pg($x) => $e,
        }
    };
}

impl Inner {
    /// The index folder, or the shards (passwords left out).
    fn place(&self) -> PathBuf {
        match self {
            Inner::Local(c) => c.dir().to_owned(),
            Inner::Pg(c) => PathBuf::from(c.store().display()),
        }
    }

    fn len(&self) -> dolg::Result<usize> {
        Ok(match self {
            Inner::Local(c) => c.len(),
            Inner::Pg(c) => c.count()?,
        })
    }

    /// After a change: recompute a DBA layer the change made stale (as every CLI writer does).
    fn refresh_dba(&mut self) -> dolg::Result<()> {
        match self {
            Inner::Local(c) => Ok(c.refresh_dba().map(|_| ())?),
            Inner::Pg(c) => Ok(c.refresh_dba().map(|_| ())?),
        }
    }
}

fn is_pg(path: &std::path::Path) -> Option<&str> {
    path.to_str().filter(|p| dolg::index::is_postgres_url(p))
}

/// A re-ranking request the library refused, as Python's `ValueError` naming the keyword.
pub(crate) fn spec_error(e: RerankError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Keyword arguments of `search`, `search_images`, `eval_*` that name re-ranking, into the
/// library's [`RerankSpec`]: the keywords are its keys, and its parsing, validation and defaults
/// are the CLI's and the server's. Text values (`rerank`, `matcher`, `ransac`, `spatial_weight`)
/// go through [`RerankSpec::set`], so a bad one is named as on the other front ends.
#[derive(Default)]
pub(crate) struct RerankKwargs<'a> {
    pub rerank: Option<&'a str>,
    pub qe: Option<usize>,
    pub qe_alpha: Option<f32>,
    pub dba: Option<usize>,
    pub dba_alpha: Option<f32>,
    pub sg_m: Option<usize>,
    pub sg_k: Option<usize>,
    pub sg_beta: Option<f32>,
    pub rerank_k: Option<usize>,
    pub min_inliers: Option<usize>,
    /// A number or "inliers", as Python gave it (`str()` of it).
    pub spatial_weight: Option<String>,
    pub matcher: Option<&'a str>,
    pub match_ratio: Option<f64>,
    pub mutual: Option<bool>,
    pub ransac: Option<&'a str>,
    pub ransac_px: Option<f64>,
}

impl RerankKwargs<'_> {
    pub(crate) fn spec(&self) -> PyResult<RerankSpec> {
        let mut spec = RerankSpec {
            qe: self.qe,
            qe_alpha: self.qe_alpha,
            dba: self.dba,
            dba_alpha: self.dba_alpha,
            sg_m: self.sg_m,
            sg_k: self.sg_k,
            sg_beta: self.sg_beta,
            rerank_k: self.rerank_k,
            min_inliers: self.min_inliers,
            match_ratio: self.match_ratio,
            mutual: self.mutual,
            ransac_px: self.ransac_px,
            ..RerankSpec::default()
        };
        let text = [("rerank", self.rerank), ("spatial_weight", self.spatial_weight.as_deref()), ("matcher", self.matcher), ("ransac", self.ransac)];
        for (key, value) in text {
            if let Some(v) = value {
                spec.set(key, v).map_err(spec_error)?;
            }
        }
        spec.validate().map_err(spec_error)?;
        Ok(spec)
    }

    /// The re-ranking asked for, spatial settings not given following `spatial_defaults`.
    pub(crate) fn resolve(&self, spatial_defaults: SpatialRerank) -> PyResult<Rerank> {
        self.spec()?.resolve(spatial_defaults).map_err(spec_error)
    }
}

/// A search's error as Python's exception: a request no collection can carry out (the caller's
/// arguments: `k=0` without `min_score`, a range query with re-ranking) is a `ValueError`, raised
/// by the library's own check before any work; the rest is `DolgError`.
fn search_err(e: CollectionError) -> PyErr {
    match e {
        CollectionError::Request { .. } => PyValueError::new_err(e.to_string()),
        e => lib_err(e),
    }
}

/// `where=`: one filter expression or a list of them (all must hold), as `dolg search --where`.
fn filter_of(exprs: Option<&Bound<'_, PyAny>>) -> PyResult<Filter> {
    let Some(e) = exprs else { return Ok(Filter::default()) };
    let exprs: Vec<String> = match e.extract::<String>() {
        Ok(one) => vec![one],
        Err(_) => e.extract().map_err(|_| PyValueError::new_err("where= takes a filter expression (\"folder = trips\") or a list of them"))?,
    };
    Filter::parse(&exprs).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn crop_box(crop: Option<[f64; 4]>) -> PyResult<Option<CropBox>> {
    match crop {
        Some(b) if b.iter().all(|x| x.is_finite()) => Ok(Some(CropBox(b))),
        Some(b) => Err(PyValueError::new_err(format!("crop={b:?}: expected four finite numbers x1, y1, x2, y2"))),
        None => Ok(None),
    }
}

/// A float32 [n, dim] array's values, row-major (one copy; any strides).
fn rows_of(vectors: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<f32>, usize)> {
    let Ok(a) = vectors.extract::<PyReadonlyArray2<'_, f32>>() else {
        let dtype = vectors.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| vectors.get_type().to_string());
        let shape = vectors.getattr("shape").map(|d| d.to_string()).unwrap_or_else(|_| "?".into());
        return Err(PyTypeError::new_err(format!("{what}: expected a float32 array of shape (n, dim), got {dtype} with shape {shape}")));
    };
    let n = a.shape()[0];
    let values = match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    };
    Ok((values, n))
}

/// Results as (scores float32 [nq, width], ids int64 [nq, width]): NaN and -1 past the end.
fn hit_arrays<'py>(py: Python<'py>, results: &[Vec<NamedHit>], width: usize) -> (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>) {
    let nq = results.len();
    let mut scores = Vec::with_capacity(nq * width);
    let mut ids = Vec::with_capacity(nq * width);
    for hits in results {
        for i in 0..width {
            scores.push(hits.get(i).map_or(f32::NAN, |h| h.score));
            ids.push(hits.get(i).map_or(-1, |h| h.row as i64));
        }
    }
    (matrix(py, scores, nq, width), matrix(py, ids, nq, width))
}

/// Search either kind of collection (all PostgreSQL shards must answer).
fn search_either(c: &mut Inner, query: Query<'_>, request: &SearchRequest) -> Result<Vec<Vec<NamedHit>>, CollectionError> {
    match c {
        Inner::Local(c) => c.search(query, request),
        Inner::Pg(c) => Ok(c.search(query, request, false)?.hits),
    }
}

/// The threshold `duplicates()` uses by default: measured for the model, with the local check
/// when the collection stores local features.
fn default_duplicate_threshold(c: &Inner) -> f32 {
    match c {
        Inner::Local(c) => c.default_duplicate_threshold(),
        Inner::Pg(c) => c.default_duplicate_threshold_for(c.store().meta().local.is_some()),
    }
}

fn report<'py, T: serde::Serialize>(py: Python<'py>, r: &T, index: &std::path::Path) -> PyResult<Bound<'py, PyAny>> {
    let mut v = serde_json::to_value(r).map_err(|e| DolgError::new_err(e.to_string()))?;
    v["index"] = serde_json::json!(index.display().to_string());
    json_to_py(py, &v)
}

impl Collection {
    /// Run `f` on the collection with the GIL released. The lock is taken and dropped without
    /// the GIL, so a thread holding it never waits for the GIL (no lock-order deadlock).
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Inner) -> R + Send) -> PyResult<R> {
        py.detach(|| self.inner.lock().map(|mut c| f(&mut c)).map_err(|_| ()))
            .map_err(|_| DolgError::new_err("this collection is unusable: an earlier call panicked while holding it"))
    }

    fn wrap(inner: Inner) -> Self {
        Self { inner: Mutex::new(inner) }
    }
}

#[pymethods]
impl Collection {
    /// Create a collection in the folder `path` (which must not hold an index yet) described by
    /// `model`, with search backend `kind` ("exact" or "hnsw"). Photos under `root` are named by
    /// their path relative to it (the index stays valid when the folder moves); others, and all
    /// photos when `root` is None, by their absolute path.
    #[staticmethod]
    #[pyo3(signature = (path, model, *, kind="exact", root=None))]
    fn create(py: Python<'_>, path: PathBuf, model: &Model, kind: &str, root: Option<PathBuf>) -> PyResult<Self> {
        let kind: IndexKind = value_enum("kind", kind)?;
        let options = CreateOptions::kind(kind).with_root(root.as_deref());
        let c = py
            .detach(|| match is_pg(&path) {
                Some(url) => PgCollection::create(url, model.spec.clone(), &options, false, &model.device).map(Inner::Pg),
                None => Local::create(&path, model.spec.clone(), &options, &model.device).map(Inner::Local),
            })
            .map_err(lib_err)?;
        Ok(Self::wrap(c))
    }

    /// `dolg index build`'s opening: open the collection at `path` for writing if it holds an
    /// index of the same model and kind, else create it (with `root`, or for a new index the
    /// deepest folder holding every path of `paths` when given).
    #[staticmethod]
    #[pyo3(signature = (path, model, *, kind="exact", root=None, paths=None))]
    fn open_or_create(py: Python<'_>, path: PathBuf, model: &Model, kind: &str, root: Option<PathBuf>, paths: Option<Vec<PathBuf>>) -> PyResult<Self> {
        let kind: IndexKind = value_enum("kind", kind)?;
        let exists = match is_pg(&path) {
            Some(url) => py.detach(|| PgCollection::exists(url)).map_err(lib_err)?,
            None => dolg::index::Store::exists(&path),
        };
        let root = match (root, exists, paths) {
            (Some(r), _, _) => Some(r),
            (None, false, Some(p)) => common_root(&list_files(py, &p, &Default::default())?),
            _ => None,
        };
        let options = CreateOptions::kind(kind).with_root(root.as_deref());
        let c = py
            .detach(|| match is_pg(&path) {
                Some(url) => PgCollection::open_or_create(url, model.spec.clone(), &options, false, &model.device).map(Inner::Pg),
                None => Local::open_or_create(&path, model.spec.clone(), &options, &model.device).map(Inner::Local),
            })
            .map_err(lib_err)?;
        Ok(Self::wrap(c))
    }

    /// Open the collection at `path`: mode "read" shares it with other readers, "write" excludes
    /// every other process. `weights` rebuilds the recorded model from another copy of the same
    /// file (checked against the recorded fingerprint).
    #[staticmethod]
    #[pyo3(signature = (path, *, mode="read", weights=None, device="cpu"))]
    fn open(py: Python<'_>, path: PathBuf, mode: &str, weights: Option<PathBuf>, device: &str) -> PyResult<Self> {
        let mode = match mode {
            "read" => OpenMode::Read,
            "write" => OpenMode::Write,
            other => return Err(bad_choice("mode", other, &["read", "write"])),
        };
        let device = dolg::kernels::device(device).map_err(PyValueError::new_err)?;
        if let Some(url) = is_pg(&path) {
            if weights.is_some() {
                return Err(PyValueError::new_err("weights=: a PostgreSQL collection describes photos with the model it records"));
            }
            return Ok(Self::wrap(Inner::Pg(py.detach(|| PgCollection::open(url, mode, &device)).map_err(lib_err)?)));
        }
        let mut c = py.detach(|| Local::open(&path, mode, &device)).map_err(lib_err)?;
        if let Some(w) = weights {
            c.use_weights(w).map_err(lib_err)?;
        }
        Ok(Self::wrap(Inner::Local(c)))
    }

    /// Create an index of `dim`-d vectors with no model, for `import_vectors` only.
    #[staticmethod]
    fn create_for_vectors(py: Python<'_>, path: PathBuf, dim: usize) -> PyResult<Self> {
        let device = dolg::kernels::device("cpu").map_err(PyValueError::new_err)?;
        let c = py
            .detach(|| match is_pg(&path) {
                Some(url) => PgCollection::create_for_vectors(url, dim, IndexKind::Exact, false, &device).map(Inner::Pg),
                None => Local::create_for_vectors(&path, dim, &device).map(Inner::Local),
            })
            .map_err(lib_err)?;
        Ok(Self::wrap(c))
    }

    /// Describe and add images (folders searched recursively, as `dolg index add`). Files already
    /// indexed with the same content are not described again. Returns the CLI's `--json` report:
    /// {"index", "added", "unchanged", "failed": [{"path", "error"}], "entries"}.
    #[pyo3(signature = (paths, *, batch=32))]
    fn add<'py>(&self, py: Python<'py>, paths: Vec<PathBuf>, batch: usize) -> PyResult<Bound<'py, PyAny>> {
        let files = list_files(py, &paths, &Default::default())?;
        let (r, dir) = self
            .with(py, |c| {
                let r = either!(c, x => x.add_paths(&files, &AddOptions { batch }, |_| {})?);
                c.refresh_dba()?;
                Ok::<_, dolg::Error>((r, c.place()))
            })?
            .map_err(lib_err)?;
        report(py, &r, &dir)
    }

    /// `dolg index sync`: make the collection equal to the images found under `paths` (new
    /// files added, changed ones described again, renamed or moved ones keep their descriptor,
    /// vanished ones removed). `root` first records where the photos now are. Returns the CLI's
    /// `--json` report: {"added", "updated", "renamed", "removed", "unchanged", "failed",
    /// "entries", "index"}.
    #[pyo3(signature = (paths, *, root=None, batch=32))]
    fn sync<'py>(&self, py: Python<'py>, paths: Vec<PathBuf>, root: Option<PathBuf>, batch: usize) -> PyResult<Bound<'py, PyAny>> {
        let files = list_files(py, &paths, &Default::default())?;
        let (r, dir) = self
            .with(py, |c| {
                if let Some(r) = &root {
                    either!(c, x => x.set_root(r)?);
                }
                let r = either!(c, x => x.sync(&paths, &files, &AddOptions { batch }, |_| {})?);
                c.refresh_dba()?;
                Ok::<_, dolg::Error>((r, c.place()))
            })?
            .map_err(lib_err)?;
        report(py, &r, &dir)
    }

    /// Remove entries by indexed name or image path; nothing is removed unless every one is
    /// found. Returns the number removed.
    fn remove(&self, py: Python<'_>, names: Vec<String>) -> PyResult<usize> {
        self.with(py, |c| {
            let n = either!(c, x => x.remove(&names)?);
            c.refresh_dba()?;
            Ok::<_, dolg::Error>(n)
        })?
        .map_err(lib_err)
    }

    /// Add precomputed vectors (float32 [n, dim], L2-normalised here) under `names`.
    /// `same_model=True` vouches that they were made with this collection's model and options
    /// (required when it has one), as `dolg index import --same-model`.
    #[pyo3(signature = (vectors, names, *, same_model=false))]
    fn import_vectors(&self, py: Python<'_>, vectors: &Bound<'_, PyAny>, names: Vec<String>, same_model: bool) -> PyResult<()> {
        let (mut values, _) = rows_of(vectors, "vectors")?;
        let origin = if same_model { VectorOrigin::SameModel } else { VectorOrigin::Unverified };
        self.with(py, |c| {
            either!(c, x => x.import(&mut values, &names, origin, |_| {})?);
            c.refresh_dba()
        })?
        .map_err(lib_err)
    }

    /// Top-`k` search with query vectors (float32 [nq, dim]; normalised here): returns
    /// `(scores float32 [nq, k], ids int64 [nq, k])`, best first, padded with NaN and -1 as
    /// `dolg search --out-npy` pads (faiss pads ids with -1 too). Ids are the index's row ids;
    /// `names(ids)` turns them into names. `k=0` with `min_score` is a range query (every entry
    /// scoring at least that; width: the longest result). Re-ranking as `dolg search`: `qe`
    /// (α-QE with the top N, `qe_alpha`), `rerank="superglobal"` (`sg_m`, `sg_k`, `sg_beta`).
    /// Spatial verification needs query photos: see `search_images`. `where="folder = trips"`
    /// (or a list of such expressions, all to hold) searches only the entries that meet it, as
    /// `dolg search --where`.
    #[pyo3(signature = (vectors, k=dolg::collection::DEFAULT_K, *, min_score=None, r#where=None, qe=None, qe_alpha=None, rerank=None, sg_m=None, sg_k=None, sg_beta=None))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        k: usize,
        min_score: Option<f32>,
        r#where: Option<Bound<'py, PyAny>>,
        qe: Option<usize>,
        qe_alpha: Option<f32>,
        rerank: Option<&str>,
        sg_m: Option<usize>,
        sg_k: Option<usize>,
        sg_beta: Option<f32>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
        let (values, _) = rows_of(vectors, "vectors")?;
        let rr = RerankKwargs { rerank, qe, qe_alpha, sg_m, sg_k, sg_beta, ..Default::default() }.resolve(SpatialRerank::default())?;
        if rr.spatial.is_some() {
            return Err(PyValueError::new_err("rerank=\"spatial\" verifies query photos' local features: use search_images, not vectors"));
        }
        let request = SearchRequest { k, min_score, crop: None, filter: filter_of(r#where.as_ref())?, rerank: rr };
        let results = self.with(py, |c| search_either(c, Query::Vectors(&values), &request))?.map_err(search_err)?;
        let width = if k == 0 { results.iter().map(Vec::len).max().unwrap_or(0) } else { k };
        Ok(hit_arrays(py, &results, width))
    }

    /// Search with query images: a list, per query, of (name, score) pairs, best first, as
    /// `dolg search --json` lists them. An indexed query photo uses its stored descriptor and is
    /// left out of its own results; `crop=(x1, y1, x2, y2)` crops the queries first. Options
    /// (`where` included) as in `search`, and `rerank="spatial"` (or `"superglobal,spatial"`) for DELG-style spatial
    /// verification of the top `rerank_k` (100) with the local features the index stores
    /// (`dolg index build --local xfeat|delg`): `min_inliers`, `spatial_weight` (a number or
    /// "inliers"), `matcher` ("mnn" or "lighterglue"), `match_ratio` (Lowe's ratio test
    /// instead of the distance bound 0.99), `mutual` (True/False), `ransac` ("homography" or
    /// "affine"), `ransac_px`, as the `dolg search` flags of those names; those not given follow
    /// the index's local features as on the command line (XFeat: mutual, 8 px; DELG: the DELG
    /// authors' settings). With spatial verification each result is (name, score, inliers),
    /// inliers None past the verified top `rerank_k`.
    #[pyo3(signature = (
        paths, k=dolg::collection::DEFAULT_K, *, min_score=None, crop=None, r#where=None, qe=None, qe_alpha=None, rerank=None, sg_m=None, sg_k=None, sg_beta=None,
        rerank_k=None, min_inliers=None, spatial_weight=None, matcher=None, match_ratio=None, mutual=None, ransac=None, ransac_px=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn search_images<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        k: usize,
        min_score: Option<f32>,
        crop: Option<[f64; 4]>,
        r#where: Option<Bound<'py, PyAny>>,
        qe: Option<usize>,
        qe_alpha: Option<f32>,
        rerank: Option<&str>,
        sg_m: Option<usize>,
        sg_k: Option<usize>,
        sg_beta: Option<f32>,
        rerank_k: Option<usize>,
        min_inliers: Option<usize>,
        spatial_weight: Option<Bound<'py, PyAny>>,
        matcher: Option<&str>,
        match_ratio: Option<f64>,
        mutual: Option<bool>,
        ransac: Option<&str>,
        ransac_px: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let spatial_weight = spatial_weight.map(|w| w.str().map(|s| s.to_string())).transpose()?;
        let kwargs = RerankKwargs {
            rerank,
            qe,
            qe_alpha,
            sg_m,
            sg_k,
            sg_beta,
            rerank_k,
            min_inliers,
            spatial_weight,
            matcher,
            match_ratio,
            mutual,
            ransac,
            ransac_px,
            ..Default::default()
        };
        let spec = kwargs.spec()?;
        let defaults = self.with(py, |c| either!(c, x => x.spatial_rerank_defaults()))?;
        let rr = spec.resolve(defaults).map_err(spec_error)?;
        let crop = crop_box(crop)?;
        let request = SearchRequest { k, min_score, crop, filter: filter_of(r#where.as_ref())?, rerank: rr };
        let results = self.with(py, |c| search_either(c, Query::Images(&paths), &request))?.map_err(search_err)?;
        let out = PyList::empty(py);
        for hits in results {
            let row = PyList::empty(py);
            for h in hits {
                if rr.spatial.is_some() {
                    row.append((h.name, h.score, h.inliers))?;
                } else {
                    row.append((h.name, h.score))?;
                }
            }
            out.append(row)?;
        }
        Ok(out)
    }

    /// Names of index row ids (as `search` returns them), in the same nesting; None for -1.
    fn names<'py>(&self, py: Python<'py>, ids: PyReadonlyArrayDyn<'py, i64>) -> PyResult<Bound<'py, PyAny>> {
        let a = ids.as_array();
        if a.ndim() > 2 {
            return Err(PyValueError::new_err(format!("ids: expected a 1-D or 2-D array, got {}-D", a.ndim())));
        }
        let flat: Vec<i64> = a.iter().copied().collect();
        let width = if a.ndim() == 2 { a.shape()[1] } else { flat.len() };
        let names = self.with(py, |c| match c {
            Inner::Local(c) => {
                let rows = c.index().store().rows();
                flat.iter()
                    .map(|&id| match id {
                        -1 => Ok(None),
                        id => usize::try_from(id)
                            .ok()
                            .and_then(|r| rows.get(r))
                            .map(|r| Some(r.name.clone()))
                            .ok_or_else(|| PyValueError::new_err(format!("id {id} is not a row of this index ({} rows)", rows.len()))),
                    })
                    .collect::<PyResult<Vec<Option<String>>>>()
            }
            Inner::Pg(c) => {
                let rows: Vec<usize> = flat.iter().filter_map(|&id| usize::try_from(id).ok()).collect();
                let found = c.store().names_of_rows(&rows).map_err(|e| lib_err(dolg::collection::CollectionError::from(e)))?;
                flat.iter()
                    .map(|&id| match id {
                        -1 => Ok(None),
                        id => usize::try_from(id)
                            .ok()
                            .and_then(|r| found.get(&r))
                            .map(|n| Some(n.clone()))
                            .ok_or_else(|| PyValueError::new_err(format!("id {id} is not a row of this collection"))),
                    })
                    .collect::<PyResult<Vec<Option<String>>>>()
            }
        })??;
        if a.ndim() == 1 {
            return Ok(PyList::new(py, names)?.into_any());
        }
        let outer = PyList::empty(py);
        for r in 0..a.shape()[0] {
            outer.append(names[r * width..(r + 1) * width].to_vec())?;
        }
        Ok(outer.into_any())
    }

    /// Names and vectors (float32 [n, dim]) of every live entry, in storage order: what
    /// `dolg index export` writes.
    fn export<'py>(&self, py: Python<'py>) -> PyResult<(Vec<String>, Bound<'py, PyArray2<f32>>)> {
        let (dim, exported) = self.with(py, |c| match c {
            Inner::Local(c) => (c.dim(), Ok(c.export())),
            Inner::Pg(c) => (c.dim(), c.export()),
        })?;
        let (names, vectors) = exported.map_err(lib_err)?;
        let n = names.len();
        Ok((names, matrix(py, vectors, n, dim)))
    }

    /// Groups of near-duplicate photos, as `dolg dedup --json` lists them: dicts with
    /// "members", "pairs" ({"a", "b", "score"}), "best" and "weakest". `threshold` defaults to
    /// the one measured for the collection's model; `method` is "auto", "exact" or "graph".
    #[pyo3(signature = (threshold=None, *, method="auto"))]
    fn duplicates<'py>(&self, py: Python<'py>, threshold: Option<f32>, method: &str) -> PyResult<Bound<'py, PyAny>> {
        if let Some(t) = threshold.filter(|t| !(-1.0..=1.0).contains(t)) {
            return Err(PyValueError::new_err(format!("threshold={t}: a cosine similarity lies between -1 and 1")));
        }
        let method: DedupMethod = value_enum("method", method)?;
        let groups = self
            .with(py, |c| {
                let t = threshold.unwrap_or_else(|| default_duplicate_threshold(c));
                let method = resolve_method(method, c.len()?);
                Ok::<_, dolg::Error>(either!(c, x => x.duplicates(t, &DedupOptions { method, ..DedupOptions::default() })?))
            })?
            .map_err(lib_err)?;
        json_to_py(py, &serde_json::to_value(&groups).map_err(|e| DolgError::new_err(e.to_string()))?)
    }

    /// The threshold `duplicates()` uses by default for this collection's model.
    #[getter]
    fn default_duplicate_threshold(&self, py: Python<'_>) -> PyResult<f32> {
        self.with(py, |c| default_duplicate_threshold(c))
    }

    /// Compute the α-DBA layer (database-side augmentation with `k` neighbours) that re-ranked
    /// searches then use, as `dolg index dba`; `alpha` defaults to 3 (the library's `rerank::DEFAULT_ALPHA`).
    #[pyo3(signature = (k, alpha=None))]
    fn build_dba(&self, py: Python<'_>, k: usize, alpha: Option<f32>) -> PyResult<()> {
        let alpha = alpha.unwrap_or(dolg::rerank::DEFAULT_ALPHA);
        self.with(py, |c| either!(c, x => x.build_dba(k, alpha)))?.map_err(lib_err)
    }

    /// Rewrite the index into one segment, dropping removed and superseded entries (PostgreSQL
    /// shards: `VACUUM (ANALYZE)` each, as `dolg index compact`).
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| {
            match c {
                Inner::Local(l) => l.compact()?,
                Inner::Pg(p) => p.store().vacuum()?,
            }
            c.refresh_dba()
        })?
        .map_err(lib_err)
    }

    /// What the index holds, as `dolg index info --json` reports it (opening verified every
    /// checksum).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = self
            .with(py, |c| match c {
                Inner::Local(c) => Ok(serde_json::to_value(c.info())),
                Inner::Pg(c) => c.info().map(serde_json::to_value),
            })?
            .map_err(lib_err)?;
        json_to_py(py, &info.map_err(|e| DolgError::new_err(e.to_string()))?)
    }

    /// HNSW collections: candidates examined per query (recall against speed; default 64).
    fn set_ef_search(&self, py: Python<'_>, ef: usize) -> PyResult<()> {
        self.with(py, |c| either!(c, x => x.set_ef_search(ef)))?;
        Ok(())
    }

    /// Record where the photos now are: names relative to the old root resolve under the new one.
    fn set_root(&self, py: Python<'_>, root: PathBuf) -> PyResult<()> {
        self.with(py, |c| either!(c, x => x.set_root(&root)))?.map_err(lib_err)
    }

    /// The name a photo is (or would be) indexed under.
    fn name_of(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        self.with(py, |c| either!(c, x => x.name_of(&path)))
    }

    /// Where the photo named `name` is expected on disk.
    fn path_of(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        self.with(py, |c| either!(c, x => x.path_of(name)).display().to_string())
    }

    /// Descriptor width.
    #[getter]
    fn dim(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| either!(c, x => x.dim()))
    }

    /// The index folder, or the PostgreSQL shards (passwords left out).
    #[getter]
    fn path(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |c| c.place().display().to_string())
    }

    /// The folder photo names are relative to, if any.
    #[getter]
    fn root(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |c| either!(c, x => x.root()).map(|r| r.display().to_string()))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.len())?.map_err(lib_err)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (place, len, dim) = self.with(py, |c| (c.place(), c.len(), either!(c, x => x.dim())))?;
        Ok(format!("dolg.Collection({:?}, entries={}, dim={dim})", place.display().to_string(), len.map_err(lib_err)?))
    }
}
