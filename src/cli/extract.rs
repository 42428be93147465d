use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::builder::TypedValueParser;
use clap::Args;
use dolg::decode::DecodeLimits;
use dolg::descriptors::names_path;
use dolg::preprocess::CropBox;
use dolg::shards::{shard_folder, Identity, Part, ShardedRun, DEFAULT_SHARD_ROWS};
use serde_json::json;

use super::inputs::InputArgs;
use super::{ModelArgs, Progress, RunArgs, EXIT_SOME_FAILED};
use dolg::model::{LocalFeatures, LocalKind};

#[derive(Args, Debug)]
#[command(
    after_help = "OUTPUT\n  OUT.npy           float32 [N, D], one L2-normalised descriptor per image that was read successfully, in input order\n  OUT.names.txt     the N image paths, one per line, in the same order (folders are expanded recursively and sorted)\n\n\
BAD INPUT\n  A file that cannot be decoded (corrupt, truncated, not an image, larger than --max-side) is reported with its path and skipped;\n  every other image still gets its descriptor and the exit status is 0. With --strict the exit status is 3 when any image was skipped.\n\n\
LONG RUNS AND --resume\n  Results are written as they are made, in OUT.shards/ beside the output: every --shard-rows inputs become a durable shard\n  (shard-000000.npy + .names.txt, and .failures.json naming the inputs that failed, with their errors), and progress.json\n  (checksummed) records the run's identity (the ordered input list's hash, the model fingerprint, the options) and how many\n  shards are done. At the end the shards are merged into OUT.npy + OUT.names.txt and the folder is removed; memory stays\n  bounded by one shard. A run that was killed continues with the same command plus --resume: finished shards are kept, failed\n  inputs are not retried (the final report still lists them), and the outputs are byte for byte those of an uninterrupted\n  run. Resuming with other inputs, model or options is refused, naming what changed. Without --resume an existing\n  OUT.shards/ is an error (resume, or remove it to start over).\n\n\
SPLITTING OVER MACHINES: --shard I/N\n  Process only part I of N: the inputs at positions p (0-based, in input order) with p % N == I-1 (round robin, so parts get\n  a similar mix of images). Give every job the same inputs and options; each writes OUT.npy + OUT.names.txt for its part and\n  OUT.part.json (checksummed: I/N, the run's identity, its rows and failed inputs). `dolg merge ALL.npy PART1.npy ... PARTN.npy`\n  joins the N parts into the output an unsharded run would have written, row for row.\n\n\
LOCAL FEATURES: --local OUT.safetensors\n  Also write each image's local features (--local-kind xfeat, the default, with any model; delg with a DELG checkpoint, from\n  the same network pass as its global descriptor) to one safetensors file (readable by numpy/PyTorch safetensors bindings):\n    locations    float32 [N, 2]  (row, col) = (y, x) in pixels of the image as decoded, EXIF-oriented and cropped (--crop),\n                                 before any resizing (swap the columns for (x, y))\n    descriptors  float32 [N, D]  L2-normalised rows (XFeat 64-d; DELG the checkpoint's width)\n    scores       float32 [N]     detector score (XFeat: reliability x heatmap; DELG: attention), descending within an image\n    scales       float32 [N]     image scale each keypoint was found at (XFeat: 640 / the longest side, as XFeat sees every\n                                 photo at 640 px; location x scale is the keypoint in that frame)\n    offsets      int64 [M + 1]   image i's keypoints are rows offsets[i]..offsets[i+1]\n  N is the keypoints of all M images together (at most 1000 each), in the order of OUT.names.txt. Metadata (strings):\n  format=dolg-local-features-v1, extractor, model, dim, location_order=row,col, names (JSON array of the M image paths).\n  With --local, OUT.npy and OUT.names.txt are written at the end in one pass (no --resume or --shard); features are held in\n  memory until then (DELG 512-d: about 2 MiB per photo, XFeat: 270 KiB).\n\n\
PROGRESS\n  On a terminal, a progress bar. Otherwise (a log file, a batch job) a line `extract: DONE/TOTAL (P%), R/s, ETA T` every\n  5 seconds; DOLG_PROGRESS_SECONDS=S changes the interval (0: after every image)."
)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output descriptor file (.npy); the names file is written beside it.
    #[arg(long, short = 'o', value_name = "OUT.npy")]
    pub out: PathBuf,
    /// Crop every image to this box before describing it (query crop; int() truncation like the reference).
    #[arg(long, value_name = "X1,Y1,X2,Y2")]
    pub crop: Option<CropBox>,
    /// Reject images with a side longer than this many pixels (protects against decompression
    /// bombs); images over 100 Mpx in all are rejected too.
    #[arg(long, default_value_t = 20_000, value_name = "PIXELS")]
    pub max_side: u32,
    /// Exit with status 3 if any image could not be processed.
    #[arg(long)]
    pub strict: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Continue an interrupted run from its shard folder (OUT.shards/), with the same inputs,
    /// model and options; finished shards are not described again.
    #[arg(long)]
    pub resume: bool,
    /// Process only part I of N of the inputs (positions p with p % N == I-1), for job arrays;
    /// join the parts with `dolg merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Part>,
    /// Also write every image's local features to this safetensors file (format under LOCAL
    /// FEATURES below).
    #[arg(long, value_name = "OUT.safetensors", conflicts_with_all = ["resume", "shard"])]
    pub local: Option<PathBuf>,
    /// Which local features --local writes: xfeat (any model) or delg (needs a DELG checkpoint).
    #[arg(long, value_enum, default_value_t = LocalKind::Xfeat, value_name = "KIND", requires = "local")]
    pub local_kind: LocalKind,
    /// Inputs per durable shard: at most this much work is lost when a run is killed.
    #[arg(long, default_value_t = DEFAULT_SHARD_ROWS, value_name = "N", value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub shard_rows: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The settings besides the model that change the output, as recorded in the shard folder.
