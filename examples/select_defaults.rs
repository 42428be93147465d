//! Chooses the spatial re-ranking and near-duplicate defaults by leave-one-source-out over a multi-source corpus
//! (`data/validation/*`, `../shared/data/landmarks-dev`), and prints the table the README quotes.
//! Run by `scripts/select_defaults.sh`, which builds one index per source first:
//!
//! ```text
//! cargo run --release --example select_defaults -- spatial IDX_ROOT SOURCE_DIR...
//! ```
//!
//! Each SOURCE_DIR holds `groups.csv` and `images/`; its index is `IDX_ROOT/<name>.idx` (built
//! with `--local xfeat` over `SOURCE_DIR/images`). Every source is scored against its own photos
//! (the protocol of `dolg eval groups`).
//!
//! The procedure, so that a default is a claim about photos nobody tuned on:
//! 1. per source, the global ranking and the inliers of each query against its top 100
//!    (the matcher's default verification, [`dolg::collection::local::spatial_defaults`];
//!    `SELECT_MATCHER=lighterglue` tries XFeat's learned matcher instead, `SELECT_K_MAX` lowers 100);
//! 2. the rule family: candidates ordered by global score + W × evidence of the inliers beyond
//!    a floor τ ([`dolg::spatial::rerank_order`]), or by inliers above τ (the authors' order).
//!    τ is not a free number: it is the q-quantile of the inliers of *unrelated* pairs (query and
//!    candidate from different groups) of the training sources, so it follows the matcher;
//! 3. a setting (q, W, half, K) is chosen on the training sources by the mean gain in mAP over
//!    global only, among the settings that lose at most 0.5 mAP on every training source;
//! 4. leave-one-source-out: each source is scored with the setting chosen on the others. The
//!    default is the setting chosen on all sources.
//!
//! `dedup IDX_ROOT SET_ROOT NAME...` does the same for `dolg dedup`: each source's labelled set
//! (`dedup_bench make-set-from`: edits of some photos among all the source's photos, indexed as
//! `IDX_ROOT/<NAME>-dedup.idx`, truth in `SET_ROOT/<NAME>/truth.tsv`) is scored by pairwise
//! precision, recall and F1 of the groups, and (threshold, min inliers, min inlier ratio, RANSAC
//! px) are chosen by mean F1 on the other sources, taking the highest threshold within
//! [`DEDUP_F1_SLACK`] of the best (each pair above it costs a check; the cross-source table it
//! prints says how many pairs of unrelated photos pass a threshold); also the threshold alone,
//! for indexes without local features. `DEDUP_KP=N` checks each photo's best N keypoints
//! (default: the product's), `DEDUP_BY_THRESHOLD=1` prints the best setting per threshold,
//! `DEDUP_DEBUG=1` lists the false pairs the default keeps, `DEDUP_DUMP=DIR` writes every
//! candidate pair with its checks to `DIR/<source>.tsv`.

use std::path::{Path, PathBuf};

use dolg::collection::local::spatial_defaults;
use dolg::collection::{Collection, OpenMode};
use dolg::eval::{rows_from_collection, GroupsGt, RanksMatrix};
use dolg::model::LocalFeatures;
use dolg::spatial::{rerank_order, verify_many, SpatialParams};

