//! End-to-end evaluation inputs: describing the images a ground truth lists.
//!
//! Evaluation needs a descriptor for *every* image of the ground truth, so describing is
//! all-or-nothing: every image is attempted (decoding overlaps the network, see
//! [`Extractor::describe_many_cropped`]) and, if any failed, one error names every failure
//! ([`EvalError::NotDescribed`]) instead of stopping at the first.
//!
//! Revisited Oxford/Paris descriptors can be cached ([`RevisitedCache`]): `db.npy` and
//! `queries.npy` with their names files, under `key.txt`, the fingerprint of the model that made
//! them ([`ModelSpec::fingerprint`]). They are reused only when the key matches and the names
//! files list exactly the ground truth's `imlist` and `qimlist`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{EvalError, GroupsGt, Result, RevisitedGnd};
use crate::atomic_file::{self, Mode};
use crate::descriptors::{read_matrix_with_names, write_descriptors, Description, DescriptorError, Extractor};
use crate::model::LocalFeatures;
use crate::preprocess::CropBox;
use crate::spec::ModelSpec;

/// Which images of a ground truth are being described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSet {
    /// Revisited Oxford/Paris queries (`qimlist`), each cropped to its box.
    Queries,
    /// Revisited Oxford/Paris database images (`imlist`).
    Database,
    /// Every image of a groups CSV.
    Groups,
}

impl std::fmt::Display for ImageSet {
    /// The adjective in "3 database image(s)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageSet::Queries => "query",
            ImageSet::Database => "database",
            ImageSet::Groups => "groups CSV",
        })
    }
}

/// An image of the ground truth that could not be described.
#[derive(Debug)]
pub struct ImageFailure {
    /// The image's name in the ground truth.
    pub name: String,
    /// The file that was read for it.
    pub path: PathBuf,
    /// Why it could not be described.
    pub error: DescriptorError,
}

/// `'name': error; 'name': error` for [`EvalError::NotDescribed`].
pub(super) fn list_failures(failures: &[ImageFailure]) -> String {
    failures.iter().map(|f| format!("'{}': {}", f.name, f.error)).collect::<Vec<_>>().join("; ")
}

/// Progress of describing a ground truth's images, reported as it happens.
#[derive(Debug)]
pub enum DescribeEvent<'a> {
    /// Descriptors made by the same model for the same images were found in this cache
    /// directory; nothing is described.
    Cached {
        /// The cache directory holding the descriptors.
        dir: &'a Path,
    },
    /// Describing the `total` images of `set` begins.
    Started {
        /// The image set about to be described.
        set: ImageSet,
        /// Number of images in the set.
        total: usize,
    },
    /// Image `index` of `set` (named `name` in the ground truth) was described, or failed.
    Described {
        /// The image set being described.
        set: ImageSet,
        /// 0-based index of the image within the set.
        index: usize,
        /// The image's name in the ground truth.
        name: &'a str,
        /// Why it failed, or `None` if it was described.
        error: Option<&'a DescriptorError>,
    },
    /// Every image of `set` was attempted.
    Finished {
        /// The image set that was described.
        set: ImageSet,
    },
}

/// Descriptors of a Revisited dataset, row-major: `database` in `imlist` order, `queries` in
/// `qimlist` order, both `dim` wide.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisitedDescriptors {
    /// Database descriptors, `[n_db, dim]` row-major in `imlist` order.
    pub database: Vec<f32>,
    /// Query descriptors, `[n_queries, dim]` row-major in `qimlist` order.
    pub queries: Vec<f32>,
    /// Descriptor width.
    pub dim: usize,
}