fn options(a: &ExtractArgs, ex: &dolg::descriptors::Extractor) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("crop".to_owned(), a.crop.map_or("none".to_owned(), |c| format!("{:?}", c.0))),
        ("max_side".to_owned(), a.max_side.to_string()),
        ("scales".to_owned(), format!("{:?}", ex.scales)),
        ("max_size".to_owned(), ex.max_size.map_or("none".to_owned(), |m| m.to_string())),
        ("orientation".to_owned(), format!("{:?}", ex.orientation)),
    ])
}

pub fn run(a: ExtractArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let spec = a.model.spec()?;
    let loaded = spec.load(&device)?;
    let mut ex = loaded.extractor;
    ex.limits = DecodeLimits { max_side: a.max_side, ..DecodeLimits::default() };
    let files = a.inputs.list()?.files;
    if let Some(local_out) = &a.local {
        let cfg = dolg::collection::local::local_config(a.local_kind, dolg::index::LocalEncoding::F16, &spec)?
            .ok_or_else(|| anyhow::anyhow!("--local-kind none writes no local features: give xfeat or delg, or drop --local"))?;
        ex.local = Some(dolg::collection::local::load_local_model(&cfg, &ex, &device)?);
        return run_with_local(&a, &ex, &files, local_out);
    }
    let (name, dim) = (ex.model.name(), ex.model.out_dim());
    let part = a.shard.unwrap_or(Part::WHOLE);

    let identity = Identity::new(&files, loaded.fingerprint.as_str(), dim, options(&a, &ex));
    let mut run = ShardedRun::open(&a.out, &files, identity, part, a.shard_rows, a.resume)?;
    let (todo, resumed) = (run.work_len(), run.resumed_inputs());
    if resumed > 0 {
        eprintln!("resuming {}: {resumed} of {todo} inputs already done", shard_folder(&a.out).display());
    }

    let start = Instant::now();
    let mut pb = Progress::new(todo as u64, "extract");
    pb.start_at(resumed as u64);
    let processed = run.describe_pending(&ex, a.crop, |_, _, r| {
        if let Err(e) = r {
            pb.println(&format!("warning: skipped: {e}"));
        }
        pb.inc(1);
    });
    pb.finish();
    let processed = processed?;
    let seconds = start.elapsed().as_secs_f64();
    let finished = run.finish()?;
    let failed: Vec<_> = finished.failures.iter().map(|f| json!({"path": f.path, "error": f.error})).collect();

    if a.json {
        let mut summary = summary_head(&a, &name, dim, &ex.scales);
        summary.extend(json_map(json!({
            "images": todo,
            "extracted": finished.rows,
            "failed": failed,
            "resumed": resumed,
            "described": processed,
            "shard": a.shard.map(|p| p.to_string()),
            "inputs": files.len(),
            "part_record": finished.part_record.as_ref().map(|p| p.display().to_string()),
            "seconds": seconds,
            "seconds_per_image": if processed == 0 { 0.0 } else { seconds / processed as f64 },
        })));
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let of = a.shard.map(|p| format!(" (part {p} of {} inputs)", files.len())).unwrap_or_default();
        let earlier = if resumed > 0 { format!("; {resumed} input(s) done by the interrupted run") } else { String::new() };
        eprintln!(
            "{} descriptors ({}-d, {}) written to {}{of} in {:.1}s; {} image(s) skipped{earlier}",
            finished.rows,
            dim,
            name,
            a.out.display(),
            seconds,
            failed.len()
        );
    }
    Ok(if a.strict && !failed.is_empty() { ExitCode::from(EXIT_SOME_FAILED) } else { ExitCode::SUCCESS })
}

