//! `dolg train`: options from a TOML file and/or flags, progress, Ctrl-C, resume.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use dolg::model::aspp::none_or_kind;
use dolg::model::{AsppKind, Fusion, Pooling};
use dolg::train::data::DataFormat;
use dolg::train::run::{run as train_run, Event};
use dolg::train::{HeadKind, TrainConfig};
use serde::Serialize;

/// Exit status of a run stopped by Ctrl-C (after its checkpoint was saved).
const EXIT_INTERRUPTED: u8 = 130;

/// `--multi-atrous` takes `none` besides the [`AsppKind`]s. (An alias, so that clap reads
/// `Option<MultiAtrousChoice>` as an optional flag taking a value, not as an optional value.)
type MultiAtrousChoice = Option<AsppKind>;

fn multi_atrous_parser() -> impl TypedValueParser<Value = MultiAtrousChoice> {
    PossibleValuesParser::new(none_or_kind::NAMES).map(|s| none_or_kind::parse(&s).expect("one of the possible values"))
}

/// The flag's value in the option table, in the spelling of the config file.
fn serialize_multi_atrous<S: serde::Serializer>(v: &Option<MultiAtrousChoice>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(kind) => none_or_kind::serialize(kind, s),
        None => s.serialize_none(),
    }
}

#[derive(Args, Debug, Serialize)]
#[command(after_long_help = "Every option can be set in the TOML file given by --config (same names, with underscores: \
batch_size = 32) and on the command line; the command line wins. Defaults are the authors' recipe: \
CurricularFace head s=30 m=0.15, SGD momentum 0.9 Nesterov, weight decay 1e-4 on every parameter, lr 0.01 per 64 images, \
5 warm-up epochs from 0.1x then cosine, 224-px random-resized crops, flips and PCA lighting.\n\n\
The run directory gets config.toml (the resolved options), classes.tsv (class index -> original id), metrics.jsonl \
(one JSON line per step: step, epoch, loss, accuracy, lr, images_per_s, data_wait_s; val_map lines after each epoch), \
state.json, and checkpoints/step-N.safetensors (authors' key names, loadable by `dolg extract --weights`) with \
step-N.optim.safetensors (momentum buffers).\n\n\
Ctrl-C saves a checkpoint and exits with status 130; `dolg train --resume RUN_DIR` continues exactly where it stopped.\n\n\
Example (fine-tune a MobileNetV2 DOLG on a folder per class):\n  dolg fetch-weights mobilenetv2\n  \
dolg train --data photos_by_class/ --backbone mobilenetv2 --epochs 10 --batch-size 16 --out runs/mine")]
pub struct TrainArgs {
    /// TOML file with any of the options below.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its last checkpoint (its config.toml; flags still override).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,

    /// Training data: a list file (`path class_id` lines), GLDv2 `train_clean.csv`, or a folder per class.
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<PathBuf>,
    #[arg(long, value_enum, help_heading = "Data")]
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<DataFormat>,
    /// Root that relative image paths resolve against (default: the list's folder).
    #[arg(long, value_name = "DIR", help_heading = "Data")]
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<PathBuf>,

