//! `dolg.eval`: the retrieval metrics of `dolg eval revisited` and `dolg eval groups`, returning
//! the dict their `--json` output prints (values ×100).

use std::path::PathBuf;

use dolg::eval::{
    describe_groups, read_distractors, read_ranks, read_revisited_descriptors, reranked_ranking, rows_by_name, stream_positions, Database, EvalError, GroupsGt,
    RanksMatrix, RevisitedDescriptors, RevisitedGnd, DEFAULT_BLOCK_ROWS,
};
use dolg::rerank::Rerank;
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::collection::{spec_error, RerankKwargs};
use crate::model::Model;
use crate::{json_to_py, lib_err};

/// A path, or an in-memory array standing for the file's contents.
fn as_path(obj: &Bound<'_, PyAny>) -> Option<PathBuf> {
    obj.extract::<PathBuf>().ok()
}

/// A float32 [n, d] array: (values, rows, width).
fn float_rows(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<f32>, usize, usize)> {
    let a = obj.extract::<PyReadonlyArray2<'_, f32>>().map_err(|_| PyTypeError::new_err(format!("{what}: expected a path or a float32 array (n, dim)")))?;
    let (n, d) = (a.shape()[0], a.shape()[1]);
    Ok((a.as_array().iter().copied().collect(), n, d))
}

/// Ranks given as an int32/int64 array [n_db, n_queries], checked as `read_ranks` checks a file.
fn ranks_array(obj: &Bound<'_, PyAny>, gnd: &RevisitedGnd) -> PyResult<RanksMatrix> {
    let (values, shape): (Vec<i64>, Vec<usize>) = if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, i64>>() {
        (a.as_array().iter().copied().collect(), a.shape().to_vec())
    } else if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, i32>>() {
        (a.as_array().iter().map(|&v| i64::from(v)).collect(), a.shape().to_vec())
    } else {
        return Err(PyTypeError::new_err("ranks: expected a path or an int32/int64 array [n_db, n_queries]"));
    };
    let (n_db, n_q) = (shape[0], shape[1]);
    if (n_db, n_q) != (gnd.n_db(), gnd.n_queries()) {
        return Err(PyValueError::new_err(format!(
            "ranks: shape ({n_db}, {n_q}) does not match the ground truth ({} database images, {} queries)",
            gnd.n_db(),
            gnd.n_queries()
        )));
    }
    let data = values
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| PyValueError::new_err(format!("ranks: negative database index {v}"))))
        .collect::<PyResult<Vec<_>>>()?;
    RanksMatrix::from_row_major(&data, n_db, n_q).map_err(lib_err)
}

/// The re-ranking of `dolg eval` from the keywords (the library's [`dolg::rerank::RerankSpec`]);
/// spatial verification needs an index, which these functions do not take.
fn rerank(kwargs: RerankKwargs<'_>) -> PyResult<(Rerank, Option<(usize, f32)>)> {
    let spec = kwargs.spec()?;
    let rr = spec.resolve(Default::default()).map_err(spec_error)?;
    if rr.spatial.is_some() {
        return Err(PyValueError::new_err(
            "rerank=\"spatial\" needs an index with local features: use `dolg eval groups|revisited --db INDEX --rerank spatial`",
        ));
    }
    Ok((rr, spec.dba()))
}