/// The most candidates any setting verifies (`SELECT_K_MAX` lowers it: LighterGlue costs about
/// 85 ms a pair on 2 threads).
fn k_max() -> usize {
    std::env::var("SELECT_K_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}
const KS: [usize; 5] = [10, 20, 30, 50, 100];

/// The matcher under test: `SELECT_MATCHER=mnn|lighterglue` (default mnn).
fn matcher() -> dolg::spatial::Matcher {
    std::env::var("SELECT_MATCHER").ok().map_or(dolg::spatial::Matcher::Mnn, |m| m.parse().unwrap())
}

/// XFeat's verification with the matcher under test.
fn base_params() -> SpatialParams {
    SpatialParams { matcher: matcher(), ..spatial_defaults("xfeat") }
}
const QUANTILES: [f64; 6] = [0.5, 0.9, 0.95, 0.99, 0.995, 1.0];
/// `None`: the authors' order (inliers first).
const WEIGHTS: [Option<f64>; 11] = [Some(0.02), Some(0.05), Some(0.1), Some(0.15), Some(0.2), Some(0.3), Some(0.5), Some(1.0), Some(2.0), Some(5.0), None];
const HALVES: [f64; 4] = [5.0, 10.0, 25.0, 50.0];
/// A setting may lose at most this much mAP (points) on any training source.
const MAX_LOSS: f64 = 0.5;

struct Source {
    name: String,
    gt: GroupsGt,
    /// Per query (GroupsGt::queries order): the global ranking with scores, best first.
    global: Vec<Vec<(usize, f32)>>,
    /// Per query: inliers of its top [`k_max`].
    inliers: Vec<Vec<usize>>,
    /// Inliers of every verified (query, candidate) pair of different groups.
    unrelated: Vec<usize>,
    global_map: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Setting {
    quantile: f64,
    weight: Option<f64>,
    half: f64,
    k: usize,
}

impl Setting {
    fn params(&self, base: &SpatialParams, min_inliers: usize) -> SpatialParams {
        SpatialParams { min_inliers, weight: self.weight, half_inliers: self.half, ..*base }
    }
    fn describe(&self, tau: usize) -> String {
        let w = self.weight.map_or("inliers".to_string(), |w| format!("{w}"));
        format!("K {}, tau {tau} (q {}), weight {w}, half {}", self.k, self.quantile, self.half)
    }
}

fn load(idx_root: &Path, dir: &Path) -> Source {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let gt = GroupsGt::load(dir.join("groups.csv")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let idx = idx_root.join(format!("{name}.idx"));
    let device = burn::tensor::Device::flex();
    let c = Collection::open(&idx, OpenMode::Read, &device).unwrap_or_else(|e| panic!("{}: {e}", idx.display()));
    let extractor = c.local_config().map(|l| l.extractor.clone()).unwrap_or_else(|| panic!("{}: no local features", idx.display()));
    assert_eq!(extractor, "xfeat", "{}: the selection is for XFeat features", idx.display());
    let base = base_params();
    let (rows, dim, locals) = rows_from_collection(&c, &dir.join("images"), &gt.images).unwrap();
    let global = gt.scored_columns(&rows, dim, None, &Default::default());
    let ranks = |cols: Vec<Vec<usize>>| RanksMatrix::from_columns(cols, gt.n_images()).unwrap();
    let global_map = gt.evaluate(&ranks(global.iter().map(|c| c.iter().map(|&(r, _)| r).collect()).collect())).unwrap().map;
    let empty = LocalFeatures::empty(64);
    let queries = gt.queries();
    let mut inliers = Vec::new();
    let mut unrelated = Vec::new();
    for (col, &qi) in global.iter().zip(&queries) {
        let q = locals[qi].as_ref().unwrap_or(&empty);
        let cands: Vec<&LocalFeatures> = col[..k_max().min(col.len())].iter().map(|&(r, _)| locals[r].as_ref().unwrap_or(&empty)).collect();
        let n: Vec<usize> = verify_many(q, &cands, &base).unwrap().iter().map(|v| v.inliers).collect();
        for (&(r, _), &m) in col.iter().zip(&n) {
            if gt.group[r].is_none() || gt.group[r] != gt.group[qi] {
                unrelated.push(m);
            }
        }
        inliers.push(n);
    }
    eprintln!("{name}: {} images, {} queries, global mAP {:.2}", gt.n_images(), queries.len(), global_map * 100.0);
    Source { name, gt, global, inliers, unrelated, global_map }
}

fn quantile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The floor τ a quantile gives on these sources' unrelated pairs.
fn tau(sources: &[&Source], q: f64) -> usize {
    let mut all: Vec<usize> = sources.iter().flat_map(|s| s.unrelated.iter().copied()).collect();
    all.sort_unstable();
    quantile(&all, q)
}

/// mAP (fraction) of `s` re-ranked with `params` over the top `k`.
fn map_with(s: &Source, params: &SpatialParams, k: usize) -> f64 {
    let cols = s
        .global
        .iter()
        .zip(&s.inliers)
        .map(|(col, n)| {
            let k = k.min(col.len()).min(n.len());
            let g: Vec<f32> = col[..k].iter().map(|&(_, sc)| sc).collect();
            let mut out: Vec<usize> = rerank_order(&g, &n[..k], params).into_iter().map(|j| col[j].0).collect();
            out.extend(col[k..].iter().map(|&(r, _)| r));
            out
        })
        .collect();
    s.gt.evaluate(&RanksMatrix::from_columns(cols, s.gt.n_images()).unwrap()).unwrap().map
}

fn settings() -> Vec<Setting> {
    let mut out = Vec::new();
    for &k in KS.iter().filter(|&&k| k <= k_max()) {
        for &quantile in &QUANTILES {
            for &weight in &WEIGHTS {
                for &half in if weight.is_some() { &HALVES[..] } else { &HALVES[..1] } {
                    out.push(Setting { quantile, weight, half, k });
                }
            }
        }
    }
    out
}

/// The setting chosen on `train` and its τ.
fn choose(train: &[&Source], base: &SpatialParams) -> (Setting, usize) {
    let mut best: Option<(bool, f64, Setting, usize)> = None;
    for s in settings() {
        let t = tau(train, s.quantile);
        let p = s.params(base, t);
        let gains: Vec<f64> = train.iter().map(|src| (map_with(src, &p, s.k) - src.global_map) * 100.0).collect();
        let safe = gains.iter().all(|&g| g >= -MAX_LOSS);
        let mean = gains.iter().sum::<f64>() / gains.len() as f64;
        let key = (safe, if safe { mean } else { gains.iter().copied().fold(f64::INFINITY, f64::min) });
        if best.as_ref().is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
            best = Some((key.0, key.1, s, t));
        }
    }
    let b = best.expect("at least one setting");
    (b.2, b.3)
}

fn spatial(idx_root: &Path, dirs: &[PathBuf]) {
    let sources: Vec<Source> = dirs.iter().map(|d| load(idx_root, d)).collect();
    let base = base_params();
    let old = SpatialParams { min_inliers: 0, weight: None, ..base };
    println!("## Matcher {}; unrelated pairs: inliers of a query against top-{} candidates of other groups\n", base.matcher.name(), k_max());
    println!("| source | pairs | median | q0.9 | q0.95 | q0.99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for s in &sources {
        let mut u = s.unrelated.clone();
        u.sort_unstable();
        let q = |x| quantile(&u, x);
        println!("| {} | {} | {} | {} | {} | {} | {} |", s.name, u.len(), q(0.5), q(0.9), q(0.95), q(0.99), q(1.0));
    }
    let all: Vec<&Source> = sources.iter().collect();
    let (chosen, t) = choose(&all, &base);
    println!("\n## Default chosen on all sources: {}\n", chosen.describe(t));
    println!("## Leave-one-source-out (mAP; each source scored with the setting chosen on the others)\n");
    println!("| source | queries | global only | spatial, old default (tau 0, by inliers, K 100) | spatial, held-out choice | gain | the held-out choice | spatial, final default |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|");
    let mut sums = [0.0f64; 4];
    for (i, s) in sources.iter().enumerate() {
        let train: Vec<&Source> = sources.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, s)| s).collect();
        let (held, ht) = choose(&train, &base);
        let loso = map_with(s, &held.params(&base, ht), held.k);
        let olds = map_with(s, &old, k_max());
        let fin = map_with(s, &chosen.params(&base, t), chosen.k);
        let row = [s.global_map, olds, loso, fin];
        sums.iter_mut().zip(row).for_each(|(a, v)| *a += v);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:+.2} | {} | {:.2} |",
            s.name,
            s.global.len(),
            s.global_map * 100.0,
            olds * 100.0,
            loso * 100.0,
            (loso - s.global_map) * 100.0,
            held.describe(ht),
            fin * 100.0
        );
    }
    let n = sources.len() as f64;
    println!(
        "| **mean** | | {:.2} | {:.2} | {:.2} | {:+.2} | | {:.2} |",
        sums[0] / n * 100.0,
        sums[1] / n * 100.0,
        sums[2] / n * 100.0,
        (sums[2] - sums[0]) / n * 100.0,
        sums[3] / n * 100.0
    );
    println!("\n## The final rule against K (mean mAP over sources)\n");
    let ks: Vec<usize> = KS.iter().copied().filter(|&k| k <= k_max()).collect();
    println!("| K | {} |", ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}|", ks.iter().map(|_| "---:").collect::<Vec<_>>().join("|"));
    let per_k: Vec<String> =
        ks.iter().map(|&k| format!("{:.2}", sources.iter().map(|s| map_with(s, &chosen.params(&base, t), k)).sum::<f64>() / n * 100.0)).collect();
    println!("| mAP | {} |", per_k.join(" | "));
}