    /// A DOLG checkpoint to fine-tune (its head is kept when the class count matches).
    #[arg(long, value_name = "FILE", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<PathBuf>,
    /// Start from an ImageNet backbone instead: a file, or `mobilenetv2` (see `dolg fetch-weights`).
    #[arg(long, value_name = "FILE|mobilenetv2", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    backbone: Option<String>,
    /// Width of fg and of the local features (1024 in the paper).
    #[arg(long, value_name = "N", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    fg_dim: Option<usize>,
    /// Descriptor width (512 in the paper).
    #[arg(long, value_name = "N", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    out_dim: Option<usize>,
    /// Ablation: false drops the local branch (global descriptor only).
    #[arg(long, value_name = "BOOL", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    local_branch: Option<bool>,
    /// Ablation: false drops the self-attention weights of the local branch.
    #[arg(long, value_name = "BOOL", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    attention: Option<bool>,
    /// Multi-atrous module in front of the local branch: none (as the released weights), official
    /// (the authors' code: 1x1, dilations 6/12/18, image pool) or paper (dilations 3/6/9).
    #[arg(long, value_parser = multi_atrous_parser(), help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_multi_atrous")]
    multi_atrous: Option<MultiAtrousChoice>,
    /// Global pooling: GeM (learnable p) or GAP (ablation).
    #[arg(long, value_enum, help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pooling: Option<Pooling>,
    /// Fusion of local and global features (ablation: concat, hadamard).
    #[arg(long, value_enum, help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    fusion: Option<Fusion>,
    /// Freeze the first N backbone stages (1 = stem, 2 = stem + s1, ...; all of a ResNet at 5, of MobileNetV2 at 6).
    #[arg(long, value_name = "N", help_heading = "Model")]
    #[serde(skip_serializing_if = "Option::is_none")]
    freeze_stages: Option<usize>,

    /// Classification head: the authors' CurricularFace-style head or plain ArcFace.
    #[arg(long, value_enum, help_heading = "Head")]
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<HeadKind>,
    #[arg(long, value_name = "S", help_heading = "Head")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<f64>,
    #[arg(long, value_name = "M", help_heading = "Head")]
    #[serde(skip_serializing_if = "Option::is_none")]
    margin: Option<f64>,

    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// Images per optimizer step.
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<usize>,
    /// Gradient accumulation: micro-batches per step (must divide --batch-size).
    #[arg(long, value_name = "K", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    accum: Option<usize>,
    /// Learning rate per --lr-batch images (scaled linearly with --batch-size).
    #[arg(long, value_name = "LR", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    base_lr: Option<f64>,
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_batch: Option<usize>,
    #[arg(long, value_name = "MU", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    momentum: Option<f64>,
    #[arg(long, value_name = "BOOL", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    nesterov: Option<bool>,
    #[arg(long, value_name = "L", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    #[arg(long, value_name = "E", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    warmup_epochs: Option<f64>,
    #[arg(long, value_name = "F", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    warmup_factor: Option<f64>,
    /// Update the lr every step (fractional epochs) instead of once per epoch as the authors do.
    #[arg(long, value_name = "BOOL", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_per_step: Option<bool>,
    /// Stop after N optimizer steps (the schedule still spans --epochs).
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_steps: Option<usize>,

    /// Training crop size in pixels.
    #[arg(long, value_name = "PX", help_heading = "Augmentation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    /// Smallest crop area fraction of random-resized-crop.
    #[arg(long, value_name = "F", help_heading = "Augmentation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    min_area: Option<f64>,
    #[arg(long, value_name = "BOOL", help_heading = "Augmentation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    flip: Option<bool>,
    /// PCA lighting noise std (0 disables).
    #[arg(long, value_name = "STD", help_heading = "Augmentation")]
    #[serde(skip_serializing_if = "Option::is_none")]
    lighting: Option<f64>,

    /// Run directory.
    #[arg(long, value_name = "DIR", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,
    #[arg(long, value_name = "N", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Decoding/augmentation threads.
    #[arg(long, value_name = "N", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    /// Also save every N steps (a checkpoint is always saved at each epoch's end).
    #[arg(long, value_name = "N", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_every: Option<usize>,
    /// Groups CSV (`image,group`) for retrieval validation after each epoch.
    #[arg(long, value_name = "CSV", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_groups: Option<PathBuf>,
    #[arg(long, value_name = "DIR", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_images: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', value_name = "S,S,...", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_scales: Option<Vec<f64>>,
    /// `cpu`: training runs on the CPU (`--device cuda` serves inference only; see README).
    #[arg(long, help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[arg(long, value_name = "N", help_heading = "Run")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
}

