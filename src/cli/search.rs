//! `dolg search`: argument parsing and output formatting over [`Collection`] searches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use dolg::collection::{write_hits_npy, Collection, Filter, NamedHit, OpenMode, Query, SearchRequest};
use dolg::descriptors::read_matrix;
use dolg::preprocess::CropBox;
use dolg::rerank::RerankSpec;
use serde_json::json;

use super::RunArgs;

#[derive(Args, Debug)]
#[command(
    after_help = "QUERIES\n  An image path that is itself in the index uses its stored descriptor (no model needed) and is left out of its own results;\n  any other image is described with the index's model (its weights must still be where the index was built, or pass --weights).\n  --vectors Q.npy searches with precomputed descriptors, one query per row.\n\n\
RANGE QUERIES\n  --k 0 --min-score S returns every entry scoring at least S (exact, whatever the index kind), best first.\n\n\
FILTERS (--where EXPR, repeatable; filtering comes before ranking, so K results come back when K entries pass)\n\
  folder = trips/japan    in that folder or below it (!= for the rest)      name = a/b.jpg   exactly that entry (!= for the rest)\n\
  name ~ IMG_*.jpg        file name matches the glob; a glob with / matches the whole name (!~ for the rest)\n\
  taken >= 2024-06-01     date taken (EXIF, else the file's time); = 2024-06 is all of June; <, <=, >, >=, =, != on YYYY[-MM[-DD[ HH:MM[:SS]]]]\n\
  camera ~ *iphone*       make and model, ignoring case (= for exactly)   near 48.86,2.35 5km   GPS position within 5 km (or 500m)\n\
  width >= 1000   height < 800   pixels >= 12M   filesize < 2MB   (the upright photo; file size in B, kB, MB, GB, KiB, MiB, GiB)\n\
  Names are paths relative to the index's root. Quote a value ('...') to keep spaces at its ends. Metadata is read when a\n\
  photo is indexed; an entry without a field (no GPS, an imported vector) passes no condition on it.\n\n\
SPATIAL RE-RANKING (--rerank spatial)\n  The top --rerank-k (100) global results are verified with the local features the index stores (index build --local) and\n  re-ordered with their RANSAC inliers. The defaults follow the index's local features:\n    xfeat  mutual nearest neighbours under distance 0.99, homography, 8 px; ordered by global score + 2 x the evidence of the\n           inliers beyond 25 (what unrelated photos reach by chance), so a result only moves up: chosen leave-one-source-out\n           on five sources of real photos, +0.0 to +18.7 mAP over global only on each (docs/quality.md)\n    delg   the DOLG authors' DELG evaluation settings: nearest neighbour under distance 0.99, no mutual check, homography,\n           20 px, ordered by inliers (the original DELG paper fits an affine model: --ransac affine)\n  --matcher, --min-inliers, --spatial-weight, --mutual / --no-mutual, --match-ratio, --ransac and --ransac-px override them.\n\n\
JSON (--json)\n  {\"queries\": [{\"query\": <path or row number>, \"results\": [{\"name\": <indexed path or imported name>, \"score\": <float>, \"inliers\": <spatial only>}, ...]}, ...]}"
)]
pub struct SearchArgs {
    /// Index directory, or PostgreSQL shards: `postgres://...` URLs, comma-separated (see
    /// `dolg index build --help`).
    #[arg(long, value_name = "DIR|URLS")]
    pub db: PathBuf,
    /// PostgreSQL collections: when shards do not answer, search the others and say which
    /// failed (stderr; `failed_shards` in --json) instead of failing.
    #[arg(long)]
    pub allow_partial: bool,
    /// Query images.
    #[arg(value_name = "QUERY_IMAGE")]
    pub queries: Vec<PathBuf>,
    /// Query descriptors [N, D] instead of images.
    #[arg(long, value_name = "Q.npy", conflicts_with = "queries")]
    pub vectors: Option<PathBuf>,
    /// Results per query; 0 with --min-score returns every entry scoring at least that (a range query).
    #[arg(long, default_value_t = dolg::collection::DEFAULT_K)]
    pub k: usize,
    /// Drop results scoring below this cosine similarity.
    #[arg(long, allow_negative_numbers = true, value_name = "S")]
    pub min_score: Option<f32>,
    /// Crop query images to this box first (x1,y1,x2,y2; int() truncation).
    #[arg(long, value_name = "X1,Y1,X2,Y2")]
    pub crop: Option<CropBox>,
    /// Search only entries meeting EXPR; repeat for several (all must hold). See FILTERS below.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Vec<Filter>,
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
    /// Training-free re-ranking (see `dolg::rerank`), applied in the order α-QE, SuperGlobal, spatial.
    #[command(flatten)]
    pub rerank: RerankSpec,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(a: SearchArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    #[cfg(feature = "postgres")]
    if let Some(url) = super::pg_url(&a.db) {
        return run_pg(&a, url, &device);
    }
    let mut c = Collection::open(&a.db, OpenMode::Read, &device)?;
    if let Some(ef) = a.ef {
        c.set_ef_search(ef);
    }
    if let Some(w) = &a.weights {
        c.use_weights(w.clone())?;
    }
    let range = a.k == 0;
    if range && a.min_score.is_none() {
        bail!("--k 0 asks for every entry scoring at least a score: give --min-score S");
    }
    let filter = a.filter.iter().cloned().fold(Filter::default(), Filter::and);
    let request = SearchRequest { k: a.k, min_score: a.min_score, crop: a.crop, filter, rerank: a.rerank.resolve(c.spatial_rerank_defaults())? };
    let results = queries(&a, |q| Ok(c.search(q, &request)?))?;
    let width = if range { results.2.iter().map(Vec::len).max().unwrap_or(0) } else { a.k.min(c.len()) };
    output::<()>(&a, results, width, &[], |name| c.path_of(name))
}

/// Run the query the arguments give (images or `--vectors`) through `search`; returns each
/// query's label and image with its results.
#[allow(clippy::type_complexity)]
fn queries(
    a: &SearchArgs,
    search: impl FnOnce(Query) -> anyhow::Result<Vec<Vec<NamedHit>>>,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<Option<PathBuf>>, Vec<Vec<NamedHit>>)> {
    Ok(match &a.vectors {
        Some(v) => {
            let (data, n, _) = read_matrix(v)?;
            let results = search(Query::Vectors(&data)).with_context(|| format!("searching with {}", v.display()))?;
            ((0..n).map(|i| json!(i)).collect(), vec![None; n], results)
        }
        None => {
            if a.queries.is_empty() {
                bail!("give query images or --vectors Q.npy");
            }
            let results = search(Query::Images(&a.queries))?;
            (a.queries.iter().map(|p| json!(p.display().to_string())).collect(), a.queries.iter().cloned().map(Some).collect(), results)
        }
    })
}

/// A search over PostgreSQL shards: the same request and output as a local one.
#[cfg(feature = "postgres")]
fn run_pg(a: &SearchArgs, url: &str, device: &burn::tensor::Device) -> anyhow::Result<ExitCode> {
    use dolg::collection::postgres::PgCollection;
    let mut c = PgCollection::open(url, OpenMode::Read, device)?;
    if let Some(ef) = a.ef {
        c.set_ef_search(ef);
    }
    if a.weights.is_some() {
        bail!("--weights applies to index folders; a PostgreSQL collection builds its recorded model");
    }
    if a.k == 0 && a.min_score.is_none() {
        bail!("--k 0 asks for every entry scoring at least a score: give --min-score S");
    }
    let filter = a.filter.iter().cloned().fold(Filter::default(), Filter::and);
    let rerank = a.rerank.resolve(c.spatial_rerank_defaults())?;
    let request = SearchRequest { k: a.k, min_score: a.min_score, crop: a.crop, filter, rerank };
    let mut failed = Vec::new();
    let results = queries(a, |q| {
        let r = c.search(q, &request, a.allow_partial)?;
        failed = r.failed;
        Ok(r.hits)
    })?;
    for f in &failed {
        eprintln!("warning: shard {} left out of the results: {}", f.shard, f.error);
    }
    // The widest result list (counting the entries would ask every shard again).
    let width = results.2.iter().map(Vec::len).max().unwrap_or(0);
    output(a, results, width, &failed, |name| c.path_of(name))
}

/// Print or write the results as the arguments ask (text, `--json`, `--out-npy`, `--html`).
#[allow(clippy::type_complexity)]
fn output<F: serde::Serialize>(
    a: &SearchArgs,
    (labels, paths, results): (Vec<serde_json::Value>, Vec<Option<PathBuf>>, Vec<Vec<NamedHit>>),
    width: usize,
    failed_shards: &[F],
    path_of: impl Fn(&str) -> PathBuf,
) -> anyhow::Result<ExitCode> {
    if a.json {
        let mut out = json!({"queries": labels.iter().zip(&results).map(|(q, hits)| json!({
            "query": q,
            "results": hits.iter().map(|h| match h.inliers {
                Some(n) => json!({"name": h.name, "score": h.score, "inliers": n}),
                None => json!({"name": h.name, "score": h.score}),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()});
        if !failed_shards.is_empty() {
            out["failed_shards"] = json!(failed_shards);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (q, hits) in labels.iter().zip(&results) {
            println!("{}", q.as_str().map_or_else(|| format!("query {q}"), str::to_owned));
            for (i, h) in hits.iter().enumerate() {
                match h.inliers {
                    Some(n) => println!("  {:>3}  {:.4}  {n:>4} inliers  {}", i + 1, h.score, h.name),
                    None => println!("  {:>3}  {:.4}  {}", i + 1, h.score, h.name),
                }
            }
        }
    }
    if let Some(prefix) = &a.out_npy {
        write_hits_npy(prefix, &results, width)?;
    }
    if let Some(html) = &a.html {
        // The page shows thumbnails, read from where each photo is on disk.
        let on_disk: Vec<Vec<NamedHit>> =
            results.iter().map(|hits| hits.iter().map(|h| NamedHit { name: path_of(&h.name).display().to_string(), ..h.clone() }).collect()).collect();
        super::report::write_html(html, &labels.into_iter().zip(paths).collect::<Vec<_>>(), &on_disk)?;
        eprintln!("wrote {}", html.display());
    }
    Ok(ExitCode::SUCCESS)
}