/// (inliers, matches) of a pair under each of [`DEDUP_PX`].
type Checks = Vec<Option<(usize, usize)>>;

/// One source's labelled dedup set: every pair of photos scoring at least [`DEDUP_FLOOR`], with
/// its local verification, and the truth (which original each photo comes from).
struct DedupSet {
    name: String,
    n: usize,
    /// (row a, row b, global score, (inliers, matches) under each of [`DEDUP_PX`]); `None`
    /// where a photo has no features.
    pairs: Vec<(usize, usize, f32, Checks)>,
    truth: Vec<String>,
    positives: u64,
    /// The global descriptors, row-major (for the cross-source candidate rate).
    vectors: Vec<f32>,
}

const DEDUP_FLOOR: f32 = 0.80;
/// RANSAC thresholds tried for the local check: an edited copy maps pixel to pixel, another
/// photo from nearly the same spot only up to parallax.
const DEDUP_PX: [f64; 3] = [8.0, 3.0, 1.5];

fn n_pairs(sizes: impl Iterator<Item = usize>) -> u64 {
    sizes.map(|s| (s as u64) * (s as u64).saturating_sub(1) / 2).sum()
}

fn load_dedup(idx_root: &Path, set_root: &Path, name: &str) -> DedupSet {
    let idx = idx_root.join(format!("{name}-dedup.idx"));
    let device = burn::tensor::Device::flex();
    let c = Collection::open(&idx, OpenMode::Read, &device).unwrap_or_else(|e| panic!("{}: {e}", idx.display()));
    let truth_file = set_root.join(name).join("truth.tsv");
    let by_file: std::collections::HashMap<String, String> = std::fs::read_to_string(&truth_file)
        .unwrap_or_else(|e| panic!("{}: {e}", truth_file.display()))
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, g)| (f.to_owned(), g.to_owned()))
        .collect();
    let store = c.index().store();
    let truth: Vec<String> = store.rows().iter().map(|r| by_file[Path::new(&r.name).file_name().unwrap().to_str().unwrap()].clone()).collect();
    let mut sizes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for t in &truth {
        *sizes.entry(t).or_default() += 1;
    }
    let positives = n_pairs(sizes.values().copied());
    let found = dolg::collection::self_join(store.vectors(), store.dim(), None, DEDUP_FLOOR, dolg::collection::DEFAULT_BLOCK_ROWS);
    let extractor = c.local_config().map(|l| l.extractor.clone()).unwrap_or_else(|| panic!("{}: no local features", idx.display()));
    let t0 = std::time::Instant::now();
    let base = spatial_defaults(&extractor);
    // The verifications are cached beside the index (they take minutes; the grid takes seconds).
    let kp: usize = std::env::var("DEDUP_KP").ok().map_or(dolg::collection::DedupVerify::default().keypoints, |v| v.parse().unwrap());
    let cache = idx_root.join(format!("{name}-dedup-checks-{kp}.json"));
    let checked: Vec<Checks> = match std::fs::read(&cache).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        Some(c) => c,
        None => {
            let c: Vec<Checks> =
                DEDUP_PX.iter().map(|&px| c.verify_pairs(&found, &dolg::spatial::SpatialParams { threshold_px: px, ..base }, kp).unwrap()).collect();
            std::fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
            c
        }
    };
    eprintln!(
        "{name}: {} photos, {} pairs >= {DEDUP_FLOOR} verified in {:.2} s ({:.1} ms per pair, {} threads)",
        truth.len(),
        found.len(),
        t0.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64() * 1e3 / (found.len() * DEDUP_PX.len()).max(1) as f64,
        rayon::current_num_threads()
    );
    let pairs: Vec<(usize, usize, f32, Checks)> = found.iter().enumerate().map(|(i, p)| (p.a, p.b, p.score, checked.iter().map(|c| c[i]).collect())).collect();
    if let Some(dir) = std::env::var_os("DEDUP_DUMP") {
        use std::fmt::Write as _;
        let mut out = String::new();
        for p in &pairs {
            let (ra, rb) = (&store.rows()[p.0].name, &store.rows()[p.1].name);
            let _ = writeln!(out, "{ra}\t{rb}\t{}\t{:.4}\t{:?}", truth[p.0] == truth[p.1], p.2, p.3);
        }
        std::fs::write(Path::new(&dir).join(format!("{name}.tsv")), out).unwrap();
    }
    DedupSet { name: name.to_owned(), n: truth.len(), pairs, truth, positives, vectors: store.vectors().to_vec() }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct DedupSetting {
    threshold: f32,
    /// (min inliers, min inlier ratio, index into [`DEDUP_PX`]); `None`: the global score alone.
    verify: Option<(usize, f64, usize)>,
}

