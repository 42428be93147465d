//! `dolg search`: argument parsing and output formatting over [`Collection`] searches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use dolg::collection::{write_hits_npy, Collection, NamedHit, OpenMode, QueryExpansion, Rerank, SearchParams, SuperGlobal};
use dolg::descriptors::read_matrix;
use dolg::preprocess::CropBox;
use dolg::rerank::{SpatialOverrides, SpatialRerank};
use dolg::spatial::GeometricModel;
use serde_json::json;

use super::RunArgs;

#[derive(Args, Debug)]
#[command(
    after_help = "QUERIES\n  An image path that is itself in the index uses its stored descriptor (no model needed) and is left out of its own results;\n  any other image is described with the index's model (its weights must still be where the index was built, or pass --weights).\n  --vectors Q.npy searches with precomputed descriptors, one query per row.\n\n\
RANGE QUERIES\n  --k 0 --min-score S returns every entry scoring at least S (exact, whatever the index kind), best first.\n\n\
SPATIAL RE-RANKING (--rerank spatial)\n  The top --rerank-k (100) global results are verified with the local features the index stores (index build --local) and\n  re-ordered with their RANSAC inliers. The defaults follow the index's local features:\n    xfeat  mutual nearest neighbours under distance 0.99, homography, 8 px; ordered by global score + 2 x the evidence of the\n           inliers beyond 25 (what unrelated photos reach by chance), so a result only moves up: chosen leave-one-source-out\n           on five sources of real photos, +0.0 to +18.7 mAP over global only on each (docs/quality.md)\n    delg   the DOLG authors' DELG evaluation settings: nearest neighbour under distance 0.99, no mutual check, homography,\n           20 px, ordered by inliers (the original DELG paper fits an affine model: --ransac affine)\n  --matcher, --min-inliers, --spatial-weight, --mutual / --no-mutual, --match-ratio, --ransac and --ransac-px override them.\n\n\
JSON (--json)\n  {\"queries\": [{\"query\": <path or row number>, \"results\": [{\"name\": <indexed path or imported name>, \"score\": <float>, \"inliers\": <spatial only>}, ...]}, ...]}"
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
    /// Results per query; 0 with --min-score returns every entry scoring at least that (a range query).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Drop results scoring below this cosine similarity.
    #[arg(long, allow_negative_numbers = true, value_name = "S")]
    pub min_score: Option<f32>,
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
    pub rerank: RerankArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Training-free re-ranking (see `dolg::rerank`), applied in the order α-QE then SuperGlobal.
#[derive(Args, Debug, Clone)]
pub struct RerankArgs {
    /// α-query expansion with the top N results (Radenović et al. 2018); 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub qe: usize,
    /// α of α-QE: weights max(q·x, 0)^α (0 = average query expansion).
    #[arg(long, default_value_t = 3.0, value_name = "A")]
    pub qe_alpha: f32,
    /// Re-rank the top results (comma-separated, applied in this order): `superglobal` (Shao et
    /// al., ICCV 2023), `spatial` (local-feature matching + RANSAC on the top --rerank-k, as DELG;
    /// needs an index built with --local).
    #[arg(long, value_name = "METHOD", value_delimiter = ',', value_parser = ["superglobal", "spatial"])]
    pub rerank: Vec<String>,
    /// Spatial: global results verified [default: the index's local features' setting, 100 for
    /// DELG's].
    #[arg(long, value_name = "K")]
    pub rerank_k: Option<usize>,
    /// Spatial: inliers that count as no evidence (chance matches of unrelated photos)
    /// [default: the index's local features' setting, 0 for DELG's].
    #[arg(long, value_name = "N")]
    pub min_inliers: Option<usize>,
    /// Spatial: how verified results are ordered. A number W: by global score + W × evidence, the
    /// evidence m / (m + h) of the m inliers beyond --min-inliers (h = 50 for XFeat features) (a result only ever moves up, by
    /// at most W); `inliers`: by inlier count, the global order only breaking ties (the DELG
    /// authors'). [default: the index's local features' setting, `inliers` for DELG's].
    #[arg(long, value_name = "W|inliers", value_parser = parse_spatial_weight)]
    pub spatial_weight: Option<SpatialWeight>,
    /// Spatial: how putative matches are made: `mnn` (mutual nearest neighbours of the
    /// descriptors) or `lighterglue` (XFeat's learned matcher: XFeat features only, weights from
    /// `dolg fetch-weights lighterglue`, about 40 times slower a candidate; brings its own
    /// --min-inliers and --spatial-weight defaults)
    /// [default: mnn].
    #[arg(long, value_name = "mnn|lighterglue", value_parser = clap::value_parser!(dolg::spatial::Matcher))]
    pub matcher: Option<dolg::spatial::Matcher>,
    /// Spatial: putative matches by Lowe's ratio test with this ratio instead of the distance
    /// bound 0.99 (the DELG authors' evaluation setting).
    #[arg(long, value_name = "R")]
    pub match_ratio: Option<f64>,
    /// Spatial: keep only mutual nearest-neighbour matches (default for XFeat features).
    #[arg(long, conflicts_with = "no_mutual")]
    pub mutual: bool,
    /// Spatial: keep every query feature's nearest neighbour, mutual or not (default for DELG
    /// features).
    #[arg(long)]
    pub no_mutual: bool,
    /// Spatial: the transform RANSAC fits [default: homography].
    #[arg(long, value_enum)]
    pub ransac: Option<RansacModel>,
    /// Spatial: RANSAC inlier threshold in pixels: of the 640 px frame every photo is seen at for
    /// XFeat features (default 8), of the original photos for DELG's (default 20).
    #[arg(long, value_name = "PX")]
    pub ransac_px: Option<f64>,
    /// SuperGlobal: candidates re-ranked.
    #[arg(long, default_value_t = SuperGlobal::default().m, value_name = "M")]
    pub sg_m: usize,
    /// SuperGlobal: neighbours refining each candidate (the expanded query is the max over the top K+1).
    #[arg(long, default_value_t = SuperGlobal::default().k, value_name = "K")]
    pub sg_k: usize,
    /// SuperGlobal: weight of the neighbours.
    #[arg(long, default_value_t = SuperGlobal::default().beta, value_name = "B")]
    pub sg_beta: f32,
}