/// The fields every `extract --json` summary starts with: where the rows went and what made them.
fn summary_head(a: &ExtractArgs, model: &str, dim: usize, scales: &[f64]) -> serde_json::Map<String, serde_json::Value> {
    json_map(json!({
        "output": a.out.display().to_string(),
        "names": names_path(&a.out).display().to_string(),
        "model": model,
        "dim": dim,
        "scales": scales,
    }))
}

fn json_map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("built with json!({{...}})"),
    }
}

/// `extract --local`: one pass giving each image's global descriptor and local features, written
/// at the end (OUT.npy + names, and the safetensors file).
fn run_with_local(a: &ExtractArgs, ex: &dolg::descriptors::Extractor, files: &[PathBuf], local_out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let local = ex.local.as_ref().expect("set by the caller");
    let (name, dim) = (ex.model.name(), ex.model.out_dim());
    let start = Instant::now();
    let mut pb = Progress::new(files.len() as u64, "extract");
    let (mut rows, mut names, mut locals, mut failed) = (Vec::new(), Vec::new(), Vec::<LocalFeatures>::new(), Vec::new());
    ex.describe_many_local(files, &|_| a.crop, |_, path, r| {
        match r {
            Ok(d) => {
                rows.push(d.descriptor);
                names.push(path.display().to_string());
                locals.push(d.local.unwrap_or_else(|| LocalFeatures::empty(local.dim())));
            }
            Err(e) => {
                pb.println(&format!("warning: skipped: {e}"));
                failed.push(json!({"path": path.display().to_string(), "error": e.to_string()}));
            }
        }
        pb.inc(1);
        std::ops::ControlFlow::Continue(())
    });
    pb.finish();
    let seconds = start.elapsed().as_secs_f64();
    dolg::descriptors::write_descriptors(&a.out, &rows, dim, Some(&names))?;
    dolg::model::local_features::write_local_file(local_out, &names, &locals, local.name(), &name)?;
    let keypoints: usize = locals.iter().map(LocalFeatures::len).sum();
    let bytes = std::fs::metadata(local_out).map(|m| m.len()).unwrap_or(0);
    if a.json {
        let mut summary = summary_head(a, &name, dim, &ex.scales);
        summary.extend(json_map(json!({
            "images": files.len(),
            "extracted": rows.len(),
            "failed": failed,
            "local": {"output": local_out.display().to_string(), "extractor": local.name(), "dim": local.dim(), "keypoints": keypoints, "bytes": bytes},
            "seconds": seconds,
            "seconds_per_image": if files.is_empty() { 0.0 } else { seconds / files.len() as f64 },
        })));
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "{} descriptors ({dim}-d, {name}) written to {} and {keypoints} {} local features ({}-d) to {} in {seconds:.1}s; {} image(s) skipped",
            rows.len(),
            a.out.display(),
            local.name(),
            local.dim(),
            local_out.display(),
            failed.len()
        );
    }
    Ok(if a.strict && !failed.is_empty() { ExitCode::from(EXIT_SOME_FAILED) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::progress_line;

    #[test]
    fn progress_lines_show_count_rate_and_eta() {
        assert_eq!(progress_line("extract", 25, 100, 25, Duration::from_secs(10)), "extract: 25/100 (25.0%), 2.50/s, ETA 30s");
        // Resumed at 50: the rate counts only this run's 10 items.
        assert_eq!(progress_line("extract", 60, 100, 10, Duration::from_secs(100)), "extract: 60/100 (60.0%), 0.10/s, ETA 6m40s");
        assert_eq!(progress_line("x", 1, 10_000, 1, Duration::from_secs(1)), "x: 1/10000 (0.0%), 1.00/s, ETA 2h46m");
        assert_eq!(progress_line("x", 0, 5, 0, Duration::ZERO), "x: 0/5 (0.0%), 0.00/s, ETA ?");
        assert_eq!(progress_line("x", 5, 5, 5, Duration::from_secs(1)), "x: 5/5 (100.0%), 5.00/s, ETA 0s");
    }
}