impl DedupSetting {
    fn describe(&self) -> String {
        match self.verify {
            None => format!("threshold {:.3}, no local check", self.threshold),
            Some((m, r, px)) => format!("threshold {:.3}, >= {m} inliers at {} px, ratio >= {r}", self.threshold, DEDUP_PX[px]),
        }
    }
}

/// (precision, recall, F1) of the grouping `s` makes on `d`, over pairs of photos.
fn dedup_score(d: &DedupSet, s: &DedupSetting) -> (f64, f64, f64) {
    let kept: Vec<dolg::collection::ScoredPair> = d
        .pairs
        .iter()
        .filter(|p| p.2 >= s.threshold - dolg::collection::SCORE_TOLERANCE)
        .filter(|p| match s.verify.map(|(m, r, px)| (m, r, p.3[px])) {
            Some((m, r, Some((inl, mat)))) => inl >= m && inl as f64 >= r * mat as f64,
            _ => true,
        })
        .map(|p| dolg::collection::ScoredPair { a: p.0, b: p.1, score: p.2 })
        .collect();
    let groups = dolg::collection::components(d.n, &kept);
    let predicted = n_pairs(groups.iter().map(Vec::len));
    let mut tp = 0;
    for g in &groups {
        let mut by: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for &m in g {
            *by.entry(d.truth[m].as_str()).or_default() += 1;
        }
        tp += n_pairs(by.values().copied());
    }
    let p = if predicted == 0 { 1.0 } else { tp as f64 / predicted as f64 };
    let r = tp as f64 / d.positives.max(1) as f64;
    (p, r, if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) })
}