/// `--spatial-weight`: `Some(w)` for a number, `None` for `inliers`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialWeight(pub Option<f64>);

fn parse_spatial_weight(s: &str) -> Result<SpatialWeight, String> {
    dolg::spatial::parse_weight(s).map(SpatialWeight)
}

/// `--ransac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RansacModel {
    /// 8 degrees of freedom (the DELG authors').
    Homography,
    /// 6 degrees of freedom: faster, fewer degenerate fits on near-planar scenes.
    Affine,
}

impl RerankArgs {
    /// The re-ranking these flags ask for, spatial settings not given taken from the DELG
    /// authors' ([`dolg::spatial::SpatialParams::default`]). Prefer [`RerankArgs::rerank_for`] with the index's
    /// defaults.
    pub fn rerank(&self) -> Rerank {
        self.rerank_for(SpatialRerank::default())
    }

    /// The re-ranking these flags ask for, spatial settings not given on the command line taken
    /// from `defaults` (an index's: [`dolg::collection::Collection::spatial_rerank_defaults`]).
    pub fn rerank_for(&self, defaults: SpatialRerank) -> Rerank {
        let has = |m: &str| self.rerank.iter().any(|r| r == m);
        let given = SpatialOverrides {
            k: self.rerank_k,
            min_inliers: self.min_inliers,
            weight: self.spatial_weight.map(|w| w.0),
            matcher: self.matcher,
            match_ratio: self.match_ratio,
            mutual: (self.mutual || self.no_mutual).then_some(self.mutual),
            model: self.ransac.map(|r| match r {
                RansacModel::Homography => GeometricModel::Homography,
                RansacModel::Affine => GeometricModel::Affine,
            }),
            threshold_px: self.ransac_px,
        };
        let spatial = given.resolve(defaults);
        Rerank {
            qe: (self.qe > 0).then_some(QueryExpansion { n: self.qe, alpha: self.qe_alpha }),
            superglobal: has("superglobal").then_some(SuperGlobal { m: self.sg_m, k: self.sg_k, beta: self.sg_beta }),
            spatial: has("spatial").then_some(spatial),
        }
    }
}

pub fn run(a: SearchArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let mut c = Collection::open(&a.db, OpenMode::Read, &device)?;
    if let Some(ef) = a.ef {
        c.set_ef_search(ef);
    }
    if let Some(w) = &a.weights {
        c.use_weights(w.clone())?;
    }
    let range = a.k == 0;
    let min_score = match (range, a.min_score) {
        (true, None) => bail!("--k 0 asks for every entry above a score: give it with --min-score S"),
        (_, s) => s.unwrap_or(f32::MIN),
    };
    let params = SearchParams { k: a.k, min_score, crop: a.crop };
    let rerank = a.rerank.rerank_for(c.spatial_rerank_defaults());
    if range && !rerank.is_none() {
        bail!("--qe and --rerank apply to top-k searches, not to range queries (--k 0)");
    }
    let (labels, paths, results): (Vec<serde_json::Value>, Vec<Option<PathBuf>>, Vec<Vec<NamedHit>>) = match &a.vectors {
        Some(v) => {
            let (data, n, _) = read_matrix(v)?;
            let results = if range { c.range_search_vectors(&data, min_score) } else { c.search_vectors_reranked(&data, &params, &rerank) };
            ((0..n).map(|i| json!(i)).collect(), vec![None; n], results.with_context(|| format!("searching with {}", v.display()))?)
        }
        None => {
            if a.queries.is_empty() {
                bail!("give query images or --vectors Q.npy");
            }
            let results = if range { c.range_search_images(&a.queries, min_score, a.crop)? } else { c.search_images_reranked(&a.queries, &params, &rerank)? };
            (a.queries.iter().map(|p| json!(p.display().to_string())).collect(), a.queries.iter().cloned().map(Some).collect(), results)
        }
    };

    if a.json {
        let out = json!({"queries": labels.iter().zip(&results).map(|(q, hits)| json!({
            "query": q,
            "results": hits.iter().map(|h| match h.inliers {
                Some(n) => json!({"name": h.name, "score": h.score, "inliers": n}),
                None => json!({"name": h.name, "score": h.score}),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()});
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
        let width = if range { results.iter().map(Vec::len).max().unwrap_or(0) } else { a.k.min(c.len()) };
        write_hits_npy(prefix, &results, width)?;
    }
    if let Some(html) = &a.html {
        // The page shows thumbnails, read from where each photo is on disk.
        let on_disk: Vec<Vec<NamedHit>> =
            results.iter().map(|hits| hits.iter().map(|h| NamedHit { name: c.path_of(&h.name).display().to_string(), ..h.clone() }).collect()).collect();
        super::report::write_html(html, &labels.into_iter().zip(paths).collect::<Vec<_>>(), &on_disk)?;
        eprintln!("wrote {}", html.display());
    }
    Ok(ExitCode::SUCCESS)
}