/// Describe `paths[i]` (named `names[i]`, cropped to `crop_of(i)`) for every `i`; all or nothing.
///
/// Errors: [`EvalError::NotDescribed`] naming every image that could not be described, after
/// all were attempted. `names` must be as long as `paths`.
pub fn describe_all(
    ex: &Extractor,
    set: ImageSet,
    paths: &[PathBuf],
    names: &[String],
    crop_of: &(dyn Fn(usize) -> Option<CropBox> + Sync),
    on_event: impl FnMut(DescribeEvent<'_>),
) -> Result<Vec<Vec<f32>>> {
    Ok(describe_all_full(ex, set, paths, names, crop_of, on_event)?.into_iter().map(|d| d.descriptor).collect())
}

/// [`describe_all`] giving each image's whole [`Description`]: its local features too when `ex`
/// has a local model.
pub(crate) fn describe_all_full(
    ex: &Extractor,
    set: ImageSet,
    paths: &[PathBuf],
    names: &[String],
    crop_of: &(dyn Fn(usize) -> Option<CropBox> + Sync),
    mut on_event: impl FnMut(DescribeEvent<'_>),
) -> Result<Vec<Description>> {
    assert_eq!(paths.len(), names.len(), "one name per path");
    on_event(DescribeEvent::Started { set, total: paths.len() });
    let mut out = Vec::with_capacity(paths.len());
    let mut failures = Vec::new();
    ex.describe_many_local(paths, crop_of, |index, path, r| {
        on_event(DescribeEvent::Described { set, index, name: &names[index], error: r.as_ref().err() });
        match r {
            Ok(d) => out.push(d),
            Err(error) => failures.push(ImageFailure { name: names[index].clone(), path: path.to_owned(), error }),
        }
        ControlFlow::Continue(())
    });
    on_event(DescribeEvent::Finished { set });
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(EvalError::NotDescribed { set, failures })
    }
}

/// Describe a Revisited dataset under `root`: the queries (`root/jpg/<name>.jpg`, cropped to
/// their boxes with `int()` truncation), then the database images. All or nothing: a failing
/// query set stops before the database is described.
pub fn describe_revisited(ex: &Extractor, gnd: &RevisitedGnd, root: &Path, mut on_event: impl FnMut(DescribeEvent<'_>)) -> Result<RevisitedDescriptors> {
    let jpg = |names: &[String]| -> Vec<PathBuf> { names.iter().map(|n| root.join("jpg").join(format!("{n}.jpg"))).collect() };
    let qbox = |i: usize| Some(CropBox(gnd.gnd[i].bbx));
    let queries = describe_all(ex, ImageSet::Queries, &jpg(&gnd.qimlist), &gnd.qimlist, &qbox, &mut on_event)?;
    let database = describe_all(ex, ImageSet::Database, &jpg(&gnd.imlist), &gnd.imlist, &|_| None, &mut on_event)?;
    let dim = queries.first().or(database.first()).map_or(0, Vec::len);
    Ok(RevisitedDescriptors { database: database.concat(), queries: queries.concat(), dim })
}

/// The queries of a Revisited dataset (`root/jpg/<name>.jpg`, cropped to their boxes with
/// `int()` truncation) with their local features, for spatial re-ranking against an index:
/// row-major descriptors (`qimlist` order) and one local feature set per query (`None` when `ex`
/// has no local model). All or nothing, like [`describe_all`].
pub fn describe_revisited_queries(
    ex: &Extractor,
    gnd: &RevisitedGnd,
    root: &Path,
    on_event: impl FnMut(DescribeEvent<'_>),
) -> Result<(Vec<f32>, Vec<Option<LocalFeatures>>)> {
    let paths: Vec<PathBuf> = gnd.qimlist.iter().map(|n| root.join("jpg").join(format!("{n}.jpg"))).collect();
    let described = describe_all_full(ex, ImageSet::Queries, &paths, &gnd.qimlist, &|i| Some(CropBox(gnd.gnd[i].bbx)), on_event)?;
    let mut rows = Vec::with_capacity(described.len() * ex.model.out_dim());
    let mut locals = Vec::with_capacity(described.len());
    for d in described {
        rows.extend(d.descriptor);
        locals.push(d.local);
    }
    Ok((rows, locals))
}

/// [`describe_revisited`] through a [`RevisitedCache`]: descriptors cached by the same model
/// (same fingerprint) for the same images are reused without building the model (reported as
/// [`DescribeEvent::Cached`]); otherwise the model is built on `device`, every image is
/// described, and the result is stored in the cache.
pub fn describe_revisited_cached(
    spec: &ModelSpec,
    device: &Device,
    gnd: &RevisitedGnd,
    root: &Path,
    cache: &RevisitedCache,
    mut on_event: impl FnMut(DescribeEvent<'_>),
) -> Result<RevisitedDescriptors> {
    cache.create_dir()?;
    let key = spec.fingerprint()?;
    if let Some(d) = cache.load(&key, gnd) {
        on_event(DescribeEvent::Cached { dir: &cache.dir });
        return Ok(d);
    }
    let loaded = spec.load(device)?;
    let d = describe_revisited(&loaded.extractor, gnd, root, on_event)?;
    cache.store(&loaded.fingerprint, gnd, &d)?;
    Ok(d)
}

/// Describe every image of a groups CSV (`images_dir/<image>`), in the file's order: row-major
/// descriptors and their width (0 when the file lists no image). All or nothing.
pub fn describe_groups(ex: &Extractor, gt: &GroupsGt, images_dir: &Path, on_event: impl FnMut(DescribeEvent<'_>)) -> Result<(Vec<f32>, usize)> {
    let paths: Vec<PathBuf> = gt.images.iter().map(|n| images_dir.join(n)).collect();
    let rows = describe_all(ex, ImageSet::Groups, &paths, &gt.images, &|_| None, on_event)?;
    let dim = rows.first().map_or(0, Vec::len);
    Ok((rows.concat(), dim))
}

/// A directory of cached Revisited descriptors: `key.txt` (the model's fingerprint), `db.npy`
/// and `queries.npy` with their names files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisitedCache {
    /// The cache directory.
    pub dir: PathBuf,
}

impl RevisitedCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default cache of a dataset: `root/.dolg-cache`.
    pub fn in_dataset(root: &Path) -> Self {
        Self::new(root.join(".dolg-cache"))
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("key.txt")
    }

    fn db_file(&self) -> PathBuf {
        self.dir.join("db.npy")
    }

    fn queries_file(&self) -> PathBuf {
        self.dir.join("queries.npy")
    }

    fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|source| EvalError::Cache { action: "create cache directory", path: self.dir.clone(), source })
    }

    /// The cached descriptors, if they were made by the model with fingerprint `key` for exactly
    /// the images of `gnd` (each file counts only with its names file). Anything missing,
    /// unreadable or different is a miss, not an error.
    pub fn load(&self, key: &str, gnd: &RevisitedGnd) -> Option<RevisitedDescriptors> {
        if std::fs::read_to_string(self.key_file()).ok()? != key {
            return None;
        }
        let cached = |file: &Path, names: &[String]| read_matrix_with_names(file).ok().filter(|c| c.3 == names).map(|(data, _, d, _)| (data, d));
        let (database, dim) = cached(&self.db_file(), &gnd.imlist)?;
        let (queries, dq) = cached(&self.queries_file(), &gnd.qimlist)?;
        (dim == dq).then_some(RevisitedDescriptors { database, queries, dim })
    }

    /// Store descriptors made by the model with fingerprint `key` for the images of `gnd`.
    ///
    /// The key is removed first and written last, so that no crash in between leaves
    /// descriptors under a key they were not made with.
    pub fn store(&self, key: &str, gnd: &RevisitedGnd, d: &RevisitedDescriptors) -> Result<()> {
        self.create_dir()?;
        let key_file = self.key_file();
        atomic_file::remove(&key_file).map_err(|source| EvalError::Cache { action: "remove", path: key_file.clone(), source })?;
        write_descriptors(&self.db_file(), &rows_of(&d.database, d.dim), d.dim, Some(&gnd.imlist))?;
        write_descriptors(&self.queries_file(), &rows_of(&d.queries, d.dim), d.dim, Some(&gnd.qimlist))?;
        atomic_file::write(&key_file, Mode::Shared, key.as_bytes()).map_err(|source| EvalError::Cache { action: "write", path: key_file, source })
    }
}

/// Row-major data as one vector per row (none when `dim` is 0).
fn rows_of(data: &[f32], dim: usize) -> Vec<Vec<f32>> {
    if dim == 0 {
        return Vec::new();
    }
    data.chunks(dim).map(<[f32]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gnd() -> RevisitedGnd {
        RevisitedGnd {
            imlist: vec!["a".into(), "b".into()],
            qimlist: vec!["q".into()],
            gnd: vec![super::super::QueryGnd { bbx: [0.0, 0.0, 1.0, 1.0], easy: vec![0], hard: vec![], junk: vec![] }],
        }
    }

    #[test]
    fn eval_cache_round_trip_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RevisitedCache::new(dir.path().join("c"));
        let g = gnd();
        let d = RevisitedDescriptors { database: vec![1.0, 0.0, 0.0, 1.0], queries: vec![0.6, 0.8], dim: 2 };
        assert_eq!(cache.load("k", &g), None, "nothing stored yet");
        cache.store("k", &g, &d).unwrap();
        assert_eq!(cache.load("k", &g), Some(d.clone()));
        assert_eq!(cache.load("other", &g), None, "another model's key");
        let mut g2 = g.clone();
        g2.imlist[1] = "c".into();
        assert_eq!(cache.load("k", &g2), None, "other database images");
        // A missing names file makes the pair unusable.
        std::fs::remove_file(dir.path().join("c/queries.names.txt")).unwrap();
        assert_eq!(cache.load("k", &g), None);
    }

    #[test]
    fn eval_not_described_names_every_failure() {
        let failures = ["x", "y"]
            .map(|n| ImageFailure {
                name: n.into(),
                path: PathBuf::from(format!("/r/jpg/{n}.jpg")),
                error: DescriptorError::Invalid { path: PathBuf::from(format!("/r/jpg/{n}.jpg")), reason: "missing".into() },
            })
            .into_iter()
            .collect();
        let e = EvalError::NotDescribed { set: ImageSet::Database, failures };
        let s = e.to_string();
        assert!(s.starts_with("2 database image(s) could not be described"), "{s}");
        assert!(s.contains("'x': /r/jpg/x.jpg: missing; 'y': /r/jpg/y.jpg: missing"), "{s}");
    }
}
