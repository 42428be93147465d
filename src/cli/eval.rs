use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use dolg::collection::{Collection, OpenMode};
use dolg::descriptors::Extractor;
use dolg::eval::{
    describe_groups, describe_revisited_cached, describe_revisited_queries, read_distractors, read_ranks, read_revisited_descriptors, rows_by_name,
    rows_from_collection, scored_ranking, stream_positions, unscored, Database, DescribeEvent, GroupsGt, ImageSet, RanksMatrix, RerankProtocol, RevisitedCache,
    RevisitedDescriptors, RevisitedGnd, DEFAULT_BLOCK_ROWS,
};
use dolg::rerank::Rerank;
use dolg::rerank::SpatialRerank;
use serde_json::json;

use super::{progress, ModelArgs, RunArgs};
use dolg::rerank::RerankSpec;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Revisited Oxford/Paris (ROxford5k, RParis6k): mAP and mP@1,5,10 for Easy, Medium and Hard.
    #[command(
        after_help = "INPUTS (exactly one)\n  --ranks R.npy               int [n_db, n_queries]; column q lists database indices best first (the reference `compute_map` layout)\n  --db DB.npy --queries Q.npy float [n_db, D] in imlist order and [70, D] in qimlist order; ranked by dot product, ties to the lower index\n  --images ROOT --weights W   end to end: database ROOT/jpg/<name>.jpg, queries cropped to their box with int() truncation;\n                              descriptors are cached (see --cache), so a second run only ranks\n  --images ROOT --db INDEX    an index built over ROOT/jpg (`dolg index build --db INDEX ROOT/jpg`): database vectors (and\n                              local features) are read from it by name; queries are described, cropped, with the index's model\n\n\
--distractors D.npy appends e.g. the revisitop 1M distractor descriptors to the database; the database is streamed in blocks,\nso 1M x 512 needs about its own 2 GB plus a few MB.\n\n\
TWO STAGES (--rerank spatial, needs --db INDEX built with --local xfeat|delg)\n  The top --rerank-k (100) global results of each query are verified with local features and RANSAC and re-ordered by inliers.\n  --rerank-protocol label-free (default): the top K of the global ranking, the same for Easy, Medium and Hard; what a real\n      system can do, and what `dolg search --rerank spatial` does.\n  --rerank-protocol labelled: DELG's evaluation; per protocol, that protocol's ignored images (Easy: junk+hard, Medium: junk,\n      Hard: junk+easy) are removed before the top K are taken, so no verification is spent on them. It reads the ground\n      truth: use it only to compare with published two-stage numbers (DELG's 78.3 / 57.9 on ROxf Medium / Hard)."
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
    #[command(flatten)]
    pub rerank: RerankSpec,
    /// α-DBA: replace every database vector by the α-weighted sum of itself and its K nearest neighbours (0 = off).
    #[arg(long, value_name = "K")]
    pub dba: Option<usize>,
    /// α of α-DBA [default: 3].
    #[arg(long, value_name = "A")]
    pub dba_alpha: Option<f32>,
}

impl OutputArgs {
    /// The re-ranking these flags ask for: `dolg search`'s flags plus DBA.
    fn spec(&self) -> RerankSpec {
        RerankSpec { dba: self.dba, dba_alpha: self.dba_alpha, ..self.rerank.clone() }
    }
    fn dba(&self) -> Option<(usize, f32)> {
        self.spec().dba()
    }
    /// The re-ranking asked for, spatial settings not given following `defaults`; checked.
    fn rerank_for(&self, defaults: SpatialRerank) -> anyhow::Result<Rerank> {
        Ok(self.spec().resolve(defaults)?)
    }
    fn reranking(&self) -> anyhow::Result<bool> {
        Ok(self.dba().is_some() || !self.rerank_for(SpatialRerank::default())?.is_none())
    }
}

