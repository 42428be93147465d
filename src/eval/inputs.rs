//! Precomputed evaluation inputs: ranking matrices and descriptor files, checked against the
//! ground truth they are evaluated with.

use std::collections::HashMap;
use std::path::Path;

use super::images::RevisitedDescriptors;
use super::{EvalError, RanksMatrix, Result, RevisitedGnd};
use crate::descriptors::{npy_type, read_matrix, read_matrix_with_names};
use crate::model::LocalFeatures;

/// Read precomputed rankings: an int32 or int64 `.npy` [n_db, n_queries] whose column q lists
/// database indices best first (the reference `compute_map` layout), shaped like `gnd`.
pub fn read_ranks(path: &Path, gnd: &RevisitedGnd) -> Result<RanksMatrix> {
    let file = std::fs::File::open(path).map_err(|source| EvalError::Io { path: path.to_owned(), source })?;
    let not_npy = |source| EvalError::NotNpy { path: path.to_owned(), source };
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(not_npy)?;
    let shape = npy.shape().to_vec();
    let [n_db, n_queries] = shape[..] else { return Err(EvalError::RanksShape { path: path.to_owned(), shape }) };
    let (n_db, n_queries) = (n_db as usize, n_queries as usize);
    let index = |v: i64| usize::try_from(v).map_err(|_| EvalError::NegativeRank { path: path.to_owned(), index: v });
    let data: Vec<usize> = match npy_type(&npy.dtype()).as_str() {
        "<i4" => npy.into_vec::<i32>().map_err(not_npy)?.into_iter().map(|v| index(v.into())).collect::<Result<_>>()?,
        "<i8" => npy.into_vec::<i64>().map_err(not_npy)?.into_iter().map(index).collect::<Result<_>>()?,
        other => return Err(EvalError::RanksDtype { path: path.to_owned(), dtype: other.to_owned() }),
    };
    if n_db != gnd.n_db() || n_queries != gnd.n_queries() {
        return Err(EvalError::RanksMismatch { path: path.to_owned(), n_db, n_queries, expected_db: gnd.n_db(), expected_queries: gnd.n_queries() });
    }
    RanksMatrix::from_row_major(&data, n_db, n_queries)
}

/// Read database descriptors (rows in `imlist` order) and query descriptors (rows in `qimlist`
/// order), checking their row counts against `gnd` and that their widths agree.
pub fn read_revisited_descriptors(gnd: &RevisitedGnd, db: &Path, queries: &Path) -> Result<RevisitedDescriptors> {
    let (database, n_db, dim) = read_matrix(db)?;
    let (q, n_q, dq) = read_matrix(queries)?;
    check_rows(db, n_db, gnd.n_db(), "database images (imlist)")?;
    check_rows(queries, n_q, gnd.n_queries(), "queries (qimlist)")?;
    if dim != dq {
        return Err(EvalError::WidthMismatch { db: db.to_owned(), db_dim: dim, queries: queries.to_owned(), queries_dim: dq });
    }
    Ok(RevisitedDescriptors { database, queries: q, dim })
}

fn check_rows(path: &Path, found: usize, expected: usize, what: &'static str) -> Result<()> {
    if found != expected {
        return Err(EvalError::RowCount { path: path.to_owned(), found, expected, what });
    }
    Ok(())
}

/// Read extra distractor descriptors (e.g. revisitop 1M) for a database of width `dim`.
pub fn read_distractors(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let (rows, _, d) = read_matrix(path)?;
    if d != dim {
        return Err(EvalError::DistractorWidth { path: path.to_owned(), found: d, expected: dim });
    }
    Ok(rows)
}

/// Reorder the rows of a `dolg extract` output (`db` and its names file) into the order of
/// `wanted` (a groups CSV's images), matching each row's name — its path relative to
/// `images_dir`, or failing that its file name — to the CSV: row-major data and its width.
///
/// Errors: a name listed twice, a wanted image without a row, a row that is not wanted.
pub fn rows_by_name(db: &Path, images_dir: &Path, wanted: &[String]) -> Result<(Vec<f32>, usize)> {
    let (data, _, dim, names) = read_matrix_with_names(db)?;
    let mut index = HashMap::new();
    for (row, name) in names.iter().enumerate() {
        let p = Path::new(name);
        let key = p
            .strip_prefix(images_dir)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        if index.contains_key(&key) {
            return Err(EvalError::DuplicateName { path: db.to_owned(), image: key });
        }
        index.insert(key, row);
    }
    let mut out = Vec::with_capacity(wanted.len() * dim);
    for w in wanted {
        let row = index.remove(w).ok_or_else(|| EvalError::MissingDescriptor { path: db.to_owned(), image: w.clone() })?;
        out.extend_from_slice(&data[row * dim..(row + 1) * dim]);
    }
    if let Some(extra) = index.keys().next() {
        return Err(EvalError::ExtraDescriptor { path: db.to_owned(), image: extra.clone(), count: index.len() });
    }
    Ok((out, dim))
}

/// The descriptors and local features of `wanted` (names relative to `images_dir`, in order)
/// from a collection that indexed `images_dir`'s photos (e.g. built with `--local xfeat`).
pub fn rows_from_collection(c: &crate::collection::Collection, images_dir: &Path, wanted: &[String]) -> Result<(Vec<f32>, usize, Vec<Option<LocalFeatures>>)> {
    let store = c.index().store();
    let dim = store.dim();
    let mut rows = Vec::with_capacity(wanted.len() * dim);
    let mut locals = Vec::with_capacity(wanted.len());
    for w in wanted {
        let row = store.lookup(&c.name_of(&images_dir.join(w))).ok_or_else(|| EvalError::MissingDescriptor { path: c.dir().to_owned(), image: w.clone() })?;
        rows.extend_from_slice(store.vector(row));
        locals.push(store.local_features(row)?);
    }
    Ok((rows, dim, locals))
}

