//! `dolg dedup`: groups of near-duplicate photos ([`Collection::duplicates`]) as text, JSON, CSV
//! or a self-contained HTML page of thumbnails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use dolg::collection::{Collection, DedupMethod, DedupOptions, DedupVerify, DuplicateGroup, OpenMode};
use dolg::index::LocalConfig;
use serde_json::json;

use super::report::{escape, short, thumbnail, THUMB};

#[derive(Args, Debug)]
#[command(
    after_help = "GROUPS\n  Two photos are near-duplicates when their descriptors' cosine similarity reaches the threshold; a group is a connected\n  component of those pairs, so A~B and B~C group A, B and C even if A and C score lower. Each group reports its weakest pair\n  (lowest similarity between any two members): below the threshold, the group was chained and deserves a closer look.\n\n\
THRESHOLD\n  Default: measured per model (MobileNetV2-GeM or DOLG) on re-encoded, resized, cropped and brightened copies of photos\n  among other photos of the same landmarks; the text output says which was used.\n\n\
VERIFY\n  When the index stores local features (`dolg index build --local xfeat`), every pair the global score finds is also matched\n  with them: it stays a duplicate only when one transform (RANSAC homography) maps at least 40 of the mutual matches of\n  each photo's best 256 keypoints to within 1.5 px (in the 640 px frame XFeat sees every photo at), which separates\n  edited copies of one picture from other photos of the same place, even from a step away. Chosen leave-one-source-out on\n  the validation corpus (docs/quality.md): F1 0.96 against 0.74 for the global score alone. Cost: about 0.3 ms per\n  candidate pair on 2 cores, only for pairs above the threshold (0.92 lets through about 1 in 1,400 pairs of unrelated\n  photos). An index whose XFeat features predate the fixed 640 px size is checked all the same, with a note that a rebuild\n  gives these figures. --no-verify keeps the global decision alone (and its own default threshold).\n\n\
METHOD\n  auto: the exact self-join up to 100,000 photos, the HNSW graph above (the index's own, or one built for the run).\n  exact: every pair, blocked (memory: one 1024x1024 tile per thread plus the pairs found).\n  graph: each photo's nearest neighbours from an HNSW graph (approximate: a missed pair can split a group).\n\n\
JSON (--json)\n  {\"threshold\", \"method\", \"entries\", \"groups\": [{\"members\": [names], \"pairs\": [{\"a\", \"b\", \"score\"}], \"best\", \"weakest\"}]}\n\
CSV (--csv)\n  group,name,best_score   (one row per member; group numbers from 1; best_score: the member's best score within its group)"
)]
pub struct DedupArgs {
    /// Index directory, or PostgreSQL shards (`postgres://...` URLs, comma-separated; every
    /// vector is read into this process and paired here).
    #[arg(long, value_name = "DIR|URLS")]
    pub db: PathBuf,
    /// Cosine similarity at which two photos count as near-duplicates (default: measured for the index's model).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// How pairs are found.
    #[arg(long, value_enum, default_value_t = DedupMethod::Auto)]
    pub method: DedupMethod,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV rows `group,name,best_score`.
    #[arg(long)]
    pub csv: bool,
    /// Also write a self-contained HTML page with each group's photos as thumbnails.
    #[arg(long, value_name = "PAGE.html")]
    pub html: Option<PathBuf>,
    /// HNSW graph: candidates examined per query (higher = better recall, slower).
    #[arg(long, value_name = "N")]
    pub ef: Option<usize>,
    /// Keep a pair only on its global score: skip the local-feature check that an index with
    /// local features (`--local xfeat`) otherwise applies to every pair.
    #[arg(long)]
    pub no_verify: bool,
    /// Local check: RANSAC inliers a pair needs [default: measured, see VERIFY].
    #[arg(long, value_name = "N", conflicts_with = "no_verify")]
    pub min_inliers: Option<usize>,
    /// Local check: the fraction of the putative matches the inliers must make [default: measured, see VERIFY].
    #[arg(long, value_name = "R", conflicts_with = "no_verify")]
    pub min_inlier_ratio: Option<f64>,
    /// Local check: reprojection error of an inlier, in pixels of the frame the features were found in [default: measured, see VERIFY].
    #[arg(long, value_name = "PX", conflicts_with = "no_verify")]
    pub inlier_px: Option<f64>,
    /// Local check: each photo's best keypoints matched [default: measured, see VERIFY].
    #[arg(long, value_name = "N", conflicts_with = "no_verify")]
    pub check_keypoints: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn method_name(m: DedupMethod) -> &'static str {
    match m {
        DedupMethod::Auto => "auto",
        DedupMethod::Exact => "exact",
        DedupMethod::Graph => "graph",
    }
}