#[derive(Args, Debug)]
pub struct RevisitedArgs {
    /// Ground-truth pickle (gnd_roxford5k.pkl or gnd_rparis6k.pkl).
    #[arg(long, value_name = "FILE.pkl")]
    pub gnd: PathBuf,
    /// Precomputed rankings, int32/int64 [n_db, n_queries].
    #[arg(long, value_name = "RANKS.npy", conflicts_with_all = ["db", "images"])]
    pub ranks: Option<PathBuf>,
    /// Database descriptors [n_db, D], rows in the pickle's imlist order (with --queries); or an
    /// index directory or PostgreSQL shards (`postgres://...`) built over ROOT/jpg (with --images
    /// ROOT), which --rerank spatial needs.
    #[arg(long, value_name = "DB.npy|INDEX")]
    pub db: Option<PathBuf>,
    /// Query descriptors [n_queries, D], rows in qimlist order (queries cropped to their boxes).
    #[arg(long, value_name = "Q.npy", requires = "db", conflicts_with = "images")]
    pub queries: Option<PathBuf>,
    /// Dataset root holding jpg/<name>.jpg (end-to-end evaluation: with --weights, or with --db INDEX).
    #[arg(long, value_name = "ROOT")]
    pub images: Option<PathBuf>,
    /// Extra distractor descriptors [n, D] appended to the database (e.g. revisitop 1M).
    #[arg(long, value_name = "D.npy", conflicts_with = "ranks")]
    pub distractors: Option<PathBuf>,
    /// Where --images caches descriptors (default: ROOT/.dolg-cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Which global results --rerank spatial verifies: the top K of the global ranking
    /// (label-free, default), or per protocol the top K after removing its ignored images
    /// (labelled: DELG's evaluation, uses the ground truth). See below.
    #[arg(long, value_enum, value_name = "P")]
    pub rerank_protocol: Option<RerankProtocolArg>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `--rerank-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RerankProtocolArg {
    /// The top K of the raw global ranking, the same for every protocol (what a real system can do).
    LabelFree,
    /// Per protocol, the top K after removing that protocol's ignored images (DELG; uses the ground truth).
    Labelled,
}

impl From<RerankProtocolArg> for RerankProtocol {
    fn from(a: RerankProtocolArg) -> Self {
        match a {
            RerankProtocolArg::LabelFree => RerankProtocol::LabelFree,
            RerankProtocolArg::Labelled => RerankProtocol::Labelled,
        }
    }
}

#[derive(Args, Debug)]
pub struct GroupsArgs {
    /// Groups CSV with header `image,group`. Repeat --groups, --images (and --db) to score several
    /// sources, each against its own photos: the table then has a row per source (named after the
    /// CSV's folder) and the mean over sources, the figure to compare settings by.
    #[arg(long, value_name = "groups.csv", required = true)]
    pub groups: Vec<PathBuf>,
    /// Directory the CSV's image names are relative to (one per --groups, in the same order).
    #[arg(long, value_name = "DIR", required = true)]
    pub images: Vec<PathBuf>,
    /// Descriptors written by `dolg extract`; rows are matched to images through the names file
    /// beside it. Or an index directory or PostgreSQL shards (`dolg index build` over --images),
    /// whose stored local features `--rerank spatial` needs. One per --groups, in the same order,
    /// or none.
    #[arg(long, value_name = "DB.npy|DIR", conflicts_with_all = ["weights", "backbone"])]
    pub db: Vec<PathBuf>,
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

/// A progress callback for the library's describing functions: one bar per image set.
fn describe_progress() -> impl FnMut(DescribeEvent<'_>) {
    let mut pb: Option<indicatif::ProgressBar> = None;
    move |event| match event {
        DescribeEvent::Cached { dir } => eprintln!("using cached descriptors in {}", dir.display()),
        DescribeEvent::Started { set, total } => {
            let what = match set {
                ImageSet::Queries => "queries",
                ImageSet::Database => "database",
                ImageSet::Groups => "extract",
            };
            pb = Some(progress(total as u64, what));
        }
        DescribeEvent::Described { .. } => {
            if let Some(pb) = &pb {
                pb.inc(1);
            }
        }
        DescribeEvent::Finished { .. } => {
            if let Some(pb) = pb.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// Descriptors of a Revisited dataset read from an index built over `root/jpg` (database, with
/// stored local features) and described with the index's model (queries, cropped, with local
/// features when the index stores them): `(descriptors, database locals, query locals, the
/// index's spatial verification defaults)`.
fn revisited_from_index(
    a: &RevisitedArgs,
    index: &Path,
    gnd: &RevisitedGnd,
    device: &Device,
) -> anyhow::Result<(RevisitedDescriptors, Locals, Locals, SpatialRerank)> {
    let Some(root) = &a.images else {
        bail!("--db {} is an index: give --images ROOT, the dataset root it was built over (ROOT/jpg/<name>.jpg)", index.display());
    };
    if a.model.backbone.is_some() {
        bail!("--backbone: with --db INDEX the model is the one the index records");
    }
    let wanted: Vec<String> = gnd.imlist.iter().map(|n| format!("jpg/{n}.jpg")).collect();
    #[cfg(feature = "postgres")]
    if let Some(url) = index.to_str().filter(|d| dolg::index::is_postgres_url(d)) {
        if a.model.weights.is_some() {
            bail!("--weights: a PostgreSQL collection describes queries with the model it records");
        }
        let c = dolg::collection::postgres::PgCollection::open(url, OpenMode::Read, device)?;
        let (database, dim, db_locals) = dolg::eval::rows_from_pg(&c, root, &wanted)?;
        return finish_revisited(gnd, root, index, (database, dim, db_locals), &c.load_query_model()?, c.spatial_rerank_defaults());
    }
    let mut c = Collection::open(index, OpenMode::Read, device)?;
    if let Some(w) = &a.model.weights {
        c.use_weights(w.clone())?;
    }
    let rows = rows_from_collection(&c, root, &wanted)?;
    finish_revisited(gnd, root, index, rows, &c.load_query_model()?, c.spatial_rerank_defaults())
}

/// Describe the queries with the collection's `model` and check they match its stored `rows`.
fn finish_revisited(
    gnd: &RevisitedGnd,
    root: &Path,
    index: &Path,
    (database, dim, db_locals): (Vec<f32>, usize, Locals),
    model: &dolg::spec::LoadedModel,
    defaults: SpatialRerank,
) -> anyhow::Result<(RevisitedDescriptors, Locals, Locals, SpatialRerank)> {
    let (queries, query_locals) = describe_revisited_queries(&model.extractor, gnd, root, describe_progress())?;
    if queries.len() != gnd.n_queries() * dim {
        bail!("{}: the index's model describes {}-d queries, its stored vectors are {dim}-d", index.display(), queries.len() / gnd.n_queries().max(1));
    }
    Ok((RevisitedDescriptors { database, queries, dim }, db_locals, query_locals, defaults))
}

type Locals = Vec<Option<dolg::model::LocalFeatures>>;

fn revisited(a: RevisitedArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let gnd = RevisitedGnd::load(&a.gnd)?;
    let name = dataset_name(&a.gnd);
    // Spatial settings not given follow the index's local features (as `dolg search`).
    let flags = a.out.rerank_for(SpatialRerank::default())?;
    if a.rerank_protocol.is_some() && flags.spatial.is_none() {
        bail!("--rerank-protocol chooses what --rerank spatial verifies: add --rerank spatial");
    }
    let index = a.db.as_ref().filter(|p| p.is_dir() || p.to_str().is_some_and(dolg::index::is_postgres_url));
    if flags.spatial.is_some() && index.is_none() {
        bail!("--rerank spatial needs local features: give --images ROOT --db INDEX, an index built over ROOT/jpg with --local xfeat (or delg)");
    }
    let result = if let Some(r) = &a.ranks {
        gnd.evaluate(&read_ranks(r, &gnd)?)?
    } else {
        let (d, locals, rerank) = if let Some(index) = index {
            let (d, db_locals, query_locals, defaults) = revisited_from_index(&a, index, &gnd, &device)?;
            (d, Some((db_locals, query_locals)), a.out.rerank_for(defaults)?)
        } else if let (Some(db), Some(qp)) = (&a.db, &a.queries) {
            (read_revisited_descriptors(&gnd, db, qp)?, None, flags)
        } else if let (Some(root), None) = (&a.images, &a.db) {
            let cache = a.cache.as_ref().map_or_else(|| RevisitedCache::in_dataset(root), RevisitedCache::new);
            (describe_revisited_cached(&a.model.spec()?, &device, &gnd, root, &cache, describe_progress())?, None, flags)
        } else {
            bail!("give one of --ranks, --db DB.npy with --queries, --images ROOT with --weights, or --images ROOT with --db INDEX");
        };
        let distractors = match &a.distractors {
            Some(p) => read_distractors(p, d.dim)?,
            None => Vec::new(),
        };
        if a.out.reranking()? {
            // Full rankings in memory: meant for ROxford/RParis without +1M distractors.
            let mut db = [d.database.as_slice(), distractors.as_slice()].concat();
            if let Some((k, alpha)) = a.out.dba() {
                db = dolg::rerank::dba(&db, d.dim, k, alpha);
            }
            let n_db = db.len() / d.dim;
            let global = Rerank { spatial: None, ..rerank };
            let columns = scored_ranking(&db, d.dim, &d.queries, &vec![None; d.queries.len() / d.dim], &global);
            match (&rerank.spatial, locals) {
                (Some(sp), Some((db_locals, query_locals))) => {
                    if db_locals.iter().all(Option::is_none) {
                        bail!(
                            "--rerank spatial: {} stores no local features; build it with --local xfeat (or delg)",
                            a.db.as_ref().expect("an index").display()
                        );
                    }
                    let dim = db_locals.iter().flatten().next().map_or(0, |f| f.dim);
                    let queries: Vec<_> = query_locals.into_iter().map(|f| f.unwrap_or_else(|| dolg::model::LocalFeatures::empty(dim))).collect();
                    let protocol = a.rerank_protocol.map_or(RerankProtocol::default(), Into::into);
                    eprintln!("spatial verification of the top {} per query ({})", sp.k, protocol.name());
                    gnd.evaluate_spatial(&columns, n_db, &queries, &db_locals, sp, protocol)?
                }
                _ => gnd.evaluate(&RanksMatrix::from_columns(columns.into_iter().map(unscored).collect(), n_db)?)?,
            }
        } else {
            let database = Database::new(d.dim, [d.database.as_slice(), distractors.as_slice()])?;
            gnd.evaluate(&stream_positions(&database, &d.queries, &gnd.relevant(), DEFAULT_BLOCK_ROWS)?)?
        }
    };
    print_result(result.to_json(a.out.per_query), result.table(&name), a.out.json)?;
    Ok(ExitCode::SUCCESS)
}

fn with_no_locals((rows, dim): (Vec<f32>, usize)) -> (Vec<f32>, usize, Vec<Option<dolg::model::LocalFeatures>>) {
    let n = rows.len() / dim.max(1);
    (rows, dim, vec![None; n])
}

fn groups(a: GroupsArgs) -> anyhow::Result<ExitCode> {
    if a.images.len() != a.groups.len() || !(a.db.is_empty() || a.db.len() == a.groups.len()) {
        bail!(
            "give one --images (and one --db, if any) per --groups, in the same order: {} --groups, {} --images, {} --db",
            a.groups.len(),
            a.images.len(),
            a.db.len()
        );
    }
    let device = a.run.init()?;
    let extractor = if a.db.is_empty() { Some(a.model.extractor(device.clone())?) } else { None };
    let mut sources = Vec::new();
    for (i, (groups, images)) in a.groups.iter().zip(&a.images).enumerate() {
        let (value, table, map) = groups_source(&a, groups, images, a.db.get(i), extractor.as_ref(), &device)?;
        sources.push((source_name(groups, a.groups.len()), value, table, map));
    }
    if let [(_, value, table, _)] = &sources[..] {
        print_result(value.clone(), table.clone(), a.out.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mean = sources.iter().map(|s| s.3).sum::<f64>() / sources.len() as f64;
    let mut table: String = sources.iter().map(|s| s.2.clone()).collect();
    table += &format!(">> mean over {} sources: mAP: {:.2}\n", sources.len(), mean * 100.0);
    let value = json!({
        "sources": sources.iter().map(|(name, value, _, _)| json!({"source": name, "result": value})).collect::<Vec<_>>(),
        "mean_map": mean * 100.0,
    });
    print_result(value, table, a.out.json)?;
    Ok(ExitCode::SUCCESS)
}

/// A source's name: the folder of its groups CSV when several are scored (a corpus keeps
/// `SOURCE/groups.csv`), else the CSV's stem as before.
fn source_name(groups: &Path, n_sources: usize) -> String {
    let parent = groups.parent().and_then(|p| p.file_name()).filter(|_| n_sources > 1);
    parent.or(groups.file_stem()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// One source of `dolg eval groups`: (JSON, table, mAP as a fraction).
fn groups_source(
    a: &GroupsArgs,
    groups: &Path,
    images: &Path,
    db: Option<&PathBuf>,
    extractor: Option<&Extractor>,
    device: &Device,
) -> anyhow::Result<(serde_json::Value, String, f64)> {
    let gt = GroupsGt::load(groups)?;
    for g in gt.singleton_groups() {
        eprintln!("warning: {}: group '{g}' has a single image; its query has no positives and is skipped", groups.display());
    }
    // Spatial settings not given follow the index's local features (as `dolg search`).
    let mut defaults = SpatialRerank::default();
    let (rows, dim, locals) = match (db, extractor) {
        #[cfg(feature = "postgres")]
        (Some(db), _) if db.to_str().is_some_and(dolg::index::is_postgres_url) => {
            let c = dolg::collection::postgres::PgCollection::open(db.to_str().expect("checked"), OpenMode::Read, device)?;
            defaults = c.spatial_rerank_defaults();
            dolg::eval::rows_from_pg(&c, images, &gt.images)?
        }
        (Some(db), _) if db.is_dir() => {
            let c = Collection::open(db, OpenMode::Read, device)?;
            defaults = c.spatial_rerank_defaults();
            rows_from_collection(&c, images, &gt.images)?
        }
        (Some(db), _) => with_no_locals(rows_by_name(db, images, &gt.images)?),
        (None, Some(x)) => with_no_locals(describe_groups(x, &gt, images, describe_progress())?),
        (None, None) => unreachable!("an extractor is made when no --db is given"),
    };
    let rerank = a.out.rerank_for(defaults)?;
    if rerank.spatial.is_some() && locals.iter().all(Option::is_none) {
        bail!("--rerank spatial needs local features: give --db with an index built over --images with --local xfeat");
    }
    let result = if rerank.spatial.is_some() {
        gt.evaluate_spatial(&rows, dim, a.out.dba(), &rerank, &locals)?
    } else if a.out.reranking()? {
        gt.evaluate_reranked(&rows, dim, a.out.dba(), &rerank)?
    } else {
        gt.evaluate_descriptors(&rows, dim)?
    };
    let name = source_name(groups, a.groups.len());
    let mut value = result.to_json(a.out.per_query);
    if a.out.per_query {
        value["queries"] = json!(gt.queries().iter().map(|&i| gt.images[i].clone()).collect::<Vec<_>>());
    }
    Ok((value, result.table(&name), result.map))
}