fn dedup_settings(verified: bool) -> Vec<DedupSetting> {
    let thresholds = (0..=38).map(|i| DEDUP_FLOOR + 0.005 * i as f32);
    let mut out = Vec::new();
    for t in thresholds {
        if !verified {
            out.push(DedupSetting { threshold: t, verify: None });
            continue;
        }
        for px in 0..DEDUP_PX.len() {
            for m in [8, 15, 20, 30, 40, 60] {
                for r in [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
                    out.push(DedupSetting { threshold: t, verify: Some((m, r, px)) });
                }
            }
        }
    }
    out
}

/// Mean F1 a setting may give up for a higher threshold: every pair above the threshold is
/// checked with local features, and a collection of unrelated photos has ten times as many pairs
/// above 0.90 as above 0.92 (the cross-source table), so among settings this close to the best
/// the one that checks the fewest pairs is taken.
const DEDUP_F1_SLACK: f64 = 0.01;

/// The setting chosen on `train`: the highest threshold among those within [`DEDUP_F1_SLACK`]
/// of the best mean F1 (with the local check; the best alone without), and at that threshold the best mean F1 (ties: the grid's first, the
/// loosest check).
fn choose_dedup(train: &[&DedupSet], verified: bool) -> DedupSetting {
    let scored: Vec<(f64, DedupSetting)> =
        dedup_settings(verified).into_iter().map(|s| (train.iter().map(|d| dedup_score(d, &s).2).sum::<f64>() / train.len() as f64, s)).collect();
    let best = scored.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    // Without the check a pair costs nothing beyond the join: no reason to give up F1.
    let slack = if verified { DEDUP_F1_SLACK } else { 0.0 };
    let threshold = scored.iter().filter(|s| s.0 >= best - slack).map(|s| s.1.threshold).fold(f32::MIN, f32::max);
    let mut pick: Option<&(f64, DedupSetting)> = None;
    for s in scored.iter().filter(|s| s.1.threshold == threshold) {
        if pick.is_none_or(|p| s.0 > p.0) {
            pick = Some(s);
        }
    }
    pick.expect("a setting").1
}

