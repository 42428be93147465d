//! `dolg index …` and `dolg search`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use dolg::decode::expand_inputs;
use dolg::descriptors::{l2_normalize, read_matrix, write_descriptors, Extractor};
use dolg::index::{Index, IndexKind, ModelIdentity, NamedHit, Record};
use dolg::preprocess::CropBox;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{progress, value_name, ModelArgs, RunArgs};

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Create an index (or update one built with the same model) from images and directories.
    Build(BuildArgs),
    /// Add images to an existing index with its own model; unchanged files are not extracted again.
    Add(AddArgs),
    /// Remove images (by path as indexed, or imported name); nothing is rebuilt.
    Remove(RemoveArgs),
    /// Add precomputed descriptors without images (e.g. the revisitop 1M distractors).
    Import(ImportArgs),
    /// Show what an index holds and verify every file's checksum.
    Info(InfoArgs),
    /// Rewrite the index into one segment, dropping removed and superseded entries.
    Compact(DbArg),
}

#[derive(Args, Debug)]
pub struct DbArg {
    /// Index directory.
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Search backend.
    #[arg(long, value_enum, default_value_t = IndexKind::Exact)]
    pub kind: IndexKind,
    #[command(flatten)]
    pub add: AddOptions,
}

#[derive(Args, Debug)]
pub struct AddOptions {
    /// Images and/or directories (recursive, sorted).
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    pub inputs: Vec<PathBuf>,
    /// Images per durable commit: a crash loses at most this many.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    #[command(flatten)]
    pub add: AddOptions,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Image paths (resolved like `index add` does) or imported names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Float [N, D] descriptors (rows are L2-normalised on import).
    #[arg(long, value_name = "X.npy")]
    pub descriptors: PathBuf,
    /// Names file, one per row (default: X.names.txt beside the .npy if present, else `X.npy#<row>`).
    #[arg(long, value_name = "FILE")]
    pub names: Option<PathBuf>,
    /// Confirm that the descriptors were made with this index's model (same weights and options),
    /// which dolg cannot check for bare vectors. Required when the index has a model.
    #[arg(long)]
    pub same_model: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Also measure recall@10 of the search backend against exact search, using up to 200 stored
    /// vectors as queries (each excluded from its own results).
    #[arg(long)]
    pub recall: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "QUERIES\n  An image path that is itself in the index uses its stored descriptor (no model needed) and is left out of its own results;\n  any other image is described with the index's model (its weights must still be where the index was built, or pass --weights).\n  --vectors Q.npy searches with precomputed descriptors, one query per row.\n\n\
JSON (--json)\n  {\"queries\": [{\"query\": <path or row number>, \"results\": [{\"name\": <indexed path or imported name>, \"score\": <float>}, ...]}, ...]}"
)]
pub struct SearchArgs {
    /// Index directory.
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Query images.
    #[arg(value_name = "QUERY_IMAGE")]
    pub queries: Vec<PathBuf>,
    /// Query descriptors [N, D] instead of images.
    #[arg(long, value_name = "Q.npy", conflicts_with = "queries")]
    pub vectors: Option<PathBuf>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Drop results scoring below this cosine similarity.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub min_score: f32,
    /// Crop query images to this box first (x1,y1,x2,y2; int() truncation).
    #[arg(long, value_name = "X1,Y1,X2,Y2")]
    pub crop: Option<CropBox>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write PREFIX.ids.npy (int64 [N, k] index row ids, -1 padding), PREFIX.scores.npy
    /// (float32 [N, k], NaN padding) and PREFIX.rows.tsv (row id <TAB> name for every id used).
    #[arg(long, value_name = "PREFIX")]
    pub out_npy: Option<PathBuf>,
    /// Write a self-contained HTML page with each query beside its results as thumbnails.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// HNSW indexes: candidates examined per query (higher = better recall, slower; default 64).
    #[arg(long, value_name = "N")]
    pub ef: Option<usize>,
    /// Describe query images with these weights instead of the index's recorded model (must be the same model).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(cmd: IndexCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IndexCommand::Build(a) => build(a),
        IndexCommand::Add(a) => {
            let mut index = Index::open(&a.db, true)?;
            let model = model_args_from(index.store().model())?;
            add_images(&mut index, &model, &a.add, None)
        }
        IndexCommand::Remove(a) => remove(a),
        IndexCommand::Import(a) => import(a),
        IndexCommand::Info(a) => info(a),
        IndexCommand::Compact(a) => {
            let mut index = Index::open(&a.db, true)?;
            index.compact()?;
            eprintln!("{}: {} entries in 1 segment", a.db.display(), index.store().live_count());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The identity of the descriptors `m` produces: its fingerprint, plus a spec to rebuild the same
/// model later.
fn identity(m: &ModelArgs, name: String, dim: usize) -> anyhow::Result<ModelIdentity> {
    let w = m.weights_file()?;
    let spec = json!({
        "weights": if m.backbone.is_some() { serde_json::Value::Null } else { json!(std::fs::canonicalize(&w).unwrap_or(w).display().to_string()) },
        "backbone": m.backbone.map(|b| value_name(&b)),
        "arch": m.arch.map(|a| value_name(&a)),
        "fusion": m.fusion.map(|f| value_name(&f)),
        "scales": m.scales(),
    });
    Ok(ModelIdentity { name, dim, fingerprint: Some(m.fingerprint()?), spec: Some(spec) })
}

fn model_args_from(id: &ModelIdentity) -> anyhow::Result<ModelArgs> {
    let spec = id.spec.as_ref().context("this index holds only imported vectors and has no model: search it with --vectors")?;
    let parse = |key: &str| spec.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(ModelArgs {
        weights: parse("weights").map(PathBuf::from),
        backbone: parse("backbone").map(|b| ValueEnum::from_str(&b, true)).transpose().map_err(anyhow::Error::msg)?,
        arch: parse("arch").map(|a| ValueEnum::from_str(&a, true)).transpose().map_err(anyhow::Error::msg)?,
        fusion: parse("fusion").map(|f| ValueEnum::from_str(&f, true)).transpose().map_err(anyhow::Error::msg)?,
        scales: spec.get("scales").and_then(|s| serde_json::from_value(s.clone()).ok()),
    })
}

/// Indexed name of an image: its absolute path, so the same file is recognised from any directory.
fn image_name(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()).display().to_string()
}

fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let device = a.add.run.init()?;
    let ex = a.model.extractor(device)?;
    let id = identity(&a.model, ex.model.name(), ex.model.out_dim())?;
    let mut index = if dolg::index::Store::exists(&a.db) {
        let index = Index::open(&a.db, true)?;
        index.check_model(&id)?;
        if index.kind() != a.kind {
            bail!("{} is an existing {} index; it cannot be rebuilt as --kind {}", a.db.display(), index.kind().as_str(), a.kind.as_str());
        }
        index
    } else {
        Index::create(&a.db, id, a.kind)?
    };
    add_images(&mut index, &a.model, &a.add, Some(ex))
}

