use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dolg::atomic_file::{self, Mode};
use dolg::descriptors::{npy_type, read_matrix, read_matrix_with_names, write_descriptors};
use dolg::eval::{stream_positions, Database, GroupsGt, RanksMatrix, RevisitedGnd, DEFAULT_BLOCK_ROWS};
use dolg::preprocess::CropBox;
use serde_json::json;

use super::{progress, ModelArgs, RunArgs};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Revisited Oxford/Paris (ROxford5k, RParis6k): mAP and mP@1,5,10 for Easy, Medium and Hard.
    #[command(
        after_help = "INPUTS (exactly one)\n  --ranks R.npy               int [n_db, n_queries]; column q lists database indices best first (the reference `compute_map` layout)\n  --db DB.npy --queries Q.npy float [n_db, D] in imlist order and [70, D] in qimlist order; ranked by dot product, ties to the lower index\n  --images ROOT --weights W   end to end: database ROOT/jpg/<name>.jpg, queries cropped to their box with int() truncation;\n                              descriptors are cached (see --cache), so a second run only ranks\n\n\
--distractors D.npy appends e.g. the revisitop 1M distractor descriptors to the database; the database is streamed in blocks,\nso 1M x 512 needs about its own 2 GB plus a few MB."
    )]
    Revisited(RevisitedArgs),
    /// Any collection described by a groups CSV (`image,group`; empty group = distractor). Every grouped
    /// image is a query; its positives are the other images of its group; it is ignored in its own ranking.
    Groups(GroupsArgs),
}

#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Print one JSON object (values ×100, full precision) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also report the AP of every query.
    #[arg(long)]
    pub per_query: bool,
}

#[derive(Args, Debug)]
pub struct RevisitedArgs {
    /// Ground-truth pickle (gnd_roxford5k.pkl or gnd_rparis6k.pkl).
    #[arg(long, value_name = "FILE.pkl")]
    pub gnd: PathBuf,
    /// Precomputed rankings, int32/int64 [n_db, n_queries].
    #[arg(long, value_name = "RANKS.npy", conflicts_with_all = ["db", "images"])]
    pub ranks: Option<PathBuf>,
    /// Database descriptors [n_db, D], rows in the pickle's imlist order.
    #[arg(long, value_name = "DB.npy", requires = "queries", conflicts_with = "images")]
    pub db: Option<PathBuf>,
    /// Query descriptors [n_queries, D], rows in qimlist order (queries cropped to their boxes).
    #[arg(long, value_name = "Q.npy")]
    pub queries: Option<PathBuf>,
    /// Dataset root holding jpg/<name>.jpg (end-to-end evaluation; needs --weights).
    #[arg(long, value_name = "ROOT")]
    pub images: Option<PathBuf>,
    /// Extra distractor descriptors [n, D] appended to the database (e.g. revisitop 1M).
    #[arg(long, value_name = "D.npy", conflicts_with = "ranks")]
    pub distractors: Option<PathBuf>,
    /// Where --images caches descriptors (default: ROOT/.dolg-cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct GroupsArgs {
    /// Groups CSV with header `image,group`.
    #[arg(long, value_name = "groups.csv")]
    pub groups: PathBuf,
    /// Directory the CSV's image names are relative to.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Descriptors written by `dolg extract`; rows are matched to images through the names file beside it.
    #[arg(long, value_name = "DB.npy", conflicts_with_all = ["weights", "backbone"])]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvalCommand::Revisited(a) => revisited(a),
        EvalCommand::Groups(a) => groups(a),
    }
}

fn dataset_name(gnd: &Path) -> String {
    let stem = gnd.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    stem.strip_prefix("gnd_").map(str::to_owned).unwrap_or(stem)
}

fn read_ranks(path: &Path) -> anyhow::Result<(Vec<usize>, usize, usize)> {
    let file = std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?);
    let npy = npyz::NpyFile::new(file).with_context(|| format!("{}: not a .npy file", path.display()))?;
    let shape = npy.shape().to_vec();
    let [n, q] = shape[..] else { bail!("{}: expected a 2-D array [n_db, n_queries], found shape {shape:?}", path.display()) };
    let bad = |v: i64| anyhow::anyhow!("{}: negative database index {v}", path.display());
    let data: Vec<usize> = match npy_type(&npy.dtype()).as_str() {
        "<i4" => npy.into_vec::<i32>()?.into_iter().map(|v| usize::try_from(v).map_err(|_| bad(v.into()))).collect::<Result<_, _>>()?,
        "<i8" => npy.into_vec::<i64>()?.into_iter().map(|v| usize::try_from(v).map_err(|_| bad(v))).collect::<Result<_, _>>()?,
        other => bail!("{}: expected int32 or int64 ranks, found dtype '{other}'", path.display()),
    };
    Ok((data, n as usize, q as usize))
}