/// The collection `dolg dedup` reads: a local index or PostgreSQL shards.
enum Target {
    Local(Collection),
    #[cfg(feature = "postgres")]
    Pg(dolg::collection::postgres::PgCollection),
}

impl Target {
    fn open(db: &Path) -> anyhow::Result<Self> {
        let device = dolg::kernels::device("cpu").map_err(anyhow::Error::msg)?;
        #[cfg(feature = "postgres")]
        if let Some(url) = db.to_str().filter(|d| dolg::index::is_postgres_url(d)) {
            return Ok(Target::Pg(dolg::collection::postgres::PgCollection::open(url, OpenMode::Read, &device)?));
        }
        Ok(Target::Local(Collection::open(db, OpenMode::Read, &device)?))
    }
    fn set_ef_search(&mut self, ef: usize) {
        match self {
            Target::Local(c) => c.set_ef_search(ef),
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.set_ef_search(ef),
        }
    }
    fn local_config(&self) -> Option<&LocalConfig> {
        match self {
            Target::Local(c) => c.local_config(),
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.store().meta().local.as_ref(),
        }
    }
    fn len(&self) -> anyhow::Result<usize> {
        Ok(match self {
            Target::Local(c) => c.len(),
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.count()?,
        })
    }
    fn model(&self) -> String {
        match self {
            Target::Local(c) => c.info().model,
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.store().meta().model.name.clone(),
        }
    }
    fn path_of(&self, name: &str) -> PathBuf {
        match self {
            Target::Local(c) => c.path_of(name),
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.path_of(name),
        }
    }
    fn default_threshold(&self, verified: bool) -> f32 {
        match self {
            Target::Local(c) => c.default_duplicate_threshold_for(verified),
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.default_duplicate_threshold_for(verified),
        }
    }
    fn duplicates(&self, threshold: f32, options: &DedupOptions) -> anyhow::Result<Vec<DuplicateGroup>> {
        Ok(match self {
            Target::Local(c) => c.duplicates(threshold, options)?,
            #[cfg(feature = "postgres")]
            Target::Pg(c) => c.duplicates(threshold, options)?,
        })
    }
}