/// `checked`: an extractor already verified against the index's model (else one is built, and
/// verified, only if something needs describing).
fn add_images(index: &mut Index, model: &ModelArgs, a: &AddOptions, checked: Option<Extractor>) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let paths = expand_inputs(&a.inputs)?;
    // Content hashes decide what needs extracting; unreadable files are reported by extraction.
    let mut todo = Vec::new();
    let mut unchanged = 0usize;
    for p in &paths {
        let mut h = Sha256::new();
        let hash: Option<[u8; 32]> = std::fs::File::open(p).and_then(|mut f| std::io::copy(&mut f, &mut h)).ok().map(|_| h.finalize().into());
        match hash {
            Some(h) if index.is_current(&image_name(p), &h) => unchanged += 1,
            _ => todo.push((p.clone(), hash)),
        }
    }
    let mut added = 0usize;
    let mut failed = Vec::new();
    if !todo.is_empty() {
        let ex = match checked {
            Some(ex) => ex,
            None => {
                let ex = model.extractor(device)?;
                index.check_model(&identity(model, ex.model.name(), ex.model.out_dim())?)?;
                ex
            }
        };
        let todo_paths: Vec<PathBuf> = todo.iter().map(|(p, _)| p.clone()).collect();
        let pb = progress(todo.len() as u64, "index");
        let mut batch = Vec::new();
        let mut commit_err = None;
        // A failed commit (disk full, lost lock) stops extraction at once: nothing more could be stored.
        ex.describe_many_cropped(&todo_paths, &|_| None, |i, path, r| {
            match r {
                Ok(d) => {
                    batch.push(Record::Add { name: image_name(path), hash: todo[i].1, vector: d.clone() });
                    added += 1;
                }
                Err(e) => {
                    pb.suspend(|| eprintln!("warning: skipped: {e}"));
                    failed.push(json!({"path": path.display().to_string(), "error": e.to_string()}));
                }
            }
            pb.inc(1);
            if batch.len() >= a.batch.max(1) {
                if let Err(e) = index.commit(std::mem::take(&mut batch)) {
                    commit_err = Some(e);
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        });
        pb.finish_and_clear();
        if let Some(e) = commit_err {
            return Err(e.into());
        }
        index.commit(batch)?;
    }
    index.flush()?;
    let s = index.store();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"index": s.dir().display().to_string(), "added": added, "unchanged": unchanged, "failed": failed, "entries": s.live_count()})
            )?
        );
    } else {
        eprintln!("{}: added {added}, unchanged {unchanged}, skipped {}; {} entries ({})", s.dir().display(), failed.len(), s.live_count(), s.model().name);
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let mut index = Index::open(&a.db, true)?;
    let mut records = Vec::new();
    for n in &a.names {
        let name = if index.store().lookup(n).is_some() { n.clone() } else { image_name(Path::new(n)) };
        if index.store().lookup(&name).is_none() {
            bail!("'{n}' is not in the index {}", a.db.display());
        }
        records.push(Record::Remove { name });
    }
    let count = records.len();
    index.commit(records)?;
    index.flush()?;
    eprintln!("{}: removed {count}; {} entries", a.db.display(), index.store().live_count());
    Ok(ExitCode::SUCCESS)
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let (mut data, n, dim) = read_matrix(&a.descriptors)?;
    let names: Vec<String> = match &a.names {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?.lines().map(str::to_owned).collect(),
        None => match dolg::descriptors::read_names(&a.descriptors) {
            Ok(names) => names,
            Err(_) => (0..n).map(|i| format!("{}#{i}", a.descriptors.display())).collect(),
        },
    };
    if names.len() != n {
        bail!("{} has {n} rows but {} names were given", a.descriptors.display(), names.len());
    }
    let mut index = if dolg::index::Store::exists(&a.db) {
        Index::open(&a.db, true)?
    } else {
        Index::create(&a.db, ModelIdentity { name: "imported descriptors".into(), dim, fingerprint: None, spec: None }, IndexKind::Exact)?
    };
    if index.store().dim() != dim {
        bail!("{} holds {dim}-d descriptors, the index {}-d", a.descriptors.display(), index.store().dim());
    }
    if index.store().model().fingerprint.is_some() && !a.same_model {
        bail!(
            "{} was built with {}; dolg cannot verify that {} comes from the same model. If it does (e.g. made by `dolg extract` with the same weights and scales), repeat with --same-model",
            a.db.display(),
            index.store().model().name,
            a.descriptors.display()
        );
    }
    let pb = progress(n as u64, "import");
    for (chunk, names) in data.chunks_mut(dim * 65_536).zip(names.chunks(65_536)) {
        let records = chunk
            .chunks_mut(dim)
            .zip(names)
            .map(|(v, name)| {
                l2_normalize(v);
                Record::Add { name: name.clone(), hash: None, vector: v.to_vec() }
            })
            .collect::<Vec<_>>();
        pb.inc(records.len() as u64);
        index.commit(records)?;
    }
    pb.finish_and_clear();
    index.flush()?;
    eprintln!("{}: imported {n}; {} entries", a.db.display(), index.store().live_count());
    Ok(ExitCode::SUCCESS)
}