/// Revisited Oxford/Paris mAP and mP@1,5,10 (Easy, Medium, Hard) from the ground-truth pickle
/// `gnd` and either `ranks` (int [n_db, n_queries], column q listing database indices best
/// first; a path to a .npy or an array) or `db` and `queries` descriptors (paths or float32
/// arrays, rows in imlist / qimlist order). `distractors` (path or array) extends the database.
/// Re-ranking as `dolg eval revisited`: `qe`, `qe_alpha`, `rerank="superglobal"`, `dba`,
/// `dba_alpha`. Returns the dict `dolg eval revisited --json` prints.
#[pyfunction]
#[pyo3(signature = (gnd, ranks=None, *, db=None, queries=None, distractors=None, per_query=false, qe=None, qe_alpha=None, rerank=None, sg_m=None, sg_k=None, sg_beta=None, dba=None, dba_alpha=None))]
#[allow(clippy::too_many_arguments)]
pub fn eval_revisited<'py>(
    py: Python<'py>,
    gnd: PathBuf,
    ranks: Option<&Bound<'py, PyAny>>,
    db: Option<&Bound<'py, PyAny>>,
    queries: Option<&Bound<'py, PyAny>>,
    distractors: Option<&Bound<'py, PyAny>>,
    per_query: bool,
    qe: Option<usize>,
    qe_alpha: Option<f32>,
    rerank: Option<&str>,
    sg_m: Option<usize>,
    sg_k: Option<usize>,
    sg_beta: Option<f32>,
    dba: Option<usize>,
    dba_alpha: Option<f32>,
) -> PyResult<Bound<'py, PyAny>> {
    let (rr, dba) = self::rerank(RerankKwargs { rerank, qe, qe_alpha, sg_m, sg_k, sg_beta, dba, dba_alpha, ..Default::default() })?;
    let gt = py.detach(|| RevisitedGnd::load(&gnd)).map_err(lib_err)?;
    let result = match (ranks, db, queries) {
        (Some(r), None, None) => {
            let matrix = match as_path(r) {
                Some(p) => py.detach(|| read_ranks(&p, &gt)).map_err(lib_err)?,
                None => ranks_array(r, &gt)?,
            };
            py.detach(|| gt.evaluate(&matrix)).map_err(lib_err)?
        }
        (None, Some(d), Some(q)) => {
            let descriptors = match (as_path(d), as_path(q)) {
                (Some(dp), Some(qp)) => py.detach(|| read_revisited_descriptors(&gt, &dp, &qp)).map_err(lib_err)?,
                _ => {
                    let (database, n_db, dim) = float_rows(d, "db")?;
                    let (queries, n_q, dq) = float_rows(q, "queries")?;
                    if n_db != gt.n_db() || n_q != gt.n_queries() || dim != dq {
                        return Err(PyValueError::new_err(format!(
                            "db is ({n_db}, {dim}) and queries ({n_q}, {dq}); the ground truth has {} database images and {} queries, of one width",
                            gt.n_db(),
                            gt.n_queries()
                        )));
                    }
                    RevisitedDescriptors { database, queries, dim }
                }
            };
            let extra = match distractors {
                None => Vec::new(),
                Some(x) => match as_path(x) {
                    Some(p) => py.detach(|| read_distractors(&p, descriptors.dim)).map_err(lib_err)?,
                    None => {
                        let (v, _, d) = float_rows(x, "distractors")?;
                        if d != descriptors.dim {
                            return Err(PyValueError::new_err(format!("distractors are {d}-d, the database {}-d", descriptors.dim)));
                        }
                        v
                    }
                },
            };
            // The CLI's two paths: full rankings when re-ranking, else streamed positions.
            py.detach(|| -> Result<_, EvalError> {
                let dim = descriptors.dim;
                if dba.is_some() || !rr.is_none() {
                    let mut all = [descriptors.database.as_slice(), extra.as_slice()].concat();
                    if let Some((k, alpha)) = dba {
                        all = dolg::rerank::dba(&all, dim, k, alpha);
                    }
                    let columns = reranked_ranking(&all, dim, &descriptors.queries, &vec![None; descriptors.queries.len() / dim], &rr);
                    gt.evaluate(&RanksMatrix::from_columns(columns, all.len() / dim)?)
                } else {
                    let database = Database::new(dim, [descriptors.database.as_slice(), extra.as_slice()])?;
                    gt.evaluate(&stream_positions(&database, &descriptors.queries, &gt.relevant(), DEFAULT_BLOCK_ROWS)?)
                }
            })
            .map_err(lib_err)?
        }
        _ => return Err(PyValueError::new_err("give either ranks, or db and queries")),
    };
    json_to_py(py, &result.to_json(per_query))
}

/// Retrieval metrics of any collection described by a groups CSV (`image,group`; an empty group
/// marks a distractor): every grouped image is a query, its positives the other images of its
/// group. Descriptors come from `db` (a `dolg extract` output whose names file matches the CSV,
/// relative to `images`) or are made by `model` from the images under `images`. Options as
/// `eval_revisited`. Returns the dict `dolg eval groups --json` prints.
#[pyfunction]
#[pyo3(signature = (groups, images, *, db=None, model=None, per_query=false, qe=None, qe_alpha=None, rerank=None, sg_m=None, sg_k=None, sg_beta=None, dba=None, dba_alpha=None))]
#[allow(clippy::too_many_arguments)]
pub fn eval_groups<'py>(
    py: Python<'py>,
    groups: PathBuf,
    images: PathBuf,
    db: Option<PathBuf>,
    model: Option<&Model>,
    per_query: bool,
    qe: Option<usize>,
    qe_alpha: Option<f32>,
    rerank: Option<&str>,
    sg_m: Option<usize>,
    sg_k: Option<usize>,
    sg_beta: Option<f32>,
    dba: Option<usize>,
    dba_alpha: Option<f32>,
) -> PyResult<Bound<'py, PyAny>> {
    let (rr, dba) = self::rerank(RerankKwargs { rerank, qe, qe_alpha, sg_m, sg_k, sg_beta, dba, dba_alpha, ..Default::default() })?;
    let gt = py.detach(|| GroupsGt::load(&groups)).map_err(lib_err)?;
    let ex = match (&db, model) {
        (Some(_), None) => None,
        (None, Some(m)) => Some(m.extractor()),
        _ => return Err(PyValueError::new_err("give exactly one of db (a dolg extract output) or model")),
    };
    let result = py
        .detach(|| -> dolg::Result<_> {
            let (rows, dim) = match (&db, ex) {
                (Some(p), _) => rows_by_name(p, &images, &gt.images)?,
                (None, Some(ex)) => describe_groups(ex, &gt, &images, |_| {})?,
                (None, None) => unreachable!("checked above"),
            };
            Ok(if dba.is_some() || !rr.is_none() { gt.evaluate_reranked(&rows, dim, dba, &rr)? } else { gt.evaluate_descriptors(&rows, dim)? })
        })
        .map_err(lib_err)?;
    let mut value = result.to_json(per_query);
    if per_query {
        value["queries"] = serde_json::json!(gt.queries().iter().map(|&i| gt.images[i].clone()).collect::<Vec<_>>());
    }
    json_to_py(py, &value)
}