fn print_result(json_value: serde_json::Value, table: String, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&json_value)?);
    } else {
        print!("{table}");
        if !table.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

fn revisited(a: RevisitedArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let gnd = RevisitedGnd::load(&a.gnd)?;
    let name = dataset_name(&a.gnd);
    let result = if let Some(r) = &a.ranks {
        let (data, n_db, n_q) = read_ranks(r)?;
        if n_db != gnd.n_db() || n_q != gnd.n_queries() {
            bail!("{}: shape [{n_db}, {n_q}] does not match {} ({} database images, {} queries)", r.display(), a.gnd.display(), gnd.n_db(), gnd.n_queries());
        }
        gnd.evaluate(&RanksMatrix::from_row_major(&data, n_db, n_q)?)?
    } else {
        let (db, q, dim) = if let (Some(db), Some(qp)) = (&a.db, &a.queries) {
            let (db_rows, n_db, d) = read_matrix(db)?;
            let (q_rows, n_q, dq) = read_matrix(qp)?;
            check_rows(db, n_db, gnd.n_db(), "database images (imlist)")?;
            check_rows(qp, n_q, gnd.n_queries(), "queries (qimlist)")?;
            if d != dq {
                bail!("descriptor widths differ: {} has {d}, {} has {dq}", db.display(), qp.display());
            }
            (db_rows, q_rows, d)
        } else if let Some(root) = &a.images {
            extract_revisited(&a, &gnd, root, device)?
        } else {
            bail!("give one of --ranks, --db with --queries, or --images with --weights");
        };
        let distractors = match &a.distractors {
            Some(p) => {
                let (rows, _, d) = read_matrix(p)?;
                if d != dim {
                    bail!("{}: distractor descriptors are {d}-d, the database is {dim}-d", p.display());
                }
                rows
            }
            None => Vec::new(),
        };
        let database = Database::new(dim, [db.as_slice(), distractors.as_slice()])?;
        gnd.evaluate(&stream_positions(&database, &q, &gnd.relevant(), DEFAULT_BLOCK_ROWS)?)?
    };
    print_result(result.to_json(a.out.per_query), result.table(&name), a.out.json)?;
    Ok(ExitCode::SUCCESS)
}

fn check_rows(path: &Path, found: usize, expected: usize, what: &str) -> anyhow::Result<()> {
    if found != expected {
        bail!("{}: {found} rows, but the ground truth has {expected} {what}", path.display());
    }
    Ok(())
}

/// Describe database images and cropped queries, reusing cached descriptors made with the same
/// weights, architecture and scales (`key.txt`) for the same images (the names files beside them).
fn extract_revisited(a: &RevisitedArgs, gnd: &RevisitedGnd, root: &Path, device: burn::tensor::Device) -> anyhow::Result<(Vec<f32>, Vec<f32>, usize)> {
    let cache = a.cache.clone().unwrap_or_else(|| root.join(".dolg-cache"));
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create cache directory {}", cache.display()))?;
    let key = a.model.fingerprint()?;
    let key_file = cache.join("key.txt");
    let (db_file, q_file) = (cache.join("db.npy"), cache.join("queries.npy"));
    // A cached file counts only with its names file, listing exactly the images wanted.
    let cached = |file: &Path, names: &[String]| read_matrix_with_names(file).ok().filter(|c| c.3 == names).map(|(data, _, d, _)| (data, d));
    if std::fs::read_to_string(&key_file).is_ok_and(|k| k == key) {
        if let (Some((db, d)), Some((q, dq))) = (cached(&db_file, &gnd.imlist), cached(&q_file, &gnd.qimlist)) {
            if d == dq {
                eprintln!("using cached descriptors in {}", cache.display());
                return Ok((db, q, d));
            }
        }
    }
    let ex = a.model.extractor(device)?;
    let jpg = |n: &str| root.join("jpg").join(format!("{n}.jpg"));
    // Decoding overlaps the network (describe_many_cropped); every unreadable image is reported
    // together instead of stopping at the first.
    let describe = |names: &[String], crops: &(dyn Fn(usize) -> Option<CropBox> + Sync), what: &str| -> anyhow::Result<Vec<Vec<f32>>> {
        let pb = progress(names.len() as u64, what);
        let paths: Vec<PathBuf> = names.iter().map(|n| jpg(n)).collect();
        let results = ex.describe_many_cropped(&paths, crops, |_, _, _| {
            pb.inc(1);
            std::ops::ControlFlow::Continue(())
        });
        pb.finish_and_clear();
        let failed: Vec<String> = results.iter().zip(names).filter_map(|(r, n)| r.as_ref().err().map(|e| format!("'{n}': {e}"))).collect();
        if !failed.is_empty() {
            bail!("{} {what} image(s) could not be described (every image of the ground truth is needed): {}", failed.len(), failed.join("; "));
        }
        Ok(results.into_iter().map(|r| r.expect("failures handled above")).collect())
    };
    let qbox = |i: usize| Some(CropBox(gnd.gnd[i].bbx));
    let q = describe(&gnd.qimlist, &qbox, "queries")?;
    let db = describe(&gnd.imlist, &|_| None, "database")?;
    let dim = q[0].len();
    // The key goes first and comes back last, so that no crash in between leaves descriptors
    // under a key they were not made with.
    atomic_file::remove(&key_file).with_context(|| format!("cannot remove {}", key_file.display()))?;
    write_descriptors(&db_file, &db, dim, Some(&gnd.imlist))?;
    write_descriptors(&q_file, &q, dim, Some(&gnd.qimlist))?;
    atomic_file::write(&key_file, Mode::Shared, key.as_bytes()).with_context(|| format!("cannot write {}", key_file.display()))?;
    Ok((db.concat(), q.concat(), dim))
}

fn groups(a: GroupsArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let gt = GroupsGt::load(&a.groups)?;
    for g in gt.singleton_groups() {
        eprintln!("warning: group '{g}' has a single image; its query has no positives and is skipped");
    }
    let (rows, dim) = match &a.db {
        Some(db) => rows_by_name(db, &a.images, &gt.images)?,
        None => {
            let ex = a.model.extractor(device)?;
            let paths: Vec<PathBuf> = gt.images.iter().map(|n| a.images.join(n)).collect();
            let pb = progress(paths.len() as u64, "extract");
            let mut failed = Vec::new();
            let results = ex.describe_many(&paths, None, |_, _, r| {
                if let Err(e) = r {
                    failed.push(e.to_string());
                }
                pb.inc(1);
            });
            pb.finish_and_clear();
            if !failed.is_empty() {
                bail!("{} image(s) could not be described: {}", failed.len(), failed.join("; "));
            }
            let rows: Vec<Vec<f32>> = results.into_iter().map(|r| r.expect("failures handled above")).collect();
            let dim = rows.first().map_or(0, Vec::len);
            (rows.concat(), dim)
        }
    };
    let result = gt.evaluate_descriptors(&rows, dim)?;
    let name = a.groups.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut value = result.to_json(a.out.per_query);
    if a.out.per_query {
        value["queries"] = json!(gt.queries().iter().map(|&i| gt.images[i].clone()).collect::<Vec<_>>());
    }
    print_result(value, result.table(&name), a.out.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Reorder the rows of a `dolg extract` output into the CSV's image order, matching each row's
/// name (its path relative to `images_dir`, or failing that its file name) to the CSV.
fn rows_by_name(db: &Path, images_dir: &Path, wanted: &[String]) -> anyhow::Result<(Vec<f32>, usize)> {
    let (data, _, dim, names) = read_matrix_with_names(db)?;
    let mut index = std::collections::HashMap::new();
    for (row, name) in names.iter().enumerate() {
        let p = Path::new(name);
        let key = p
            .strip_prefix(images_dir)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        if index.insert(key.clone(), row).is_some() {
            bail!("{}: image '{key}' appears twice in the names file", db.display());
        }
    }
    let mut out = Vec::with_capacity(wanted.len() * dim);
    for w in wanted {
        let row = index.remove(w).with_context(|| format!("image '{w}' of the groups file has no descriptor in {}", db.display()))?;
        out.extend_from_slice(&data[row * dim..(row + 1) * dim]);
    }
    if let Some(extra) = index.keys().next() {
        bail!("{}: image '{extra}' has a descriptor but is not in the groups file ({} extra in all)", db.display(), index.len());
    }
    Ok((out, dim))
}