fn info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let index = Index::open(&a.db, false)?;
    let s = index.store();
    let m = s.model();
    let recall = if a.recall { Some(recall_at_10(&index)?) } else { None };
    let mut v = json!({
        "index": s.dir().display().to_string(),
        "kind": s.kind(),
        "model": m.name,
        "dim": m.dim,
        "fingerprint": m.fingerprint,
        "spec": m.spec,
        "entries": s.live_count(),
        "stored_rows": s.rows().len(),
        "segments": s.segments(),
        "checksums": "ok",
    });
    if let Some(r) = recall {
        v["recall_at_10"] = json!(r);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} index, {} entries ({} stored rows in {} segments, all checksums verified)",
            s.dir().display(),
            s.kind(),
            s.live_count(),
            s.rows().len(),
            s.segments()
        );
        println!("model: {} ({}-d)", m.name, m.dim);
        if let Some(r) = recall {
            println!("recall@10 of the {} backend against exact search: {r:.4}", s.kind());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Mean recall@10 of `index.search` against exact search, querying with up to 200 stored vectors
/// spread over the index (each excluded from its own results).
fn recall_at_10(index: &Index) -> anyhow::Result<f64> {
    let s = index.store();
    let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
    if live.len() < 2 {
        bail!("recall needs at least 2 entries");
    }
    let picks: Vec<usize> = (0..live.len().min(200)).map(|i| live[i * live.len() / live.len().min(200)]).collect();
    let queries: Vec<f32> = picks.iter().flat_map(|&r| s.vector(r).iter().copied()).collect();
    let approx = index.search(&queries, 11, f32::MIN)?;
    let exact = index.search_exact(&queries, 11);
    let mut total = 0.0;
    for ((q, a), e) in picks.iter().zip(&approx).zip(&exact) {
        let truth: Vec<usize> = e.iter().copied().filter(|r| r != q).take(10).collect();
        let found = a.iter().filter(|h| h.row != *q).take(10).filter(|h| truth.contains(&h.row)).count();
        total += found as f64 / truth.len().max(1) as f64;
    }
    Ok(total / picks.len() as f64)
}

struct Query {
    label: serde_json::Value,
    path: Option<PathBuf>,
    exclude: Option<usize>,
}

pub fn search(a: SearchArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let mut index = Index::open(&a.db, false)?;
    if let Some(ef) = a.ef {
        index.set_ef_search(ef);
    }
    let dim = index.store().dim();
    let mut queries: Vec<Query> = Vec::new();
    let mut vectors: Vec<f32> = Vec::new();
    if let Some(v) = &a.vectors {
        let (mut data, n, d) = read_matrix(v)?;
        if d != dim {
            bail!("{} holds {d}-d vectors, the index {dim}-d", v.display());
        }
        data.chunks_mut(dim).for_each(l2_normalize);
        vectors = data;
        queries.extend((0..n).map(|i| Query { label: json!(i), path: None, exclude: None }));
    } else {
        if a.queries.is_empty() {
            bail!("give query images or --vectors Q.npy");
        }
        let mut extractor = None;
        for p in &a.queries {
            let stored = if a.crop.is_none() { index.store().lookup(&image_name(p)) } else { None };
            match stored {
                Some(row) => vectors.extend_from_slice(index.store().vector(row)),
                None => {
                    if extractor.is_none() {
                        let mut m = model_args_from(index.store().model())?;
                        if let Some(w) = &a.weights {
                            if m.backbone.is_some() {
                                bail!("this index uses a pretrained backbone (fetched with `dolg fetch-weights`); --weights does not apply");
                            }
                            m.weights = Some(w.clone());
                        }
                        let ex = m.extractor(device.clone())?;
                        index.check_model(&identity(&m, ex.model.name(), ex.model.out_dim())?)?;
                        extractor = Some(ex);
                    }
                    let ex = extractor.as_ref().expect("set above");
                    vectors.extend(ex.describe_file(p, a.crop)?.descriptor);
                }
            }
            queries.push(Query { label: json!(p.display().to_string()), path: Some(p.clone()), exclude: stored });
        }
    }
    // One extra result covers a query that finds itself; never ask for more than the index holds.
    let k = a.k.min(index.store().live_count());
    let results = index.search(&vectors, k + 1, a.min_score)?;
    let results: Vec<Vec<NamedHit>> =
        results.into_iter().zip(&queries).map(|(hits, q)| hits.into_iter().filter(|h| Some(h.row) != q.exclude).take(k).collect()).collect();

    if a.json {
        let out = json!({"queries": queries.iter().zip(&results).map(|(q, hits)| json!({
            "query": q.label,
            "results": hits.iter().map(|h| json!({"name": h.name, "score": h.score})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (q, hits) in queries.iter().zip(&results) {
            println!("{}", q.label.as_str().map_or_else(|| format!("query {}", q.label), str::to_owned));
            for (i, h) in hits.iter().enumerate() {
                println!("  {:>3}  {:.4}  {}", i + 1, h.score, h.name);
            }
        }
    }
    if let Some(prefix) = &a.out_npy {
        write_hits_npy(prefix, &results, k)?;
    }
    if let Some(html) = &a.html {
        super::report::write_html(html, &queries.iter().map(|q| (q.label.clone(), q.path.clone())).collect::<Vec<_>>(), &results)?;
        eprintln!("wrote {}", html.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_hits_npy(prefix: &Path, results: &[Vec<NamedHit>], k: usize) -> anyhow::Result<()> {
    use npyz::WriterBuilder;
    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));
    let ids_path = file("ids.npy");
    let mut ids = Vec::with_capacity(results.len() * k);
    let mut scores = Vec::with_capacity(results.len());
    let mut names = std::collections::BTreeMap::new();
    for hits in results {
        for i in 0..k {
            ids.push(hits.get(i).map_or(-1i64, |h| h.row as i64));
        }
        scores.push((0..k).map(|i| hits.get(i).map_or(f32::NAN, |h| h.score)).collect::<Vec<f32>>());
        names.extend(hits.iter().map(|h| (h.row, h.name.clone())));
    }
    let dir = ids_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write {}", ids_path.display()))?;
    let mut w =
        npyz::WriteOptions::<i64>::new().default_dtype().shape(&[results.len() as u64, k as u64]).writer(std::io::BufWriter::new(tmp.as_file())).begin_nd()?;
    w.extend(ids)?;
    w.finish()?;
    tmp.persist(&ids_path)?;
    write_descriptors(&file("scores.npy"), &scores, k, None)?;
    // Row ids are the index's internal positions: this table maps the ones used to names.
    let table: String = names.into_iter().map(|(row, name)| format!("{row}\t{name}\n")).collect();
    std::fs::write(file("rows.tsv"), table).with_context(|| format!("cannot write {}", file("rows.tsv").display()))?;
    Ok(())
}
