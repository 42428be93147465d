use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use dolg::descriptors::names_path;
use dolg::shards::merge_parts;
use serde_json::json;

use super::EXIT_SOME_FAILED;

#[derive(Args, Debug)]
#[command(after_help = "Each PART.npy must have been written by `dolg extract --shard I/N` over the same inputs with the same model and\n\
options, and must have its PART.names.txt and PART.part.json beside it. All N parts are needed, each once, in any order.\n\n\
OUTPUT\n  OUT.npy, OUT.names.txt   the rows of all parts in input order: what `dolg extract` without --shard writes, row for row.\n\
The inputs that could not be described (recorded in the parts) are listed in the summary.")]
pub struct MergeArgs {
    /// Output descriptor file (.npy); its names file is written beside it.
    #[arg(value_name = "OUT.npy")]
    pub out: PathBuf,
    /// The parts: outputs of `dolg extract --shard I/N` for I = 1..N.
    #[arg(required = true, value_name = "PART.npy")]
    pub parts: Vec<PathBuf>,
    /// Exit with status 3 if any input of the run could not be described.
    #[arg(long)]
    pub strict: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: MergeArgs) -> anyhow::Result<ExitCode> {
    let m = merge_parts(&a.out, &a.parts)?;
    let failed: Vec<_> = m.failures.iter().map(|f| json!({"path": f.path, "error": f.error})).collect();
    if a.json {
        let summary = json!({
            "output": a.out.display().to_string(),
            "names": names_path(&a.out).display().to_string(),
            "parts": a.parts.len(),
            "inputs": m.inputs,
            "rows": m.rows,
            "dim": m.dim,
            "failed": failed,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for f in &m.failures {
            eprintln!("skipped by the extraction: {}", f.error);
        }
        eprintln!("{} descriptors ({}-d) of {} inputs merged from {} parts into {}", m.rows, m.dim, m.inputs, a.parts.len(), a.out.display());
    }
    Ok(if a.strict && !failed.is_empty() { ExitCode::from(EXIT_SOME_FAILED) } else { ExitCode::SUCCESS })
}
