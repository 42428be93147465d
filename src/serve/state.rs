//! The server's shared state: the collection, the query model, the id table, caches and metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::{Notify, Semaphore};

use super::queue::DescribeQueue;

use super::collection::Served;
use super::metrics::Metrics;
use super::{photo_id, Config};
use crate::collection::{Collection, OpenMode};
use crate::spec::LoadedModel;

/// Thumbnails kept in memory at most (the cache is emptied when it is full).
pub(crate) const THUMB_CACHE: usize = 2048;

/// Everything the request handlers share: one per server, behind an `Arc`.
pub struct AppState {
    /// The options the server was started with.
    pub config: Config,
    /// The open collection; searches take the read lock, commits the write lock ([`AppState::read`], [`AppState::write`]).
    pub collection: RwLock<Box<dyn Served>>,
    /// `Err` holds why the index cannot describe photos (it has no model, or loading failed).
    pub model: OnceLock<Result<Arc<LoadedModel>, String>>,
    /// Set once loading the model has finished, whether or not it succeeded; `/ready` answers 503 until then.
    pub ready: AtomicBool,
    /// id → indexed name, for every live entry.
    pub ids: RwLock<HashMap<String, String>>,
    /// Every description the server makes waits here ([`DescribeQueue`]).
    pub(crate) describe: Arc<DescribeQueue>,
    /// Admission to thumbnail rendering.
    pub thumb_slots: Arc<Semaphore>,
    /// id → JPEG thumbnail.
    pub thumbs: Mutex<HashMap<String, Vec<u8>>>,
    /// Request counts and latencies per route, for `/metrics`.
    pub metrics: Metrics,
    /// Requests whose handler is running (see [`AppState::request_started`]); shutdown waits for 0.
    in_flight: AtomicUsize,
    /// Woken when `in_flight` falls to 0.
    idle: Notify,
    /// Human name of the collection's model (e.g. `DOLG-R50`), as recorded in the index.
    pub model_name: String,
    /// The recorded model fingerprint (SHA-256, hex); empty for an index of imported vectors only.
    pub fingerprint: String,
}

impl AppState {
    /// Open the collection `config.db` (read-only when `config.read_only`) and build the id table;
    /// the model is not loaded yet and the state is not ready.
    pub fn open(config: Config, device: &burn::tensor::Device) -> crate::Result<Self> {
        let mode = if config.read_only { OpenMode::Read } else { OpenMode::Write };
        let c: Box<dyn Served> = match config.db.to_str().filter(|d| crate::index::is_postgres_url(d)) {
            #[cfg(feature = "postgres")]
            Some(url) => {
                if config.weights.is_some() {
                    return Err(crate::collection::CollectionError::Request {
                        reason: "--weights applies to index folders; a PostgreSQL collection builds its recorded model",
                    }
                    .into());
                }
                Box::new(crate::collection::postgres::PgCollection::open(url, mode, device)?)
            }
            _ => {
                let mut c = Collection::open(&config.db, mode, device)?;
                if let Some(w) = &config.weights {
                    c.use_weights(w.clone())?;
                }
                Box::new(c)
            }
        };
        let (model_name, fingerprint) = c.model();
        let ids = c.names()?.into_iter().map(|n| (photo_id(&n), n)).collect();
        Ok(Self {
            describe: DescribeQueue::new(config.queue),
            thumb_slots: Arc::new(Semaphore::new(16)),
            config,
            collection: RwLock::new(c),
            model: OnceLock::new(),
            ready: AtomicBool::new(false),
            ids: RwLock::new(ids),
            thumbs: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            model_name,
            fingerprint: fingerprint.unwrap_or_default(),
        })
    }

    /// Build the query model (blocking; called once at startup), then mark the server ready.
    pub(crate) fn load_model(&self) {
        let loaded = self.read().load_query_model().map(Arc::new).map_err(|e| e.to_string());
        match &loaded {
            Ok(model) => self.describe.start(model.clone()),
            Err(e) => tracing::warn!("photos cannot be described: {e}"),
        }
        let _ = self.model.set(loaded);
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The collection's read lock; a lock poisoned by a panicking handler is taken over.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Box<dyn Served>> {
        self.collection.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The collection's write lock; a lock poisoned by a panicking handler is taken over.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Box<dyn Served>> {
        self.collection.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn name_of_id(&self, id: &str) -> Option<String> {
        self.ids.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub(crate) fn set_id(&self, name: &str, present: bool) {
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        let id = photo_id(name);
        if present {
            ids.insert(id.clone(), name.to_owned());
        } else {
            ids.remove(&id);
        }
        self.thumbs.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Count a request as in flight until the returned guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Wait until no request is in flight.
    pub async fn requests_done(&self) {
        loop {
            let woken = self.idle.notified();
            tokio::pin!(woken);
            // Registered before the check, so a drop to 0 between the check and the wait is seen.
            woken.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            woken.await;
        }
    }

    /// Save derived search structures (on shutdown).
    pub fn flush(&self) {
        if !self.config.read_only {
            if let Err(e) = self.write().flush() {
                tracing::warn!("flushing the index: {e}");
            }
        }
    }
}

/// A request in flight; see [`AppState::request_started`].
pub(crate) struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