/// Scores of every pair of photos from different sources: unrelated photos, what a threshold
/// lets through in a large collection (each becomes a pair to verify). Sorted ascending.
fn cross_source_scores(sets: &[DedupSet]) -> Vec<f32> {
    let dim = sets[0].vectors.len() / sets[0].n.max(1);
    let mut out = Vec::new();
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            for x in a.vectors.chunks_exact(dim) {
                out.extend(b.vectors.chunks_exact(dim).map(|y| dolg::rerank::dot(x, y)));
            }
        }
    }
    out.sort_by(f32::total_cmp);
    out
}

fn dedup(idx_root: &Path, set_root: &Path, names: &[String]) {
    let sets: Vec<DedupSet> = names.iter().map(|n| load_dedup(idx_root, set_root, n)).collect();
    let cross = cross_source_scores(&sets);
    println!("\n## Unrelated pairs a threshold lets through ({} pairs of photos from different sources)\n", cross.len());
    println!("| threshold | fraction | pairs to verify among 100,000 such photos |");
    println!("|---:|---:|---:|");
    for t in (0..=38).map(|i| DEDUP_FLOOR + 0.005 * i as f32).step_by(2) {
        let above = cross.len() - cross.partition_point(|&s| s < t - dolg::collection::SCORE_TOLERANCE);
        let f = above as f64 / cross.len() as f64;
        println!("| {t:.3} | {f:.2e} | {:.0} |", f * 1e5 * (1e5 - 1.0) / 2.0);
    }
    let all: Vec<&DedupSet> = sets.iter().collect();
    if std::env::var_os("DEDUP_BY_THRESHOLD").is_some() {
        for t in (0..=38).map(|i| DEDUP_FLOOR + 0.005 * i as f32) {
            let best = dedup_settings(true)
                .into_iter()
                .filter(|s| (s.threshold - t).abs() < 1e-6)
                .map(|s| (all.iter().map(|d| dedup_score(d, &s).2).sum::<f64>() / all.len() as f64, s))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            println!("threshold {t:.3}: best mean F1 {:.3} with {}", best.0, best.1.describe());
        }
    }
    for verified in [false, true] {
        let chosen = choose_dedup(&all, verified);
        let label = if verified { "global score + local check" } else { "global score alone" };
        println!("\n## Dedup, {label}: default chosen on all sources: {}\n", chosen.describe());
        println!("| source | photos | true pairs | held-out choice | precision | recall | F1 | F1 at the final default |");
        println!("|---|---:|---:|---|---:|---:|---:|---:|");
        let mut sum = [0.0f64; 4];
        for (i, d) in sets.iter().enumerate() {
            let train: Vec<&DedupSet> = sets.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, s)| s).collect();
            let held = choose_dedup(&train, verified);
            let (p, r, f) = dedup_score(d, &held);
            let fin = dedup_score(d, &chosen).2;
            [p, r, f, fin].iter().zip(sum.iter_mut()).for_each(|(v, a)| *a += v);
            println!("| {} | {} | {} | {} | {p:.3} | {r:.3} | {f:.3} | {fin:.3} |", d.name, d.n, d.positives, held.describe());
        }
        let n = sets.len() as f64;
        println!("| **mean** | | | | {:.3} | {:.3} | {:.3} | {:.3} |", sum[0] / n, sum[1] / n, sum[2] / n, sum[3] / n);
        if std::env::var_os("DEDUP_DEBUG").is_some() {
            for d in &sets {
                for p in &d.pairs {
                    let one =
                        DedupSet { name: String::new(), n: d.n, pairs: vec![p.clone()], truth: d.truth.clone(), positives: d.positives, vectors: Vec::new() };
                    let kept = dedup_score(&one, &chosen).0 < 1.0;
                    if kept {
                        eprintln!("false pair {} {} {} {:.4} {:?}", d.name, d.truth[p.0], d.truth[p.1], p.2, p.3);
                    }
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("spatial") if args.len() >= 4 => spatial(Path::new(&args[1]), &args[2..].iter().map(PathBuf::from).collect::<Vec<_>>()),
        Some("dedup") if args.len() >= 5 => dedup(Path::new(&args[1]), Path::new(&args[2]), &args[3..]),
        _ => {
            eprintln!("usage: select_defaults spatial IDX_ROOT SOURCE_DIR SOURCE_DIR... | dedup IDX_ROOT SET_ROOT NAME NAME...");
            std::process::exit(2);
        }
    }
}