pub fn run(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut overrides = toml::Table::try_from(&a)?;
    let file = match &a.resume {
        Some(dir) => {
            overrides.insert("out".into(), toml::Value::String(dir.display().to_string()));
            Some(dir.join("config.toml"))
        }
        None => a.config.clone(),
    };
    let mut cfg = TrainConfig::resolve(file.as_deref(), overrides)?;
    cfg.absolutize()?;
    dolg::runtime::set_threads(cfg.threads)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without saving");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            eprintln!("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)");
        })?;
    }
    let pb = indicatif::ProgressBar::hidden();
    let outcome = train_run(&cfg, a.resume.is_some(), &stop, |ev| match ev {
        Event::Started { total_steps, start_step, classes, images, model } => {
            eprintln!("{model}: {images} images in {classes} classes, steps {start_step}..{total_steps} -> {}", cfg.out.display());
            pb.set_length(total_steps as u64);
            pb.set_position(start_step as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} ETA {eta}").expect("static template").progress_chars("=> "),
            );
            pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        Event::Step(r) => {
            let loss = r.loss.map_or("-".into(), |l| format!("{l:.4}"));
            let acc = r.accuracy.map_or("-".into(), |v| format!("{:.0}%", 100.0 * v));
            pb.set_message(format!("epoch {} loss {loss} acc {acc} lr {:.2e} {:.1} img/s", r.epoch, r.lr, r.images_per_s));
            pb.set_position(r.step as u64);
        }
        Event::Checkpoint(p) => pb.println(format!("saved {}", p.display())),
        Event::Validation { step, epoch, map } => pb.println(format!("epoch {epoch} (step {step}): validation mAP {:.2}", 100.0 * map)),
    })?;
    pb.finish_and_clear();
    let summary = serde_json::json!({
        "out": cfg.out,
        "steps": outcome.steps_done,
        "interrupted": outcome.interrupted,
        "checkpoint": outcome.checkpoint,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if let Some(c) = &outcome.checkpoint {
        println!("{} after {} steps: {}", if outcome.interrupted { "stopped" } else { "finished" }, outcome.steps_done, c.display());
    }
    if outcome.interrupted {
        eprintln!("continue with: dolg train --resume {}", cfg.out.display());
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    /// The option table the flags give, as `run` builds it.
    fn overrides(flags: &[&str]) -> Result<toml::Table, String> {
        let cli = Cli::try_parse_from(std::iter::once("dolg-train").chain(flags.iter().copied())).map_err(|e| e.to_string())?;
        Ok(toml::Table::try_from(&cli.train).expect("flags serialise"))
    }

    #[test]
    fn model_flags_keep_their_spellings() {
        for v in ["none", "official", "paper"] {
            let t = overrides(&["--multi-atrous", v]).unwrap();
            assert_eq!(t.get("multi_atrous").and_then(|v| v.as_str()), Some(v));
        }
        for v in ["gem", "gap"] {
            let t = overrides(&["--pooling", v]).unwrap();
            assert_eq!(t.get("pooling").and_then(|v| v.as_str()), Some(v));
        }
        let t = overrides(&[]).unwrap();
        assert!(!t.contains_key("multi_atrous") && !t.contains_key("pooling"), "{t:?}");
        let e = overrides(&["--multi-atrous", "dilated"]).unwrap_err();
        assert!(e.contains("none") && e.contains("official") && e.contains("paper"), "{e}");
        assert!(overrides(&["--multi-atrous"]).is_err(), "the flag takes a value");
        // The table resolves to the model's enums.
        let mut t = overrides(&["--multi-atrous", "paper", "--pooling", "gap", "--data", "x", "--backbone", "b"]).unwrap();
        let cfg = TrainConfig::resolve(None, std::mem::take(&mut t)).unwrap();
        assert_eq!((cfg.multi_atrous, cfg.pooling), (Some(AsppKind::Paper), Pooling::Gap));
    }
}
