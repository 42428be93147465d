use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use burn::module::Module;
use clap::Args;
use dolg::checkpoint::{write_safetensors, Checkpoint};
use dolg::model::{Arch, Dolg, Fusion};
use serde_json::json;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (any supported format).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output safetensors file.
    #[arg(value_name = "OUT.safetensors")]
    pub output: PathBuf,
    /// Override the architecture detected from the keys.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
}

/// Writes every model tensor (PyTorch names and layouts, float32) and the `desc_cls.*` training
/// head when present; drops `num_batches_tracked`, the optimizer state and the config pickle.
/// The model is loaded first, so a file with missing or mis-shaped keys is refused.
pub fn run(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    let ck = Checkpoint::open(&a.input)?;
    let (_, config) = Dolg::load(&ck, a.arch, Fusion::Orthogonal, dolg::model::BatchNorm::Keep, &burn::tensor::Device::flex())?;
    let tensors = ck.named_tensors(|k| Some(k.to_owned()))?;
    let meta = BTreeMap::from([
        ("format".to_owned(), "pt".to_owned()),
        ("dolg.arch".to_owned(), config.name()),
        ("dolg.source".to_owned(), a.input.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()),
    ]);
    write_safetensors(&a.output, &tensors, meta)?;
    eprintln!("{}: {} tensors ({}) written to {}", a.input.display(), tensors.len(), config.name(), a.output.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Checkpoint to describe.
    #[arg(value_name = "FILE")]
    pub weights: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let ck = Checkpoint::open(&a.weights)?;
    let (model, config) = Dolg::load(&ck, None, Fusion::Orthogonal, dolg::model::BatchNorm::Keep, &burn::tensor::Device::flex())?;
    let params = model.num_params();
    if a.json {
        let v = json!({
            "path": a.weights.display().to_string(),
            "format": ck.format().to_string(),
            "model": config.name(),
            "backbone": config.backbone.name(),
            "multi_atrous": config.aspp.is_some(),
            "local_branch": config.local,
            "gem": config.pooling == dolg::model::Pooling::Gem,
            "descriptor_dim": config.out_dim,
            "parameters": params,
            "keys": ck.keys().count(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: {} checkpoint, {} keys", a.weights.display(), ck.format(), ck.keys().count());
        println!("model: {} ({} parameters without the training head), {}-d descriptors", config.name(), params, config.out_dim);
    }
    Ok(ExitCode::SUCCESS)
}
