//! `dolg serve`: flags over [`dolg::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use dolg::serve::{serve, Config};

use super::RunArgs;

#[derive(Args, Debug)]
#[command(
    after_help = "ENDPOINTS\n  GET / (web page), POST /search, GET|POST /images, GET|DELETE /images/{id}, GET /images/{id}/thumbnail, GET /images/{id}/file,\n  \
GET /health, GET /ready, GET /metrics (Prometheus), GET /openapi.json (the full description).\n\n\
IDS\n  A photo's id is the first 16 hex digits of the SHA-256 of its indexed name: stable across restarts and compaction.\n\n\
QUEUE\n  Every photo the server describes (an uploaded query, an added photo) waits in one queue; --workers threads take up to\n  --max-batch photos at a time. A request is refused (429, with Retry-After in seconds) only when the photos ahead of it, at the\n  measured rate, would not let it finish within --timeout; otherwise it waits its turn. Searches by id, name or vector never\n  wait behind descriptions. /metrics and /ready report the queue.\n\n\
SECURITY\n  Listens on 127.0.0.1 by default. With --token, adding and removing photos need `Authorization: Bearer TOKEN`;\n  with --token-read as well, so does everything but /, /health, /ready and /openapi.json. There is no TLS: put a proxy in front\n  to serve beyond this machine."
)]
pub struct ServeArgs {
    /// Index directory.
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: SocketAddr,
    /// Require `Authorization: Bearer T` for writes (default: the DOLG_SERVE_TOKEN environment variable, if set).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// Require the token for reads (searches, thumbnails, files) too.
    #[arg(long)]
    pub token_read: bool,
    /// Serve searches only: open the index for reading (shared with other readers) and refuse writes.
    #[arg(long)]
    pub read_only: bool,
    /// Largest request body, in megabytes.
    #[arg(long, default_value_t = 20, value_name = "MB")]
    pub max_body_mb: usize,
    /// Per-request time limit, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub timeout: f64,
    /// Describing workers taking photos from the queue (default: the cores divided by --threads, at least 1).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Photos a worker describes together (one decodes while another runs the network) [default: 2].
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// How long a worker with fewer than --max-batch photos waits for more before starting [default: 0].
    #[arg(long, value_name = "MS")]
    pub max_delay_ms: Option<f64>,
    /// Folder under the collection's root where uploaded photos are stored.
    #[arg(long, default_value = "uploads", value_name = "DIR")]
    pub upload_dir: String,
    /// Allow cross-origin requests from this origin (`*` for any). Off by default.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Describe photos with these weights instead of the index's recorded model (must be the same model).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    if a.upload_dir.split(['/', '\\']).any(|p| p == ".." || p.is_empty()) || a.upload_dir.starts_with('/') {
        anyhow::bail!("--upload-dir must be a relative folder name under the collection's root, without '..'");
    }
    let device = a.run.init()?;
    let mut config = Config::new(a.db);
    config.addr = a.addr;
    // The environment keeps the token out of the process list.
    config.token = a.token.or_else(|| std::env::var("DOLG_SERVE_TOKEN").ok()).filter(|t| !t.is_empty());
    if a.token_read && config.token.is_none() {
        anyhow::bail!("--token-read needs a token (--token T or DOLG_SERVE_TOKEN)");
    }
    config.token_read = a.token_read;
    config.read_only = a.read_only;
    config.body_limit = a.max_body_mb.saturating_mul(1024 * 1024);
    config.timeout = Duration::from_secs_f64(a.timeout);
    let defaults = dolg::serve::QueueConfig::for_threads(rayon::current_num_threads());
    if a.max_delay_ms.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
        anyhow::bail!("--max-delay-ms must be a number of milliseconds, 0 or more");
    }
    config.queue = dolg::serve::QueueConfig {
        workers: a.workers.unwrap_or(defaults.workers).max(1),
        max_batch: a.max_batch.unwrap_or(defaults.max_batch).max(1),
        max_delay: a.max_delay_ms.map_or(defaults.max_delay, |ms| Duration::from_secs_f64(ms / 1000.0)),
    };
    config.upload_dir = a.upload_dir;
    config.cors_origin = a.cors_origin;
    config.weights = a.weights;
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        eprintln!("warning: listening on {} without --token: anyone who can reach it can add and remove photos", config.addr);
    }
    serve(config, &device, |addr| {
        use std::io::Write;
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(ExitCode::SUCCESS)
}
