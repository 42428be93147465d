//! `dolg serve`: an HTTP API and a web page over a [`Collection`](crate::collection::Collection).
//!
//! * The collection is opened once and kept in memory behind an `RwLock`: searches share a read
//!   lock, writes (adding, removing) take the write lock only to commit. The model is loaded once,
//!   separately from the collection ([`Collection::load_query_model`](crate::collection::Collection::load_query_model)),
//!   so describing an upload (the slow part) holds no lock at all.
//! * Describing photos (uploads, added photos, query photos for spatial re-ranking) goes through
//!   one queue with a fixed number of workers taking batches ([`queue`]): a request waits its
//!   turn, and is answered `429 Too Many Requests` with a truthful `Retry-After` only when the
//!   work ahead of it would not let it finish within its time limit. Other heavy work (searching,
//!   thumbnails) runs on `tokio::task::spawn_blocking` and never waits behind descriptions.
//! * Photos are addressed by a stable id: the first 16 hex digits of the SHA-256 of their indexed
//!   name (see [`photo_id`]). It survives compaction and restarts; it changes when a photo is
//!   renamed. Files are only ever served by id, and only from inside the collection's root.
//! * Client errors are 4xx with a JSON body `{"error": "..."}`; see [`handlers::ApiError`].
//! * Endpoints are described by the OpenAPI document served at `/openapi.json`, generated from
//!   the handlers' annotations and the types they answer with (`api.rs`), with the security the
//!   server was started with.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

mod api;
pub mod collection;
mod handlers;
mod metrics;
pub mod queue;
mod state;

pub use handlers::{ApiError, MAX_K, THUMB_SIDE};
pub use queue::{QueueConfig, QueueStatus};
pub use state::AppState;

/// Server options (the flags of `dolg serve`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Index directory.
    pub db: PathBuf,
    /// Address and port to listen on (default 127.0.0.1:8080).
    pub addr: SocketAddr,
    /// Bearer token required for writes (and for reads too with `token_read`).
    pub token: Option<String>,
    /// Require `token` for reads too (everything but the page, `/health`, `/ready` and `/openapi.json`).
    pub token_read: bool,
    /// Open the index for reading only: writes answer 403, and other readers may share it.
    pub read_only: bool,
    /// Largest request body in bytes (uploads included).
    pub body_limit: usize,
    /// Per-request time limit.
    pub timeout: Duration,
    /// The describing queue's workers and batches.
    pub queue: QueueConfig,
    /// Folder under the collection's root where uploaded photos are stored.
    pub upload_dir: String,
    /// Build the recorded model from these weights (the file moved).
    pub weights: Option<PathBuf>,
    /// Allow cross-origin requests from this origin (`*` for any); none by default.
    pub cors_origin: Option<String>,
}

impl Config {
    /// Defaults for serving the index `db`: 127.0.0.1:8080, no token, read-write, 20 MiB bodies, 60 s
    /// per request, a queue sized for the cores, uploads under `uploads/`, no CORS.
    pub fn new(db: PathBuf) -> Self {
        Self {
            db,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            token_read: false,
            read_only: false,
            body_limit: 20 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            queue: QueueConfig::for_threads(rayon::current_num_threads()),
            upload_dir: "uploads".into(),
            weights: None,
            cors_origin: None,
        }
    }
}

/// How long connections may take to write their last answers once no request is in flight after
/// SIGINT/SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The id of the photo indexed as `name`: the first 16 hex digits of SHA-256(name).
pub fn photo_id(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Open the collection, bind `config.addr`, call `on_listening` with the bound address, load the
/// model (the server answers `/health` meanwhile and `/ready` once it is loaded) and serve until
/// SIGINT or SIGTERM; the index is flushed on the way out. On the signal the server stops
/// accepting connections, lets requests in flight finish (an acknowledged photo is already
/// committed), closes idle and half-sent connections, and returns.
pub fn serve(config: Config, device: &burn::tensor::Device, on_listening: impl FnOnce(SocketAddr)) -> crate::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|source| crate::Error::Io { path: config.db.clone(), source })?;
    let result = rt.block_on(async move {
        let state = Arc::new(AppState::open(config.clone(), device)?);
        let listener =
            tokio::net::TcpListener::bind(config.addr).await.map_err(|source| crate::Error::Io { path: PathBuf::from(config.addr.to_string()), source })?;
        let local = listener.local_addr().map_err(|source| crate::Error::Io { path: PathBuf::from(config.addr.to_string()), source })?;
        on_listening(local);
        let loader = state.clone();
        tokio::task::spawn_blocking(move || loader.load_model());
        let app = handlers::router(state.clone());
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; waiting for requests in flight");
            let _ = stop_tx.send(true);
        });
        // Graceful shutdown alone waits for every connection to close, which a client that sent
        // half a request can put off forever. Once the signal came and no request is in flight,
        // connections are given DRAIN_GRACE to finish writing their last answers, then dropped.
        let drained = {
            let state = state.clone();
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
                state.requests_done().await;
                tokio::time::sleep(DRAIN_GRACE).await;
            }
        };
        let served = tokio::select! {
            r = server.into_future() => r,
            () = drained => Ok(()),
        };
        state.describe.close();
        state.flush();
        served.map_err(|source| crate::Error::Io { path: PathBuf::from(local.to_string()), source })
    });
    // Blocking work still running belongs to requests whose clients left (a description, or a
    // commit that was never acknowledged: the store is crash-safe) or to the model still loading.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