/// [`rows_from_collection`] for a collection on PostgreSQL shards: the vectors and local features
/// of `wanted` are fetched from their shards in one query each.
#[cfg(feature = "postgres")]
pub fn rows_from_pg(
    c: &crate::collection::postgres::PgCollection,
    images_dir: &Path,
    wanted: &[String],
) -> Result<(Vec<f32>, usize, Vec<Option<LocalFeatures>>)> {
    let dim = c.dim();
    let names: Vec<String> = wanted.iter().map(|w| c.name_of(&images_dir.join(w))).collect();
    let with_local = c.store().meta().local.is_some();
    let stored = c.store().get(&names, with_local)?;
    let mut rows = Vec::with_capacity(wanted.len() * dim);
    let mut locals = Vec::with_capacity(wanted.len());
    for (w, s) in wanted.iter().zip(stored) {
        let s = s.ok_or_else(|| EvalError::MissingDescriptor { path: c.store().display().into(), image: w.clone() })?;
        rows.extend_from_slice(&s.vector);
        locals.push(s.local);
    }
    Ok((rows, dim, locals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptors::write_descriptors;

    #[test]
    fn eval_rows_by_name_reorders_and_names_problems() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.npy");
        let images = dir.path().join("imgs");
        let names = [images.join("sub/a.jpg").display().to_string(), "/elsewhere/b.jpg".to_owned()];
        write_descriptors(&db, &[vec![1.0, 2.0], vec![3.0, 4.0]], 2, Some(&names)).unwrap();
        let (rows, dim) = rows_by_name(&db, &images, &["b.jpg".into(), "sub/a.jpg".into()]).unwrap();
        assert_eq!((rows, dim), (vec![3.0, 4.0, 1.0, 2.0], 2));

        let e = rows_by_name(&db, &images, &["b.jpg".into(), "sub/a.jpg".into(), "c.jpg".into()]).unwrap_err();
        assert!(matches!(&e, EvalError::MissingDescriptor { image, .. } if image == "c.jpg"), "{e}");
        let e = rows_by_name(&db, &images, &["b.jpg".into()]).unwrap_err();
        assert!(matches!(&e, EvalError::ExtraDescriptor { image, count: 1, .. } if image == "sub/a.jpg"), "{e}");
        assert!(e.to_string().contains(&db.display().to_string()), "{e}");

        let twice = [images.join("a.jpg").display().to_string(), "/x/a.jpg".to_owned()];
        write_descriptors(&db, &[vec![1.0, 2.0], vec![3.0, 4.0]], 2, Some(&twice)).unwrap();
        let e = rows_by_name(&db, &images, &["a.jpg".into()]).unwrap_err();
        assert!(matches!(&e, EvalError::DuplicateName { image, .. } if image == "a.jpg"), "{e}");
    }

    #[test]
    fn eval_read_ranks_checks_type_sign_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let gnd = RevisitedGnd {
            imlist: vec!["a".into(), "b".into()],
            qimlist: vec!["q".into()],
            gnd: vec![super::super::QueryGnd { bbx: [0.0, 0.0, 1.0, 1.0], easy: vec![1], hard: vec![], junk: vec![] }],
        };
        let p = dir.path().join("r.npy");
        crate::descriptors::write_npy(&p, &[2, 1], [1i64, 0]).unwrap();
        assert_eq!(read_ranks(&p, &gnd).unwrap().n_db(), 2);
        crate::descriptors::write_npy(&p, &[2, 1], [1i32, -1]).unwrap();
        assert!(matches!(read_ranks(&p, &gnd), Err(EvalError::NegativeRank { index: -1, .. })));
        crate::descriptors::write_npy(&p, &[1, 2], [0i64, 0]).unwrap();
        assert!(matches!(read_ranks(&p, &gnd), Err(EvalError::RanksMismatch { n_db: 1, n_queries: 2, expected_db: 2, expected_queries: 1, .. })));
        crate::descriptors::write_npy(&p, &[2], [0i64, 1]).unwrap();
        assert!(matches!(read_ranks(&p, &gnd), Err(EvalError::RanksShape { .. })));
        crate::descriptors::write_npy(&p, &[2, 1], [0f32, 1.0]).unwrap();
        assert!(matches!(read_ranks(&p, &gnd), Err(EvalError::RanksDtype { .. })));
    }

    #[test]
    fn eval_revisited_descriptor_files_are_checked_against_the_ground_truth() {
        let dir = tempfile::tempdir().unwrap();
        let gnd = RevisitedGnd { imlist: vec!["a".into(), "b".into()], qimlist: vec![], gnd: vec![] };
        let (db, q, wide) = (dir.path().join("db.npy"), dir.path().join("q.npy"), dir.path().join("wide.npy"));
        write_descriptors(&db, &[vec![1.0, 0.0], vec![0.0, 1.0]], 2, None).unwrap();
        write_descriptors(&q, &[vec![1.0, 0.0]], 2, None).unwrap();
        write_descriptors(&wide, &[vec![1.0, 0.0, 0.0]], 3, None).unwrap();
        let e = read_revisited_descriptors(&gnd, &db, &q).unwrap_err();
        assert!(matches!(e, EvalError::RowCount { found: 1, expected: 0, .. }), "{e}");
        assert!(matches!(read_distractors(&wide, 2), Err(EvalError::DistractorWidth { found: 3, expected: 2, .. })));
        assert_eq!(read_distractors(&db, 2).unwrap().len(), 4);
    }
}
