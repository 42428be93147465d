use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use dolg::decode::{expand_inputs, DecodeLimits};
use dolg::descriptors::{names_path, write_descriptors};
use dolg::preprocess::CropBox;
use serde_json::json;

use super::{progress, ModelArgs, RunArgs, EXIT_SOME_FAILED};

#[derive(Args, Debug)]
#[command(
    after_help = "OUTPUT\n  OUT.npy           float32 [N, D], one L2-normalised descriptor per image that was read successfully, in input order\n  OUT.names.txt     the N image paths, one per line, in the same order (directories are expanded recursively and sorted)\n\n\
BAD INPUT\n  A file that cannot be decoded (corrupt, truncated, not an image, larger than --max-side) is reported with its path and skipped;\n  every other image still gets its descriptor and the exit status is 0. With --strict the exit status is 3 when any image was skipped."
)]
pub struct ExtractArgs {
    /// Images and/or directories (searched recursively for .jpg/.jpeg/.png/.webp, in sorted order).
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    pub inputs: Vec<PathBuf>,
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
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(a: ExtractArgs) -> anyhow::Result<ExitCode> {
    let device = a.run.init()?;
    let mut ex = a.model.extractor(device)?;
    ex.limits = DecodeLimits { max_side: a.max_side, ..DecodeLimits::default() };
    let paths = expand_inputs(&a.inputs)?;
    let (name, dim) = (ex.model.name(), ex.model.out_dim());

    let start = Instant::now();
    let pb = progress(paths.len() as u64, "extract");
    let described = ex.describe_files(&paths, a.crop, |_, _, r| {
        if let Err(e) = r {
            pb.suspend(|| eprintln!("warning: skipped: {e}"));
        }
        pb.inc(1);
    });
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    write_descriptors(&a.out, &described.rows, dim, Some(&described.names))?;
    let failed: Vec<_> = described.failures.iter().map(|f| json!({"path": f.path.display().to_string(), "error": f.error.to_string()})).collect();

    if a.json {
        let summary = json!({
            "output": a.out.display().to_string(),
            "names": names_path(&a.out).display().to_string(),
            "model": name,
            "dim": dim,
            "scales": ex.scales,
            "images": paths.len(),
            "extracted": described.rows.len(),
            "failed": failed,
            "seconds": seconds,
            "seconds_per_image": if paths.is_empty() { 0.0 } else { seconds / paths.len() as f64 },
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "{} descriptors ({}-d, {}) written to {} in {:.1}s; {} image(s) skipped",
            described.rows.len(),
            dim,
            name,
            a.out.display(),
            seconds,
            failed.len()
        );
    }
    Ok(if a.strict && !failed.is_empty() { ExitCode::from(EXIT_SOME_FAILED) } else { ExitCode::SUCCESS })
}