pub fn run(a: DedupArgs) -> anyhow::Result<ExitCode> {
    dolg::runtime::set_threads(a.threads)?;
    let mut c = Target::open(&a.db)?;
    if let Some(ef) = a.ef {
        c.set_ef_search(ef);
    }
    let entries = c.len()?;
    if let Some(t) = a.threshold.filter(|t| !(-1.0..=1.0).contains(t)) {
        bail!("--threshold {t}: a cosine similarity lies between -1 and 1");
    }
    let method = dolg::collection::dedup::resolve_method(a.method, entries);
    let d = c.local_config().map_or_else(DedupVerify::default, |l| DedupVerify::defaults_for(&l.extractor));
    let verify = (!a.no_verify).then(|| DedupVerify {
        min_inliers: a.min_inliers.unwrap_or(d.min_inliers),
        min_ratio: a.min_inlier_ratio.unwrap_or(d.min_ratio),
        threshold_px: a.inlier_px.unwrap_or(d.threshold_px),
        keypoints: a.check_keypoints.unwrap_or(d.keypoints),
    });
    if let Some(r) = a.min_inlier_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
        bail!("--min-inlier-ratio {r}: a fraction of the matches lies between 0 and 1");
    }
    if let Some(px) = a.inlier_px.filter(|px| !(px.is_finite() && *px > 0.0)) {
        bail!("--inlier-px {px}: a reprojection error bound is a positive number of pixels");
    }
    if a.check_keypoints == Some(0) {
        bail!("--check-keypoints 0: matching needs at least one keypoint per photo (default {})", d.keypoints);
    }
    let verified = verify.is_some() && c.local_config().is_some();
    if verified && c.local_config().is_some_and(|l| l.extractor == "xfeat" && l.size.is_none()) {
        eprintln!(
            "note: {}'s XFeat features were extracted before photos were brought to one size (640 px); the local check's defaults were measured on features of that size, so build a new index (dolg index build --local xfeat --db NEW) for its measured accuracy",
            a.db.display()
        );
    }
    let (threshold, default) = match a.threshold {
        Some(t) => (t, false),
        None => (c.default_threshold(verified), true),
    };
    let groups = c.duplicates(threshold, &DedupOptions { method, verify, ..DedupOptions::default() })?;

    if a.json {
        let out = json!({
            "threshold": threshold,
            "verified": verified.then(|| verify.map(|v| json!({"min_inliers": v.min_inliers, "min_inlier_ratio": v.min_ratio, "inlier_px": v.threshold_px, "keypoints": v.keypoints}))).flatten(),
            "method": method_name(method),
            "entries": entries,
            "groups": groups.iter().map(|g| json!({
                "members": g.members,
                "pairs": g.pairs.iter().map(|p| json!({"a": p.a, "b": p.b, "score": p.score})).collect::<Vec<_>>(),
                "best": g.best,
                "weakest": g.weakest,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if a.csv {
        println!("group,name,best_score");
        for (i, g) in groups.iter().enumerate() {
            for (m, best) in g.members.iter().zip(g.member_best()) {
                println!("{},{},{best}", i + 1, csv_field(m));
            }
        }
    } else {
        print_text(entries, &c.model(), &groups, threshold, default, method, verified.then_some(verify).flatten());
    }
    if let Some(page) = &a.html {
        write_html(&|name| c.path_of(name), entries, page, &groups, threshold)?;
        eprintln!("wrote {}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(entries: usize, model: &str, groups: &[DuplicateGroup], threshold: f32, default: bool, method: DedupMethod, verify: Option<DedupVerify>) {
    let how = if default { format!("threshold {threshold:.3} (the default for {model})") } else { format!("threshold {threshold:.3}") };
    let method = match method {
        DedupMethod::Graph => "approximate: nearest neighbours from an HNSW graph",
        _ => "exact: every pair compared",
    };
    let check = verify.map_or_else(String::new, |v| {
        format!(
            ", each pair checked with local features (>= {} inliers within {} px among the matches of the best {} keypoints, >= {:.0} % of the matches)",
            v.min_inliers,
            v.threshold_px,
            v.keypoints,
            v.min_ratio * 100.0
        )
    });
    println!("{entries} photos, {how}, {method}{check}");
    if groups.is_empty() {
        println!("no near-duplicates");
        return;
    }
    let photos: usize = groups.iter().map(|g| g.members.len()).sum();
    println!("{} groups of near-duplicates, {photos} photos in them", groups.len());
    for (i, g) in groups.iter().enumerate() {
        let weakest = match g.weakest {
            Some(w) if g.is_chained(threshold) => format!(", weakest pair {w:.4}: chained, some members are below the threshold to each other"),
            Some(w) => format!(", weakest pair {w:.4}"),
            None => String::new(),
        };
        println!("\ngroup {}: {} photos, best {:.4}{weakest}", i + 1, g.members.len(), g.best);
        for (m, best) in g.members.iter().zip(g.member_best()) {
            println!("  {best:.4}  {m}");
        }
    }
}

fn write_html(path_of: &dyn Fn(&str) -> PathBuf, entries: usize, out: &Path, groups: &[DuplicateGroup], threshold: f32) -> anyhow::Result<()> {
    let mut sections = String::new();
    for (i, g) in groups.iter().enumerate() {
        let weakest = g.weakest.map_or_else(String::new, |w| {
            let chained = if g.is_chained(threshold) { " <span class=\"chained\">chained</span>" } else { "" };
            format!(" &middot; weakest pair {w:.3}{chained}")
        });
        sections.push_str(&format!(
            "<section><h2>Group {} &middot; {} photos &middot; best {:.3}{weakest}</h2><div class=\"row\">",
            i + 1,
            g.members.len(),
            g.best
        ));
        for (m, best) in g.members.iter().zip(g.member_best()) {
            let img = thumbnail(&path_of(m)).map_or_else(|| "<div class=\"missing\">no preview</div>".to_owned(), |s| format!("<img src=\"{s}\" alt=\"\">"));
            sections.push_str(&format!("<figure title=\"{}\">{img}<figcaption>{:.3}<br>{}</figcaption></figure>", escape(m), best, escape(&short(m))));
        }
        sections.push_str("</div></section>\n");
    }
    if groups.is_empty() {
        sections.push_str("<p>No near-duplicates.</p>\n");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dolg near-duplicates</title>\n<style>\n\
body{{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}}\n\
section{{margin-bottom:20px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}}\nh2{{font-size:15px;margin:0 0 8px}}\n\
.row{{display:flex;gap:10px;flex-wrap:wrap}}\nfigure{{margin:0;text-align:center;font-size:12px;min-width:{THUMB}px}}\n\
figure img{{max-width:{THUMB}px;max-height:{THUMB}px;border-radius:4px}}\n.chained{{color:#b50}}\n\
.missing{{width:{THUMB}px;height:120px;background:#eee;line-height:120px;color:#888}}\n</style></head><body>\n\
<h1>dolg near-duplicates</h1>\n<p>{} photos, threshold {threshold:.3}: {} groups. Under each photo: its best similarity to another member of its group.</p>\n{sections}</body></html>\n",
        entries,
        groups.len()
    );
    dolg::atomic_file::write(out, dolg::atomic_file::Mode::Shared, html.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}
