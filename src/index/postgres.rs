//! A collection's store and search on PostgreSQL + pgvector shards: what [`super::Store`] and a
//! [`super::SearchBackend`] are for one machine, for collections that outgrow it.
//!
//! # Layout
//!
//! Each shard is one PostgreSQL database holding two tables:
//! * `dolg_meta`: one row, the shard's position and the collection's description ([`PgMeta`]:
//!   model identity, kind, root, local-feature configuration, shard count), checked on every open
//!   as the local manifest is, so vectors of another model are refused.
//! * `dolg_photos`: one row per photo: `name` (primary key), `sha256` of the file, the `model`
//!   fingerprint, the global `vector` (`vector(D)`, or `halfvec(D)` with [`PgMeta::half`]), its
//!   `local` features (bytea, the local store's compressed block), its `folder`, and its photo's
//!   metadata ([`PhotoMeta`]: `taken`, `camera`, `lat`, `lon`, `width`, `height`, `filesize`; NULL
//!   where unknown), for filters.
//!   HNSW collections carry pgvector's `hnsw (vector vector_ip_ops)` index (M=16,
//!   ef_construction=128, as the local HNSW), built in bulk after the first load
//!   ([`PgStore::ensure_index`]) and maintained by PostgreSQL from then on.
//!
//! A photo lives on the shard chosen by a stable hash of its name ([`shard_of`]: the first eight
//! bytes of its SHA-256, modulo the shard count), so the shard count is fixed when the collection
//! is created.
//!
//! # Writes
//!
//! [`PgStore::commit`] writes a batch as one transaction per shard, all shards at once. Rows are
//! keyed by name and carry (SHA-256, model), so a batch that is written again (a writer killed
//! after some shards committed, then re-run) converges to the same rows: no duplicates, no losses.
//!
//! # Searches
//!
//! Every shard is asked at once (a thread per shard), for its top `k` by inner product; the lists
//! are merged by the single-machine rule: higher score first, ties to the lower row id. A row's id
//! is its `seq`: the writer numbers adds across all shards in the order it makes them (from one
//! past the largest stored), so ties break exactly as in a local index that received the same
//! adds. Exact search is `ORDER BY vector <#> q` over the whole table (index scans off);
//! HNSW uses the index with `hnsw.ef_search` at least `k` and pgvector 0.8's iterative scans
//! (`strict_order`), so a filter cannot starve the result list.
//!
//! # Replicas and failures
//!
//! A shard URL may name streaming replicas (`?replica=HOST:PORT`, repeatable). A store opened to
//! read asks a replica first and the primary when none answers; one opened to write uses whichever
//! of the shard's servers is not in recovery, so after a replica is promoted, writes go to it.
//! A shard none of whose servers answers fails the search with an error naming it, unless the
//! caller allows partial results ([`PgStore::search`] reports the shards that failed).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pgvector::{HalfVector, Vector};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hnsw::DEFAULT_EF_SEARCH;
pub use super::is_postgres_url;
use super::{folder_of, local, IndexError, IndexKind, LocalConfig, ModelIdentity, NamedHit, OpenMode, Record};
use crate::metadata::PhotoMeta;
use crate::model::LocalFeatures;

/// The layout version written into `dolg_meta`: 2 added the metadata columns ([`META_COLUMNS`]) and
/// the DBA layer's (`dolg_photos.dba`, `dolg_meta.dba` and `dba_fresh`), which opening a
/// version-1 collection for writing adds.
const SCHEMA: u32 = 2;
/// The photo metadata columns, in [`PhotoMeta`]'s order, with their types.
const META_COLUMNS: &str = "taken bigint, camera text, lat double precision, lon double precision, width integer, height integer, filesize bigint";
/// Their names.
const META_NAMES: &str = "taken, camera, lat, lon, width, height, filesize";
/// How long a connection attempt to one server may take before it counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// The collection's description, stored on every shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgMeta {
    /// Layout version (1 for this dolg; set by [`PgStore::create`]).
    pub schema: u32,
    /// What produced the vectors.
    pub model: ModelIdentity,
    /// Exact or HNSW search.
    pub kind: IndexKind,
    /// The folder photo names are relative to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Local features stored with each photo, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalConfig>,
    /// Number of shards (fixed at creation, from the `--db` list: names are placed by hash modulo
    /// this; set by [`PgStore::create`]).
    pub shards: usize,
    /// Vectors stored as `halfvec` (float16, half the space; scores round accordingly).
    #[serde(default)]
    pub half: bool,
}

impl PgMeta {
    /// A new collection's description; [`PgStore::create`] fills in the layout version and the
    /// shard count.
    pub fn new(model: ModelIdentity, kind: IndexKind, root: Option<PathBuf>, local: Option<LocalConfig>, half: bool) -> Self {
        Self { schema: SCHEMA, model, kind, root, local, shards: 0, half }
    }
}

/// A query or stored vector as the parameter its column takes: `vector`, or `halfvec` (converted
/// here, once) when the collection stores float16.
fn vector_param(v: &[f32], half: bool) -> Box<dyn ToSql + Sync> {
    if half {
        Box::new(HalfVector::from_f32_slice(v))
    } else {
        Box::new(Vector::from(v.to_vec()))
    }
}

/// A `(name, sha256, model)` row as a [`Hashes`] entry.
fn hash_entry(r: &postgres::Row) -> (String, (Option<Sha256Hash>, String)) {
    let h: Option<Vec<u8>> = r.get(1);
    (r.get(0), (h.and_then(|h| h.try_into().ok()), r.get(2)))
}

/// Run `f` on a thread of its own. The blocking client runs a small async runtime of its own
/// for every call (and when a connection is dropped), which tokio refuses on a thread that already
/// drives one (the server's handlers): every PostgreSQL call of this module runs on a thread made
/// for it, never on the caller's.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("PostgreSQL calls do not panic"))
}

/// A shard's servers, parsed from one URL of a `--db` list.
#[derive(Debug, Clone)]
pub struct ShardUrl {
    /// `host:port/db` of the primary, for messages (never the password).
    pub label: String,
    /// Connection string of the primary (the URL without dolg's `replica` keys).
    primary: String,
    /// Connection strings of its replicas.
    replicas: Vec<String>,
}

/// Parse `--db postgres://a,postgres://b?replica=h:p`: one shard per comma-separated URL, each
/// with its replicas as repeated `replica=HOST:PORT` query keys.
pub fn parse_urls(db: &str) -> Result<Vec<ShardUrl>, IndexError> {
    let bad = |url: &str, reason: &str| IndexError::Shard { shard: redact(url), reason: reason.to_owned() };
    db.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|url| {
            if !is_postgres_url(url) {
                return Err(bad(url, "not a postgres:// URL (every shard of a --db list must be one)"));
            }
            let (scheme, rest) = url.split_once("://").expect("checked above");
            let (base, query) = rest.split_once('?').map_or((rest, ""), |(b, q)| (b, q));
            let (authority, path) = base.split_once('/').map_or((base, ""), |(a, p)| (a, p));
            let (userinfo, hostport) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
            if hostport.is_empty() {
                return Err(bad(url, "names no host"));
            }
            let (mut keep, mut replicas) = (Vec::new(), Vec::new());
            for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                match kv.split_once('=') {
                    Some(("replica", hp)) if !hp.is_empty() => replicas.push(hp.to_owned()),
                    Some(("replica", _)) => return Err(bad(url, "'replica=' needs HOST:PORT")),
                    _ => keep.push(kv),
                }
            }
            // Connections fail fast, so an unreachable shard is reported, not waited on (unless
            // the URL says otherwise).
            let timeout = format!("connect_timeout={}", CONNECT_TIMEOUT.as_secs());
            if !keep.iter().any(|kv| kv.starts_with("connect_timeout=")) {
                keep.push(&timeout);
            }
            let user = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
            let conn = |hp: &str| format!("{scheme}://{user}{hp}/{path}?{}", keep.join("&"));
            Ok(ShardUrl { label: format!("{hostport}/{path}"), primary: conn(hostport), replicas: replicas.iter().map(|hp| conn(hp)).collect() })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| if v.is_empty() { Err(bad(db, "no URL given")) } else { Ok(v) })
}

/// `url` (or a comma-separated list of them) without passwords, for messages.
fn redact(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// The shard that holds `name` among `shards`: stable across runs, machines and versions.
pub fn shard_of(name: &str, shards: usize) -> usize {
    let h = Sha256::digest(name.as_bytes());
    (u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) % shards as u64) as usize
}

/// A filter as SQL over `dolg_photos` (its `name` and `folder` columns): a boolean expression
/// whose placeholders start at `$`[`SqlWhere::FIRST_PARAM`], with text parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlWhere {
    /// The condition, e.g. `(folder = $3 OR folder LIKE $4)`.
    pub clause: String,
    /// The values of `$3`, `$4`, ...
    pub params: Vec<String>,
}

impl SqlWhere {
    /// The first placeholder a clause may use (`$1` and `$2` are the query vector and the limit).
    pub const FIRST_PARAM: usize = 3;
}

/// A file's SHA-256.
pub type Sha256Hash = [u8; 32];

/// The parameters of a DBA layer, as `dolg_meta.dba` records them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct DbaParams {
    k: usize,
    alpha: f32,
}

/// Stored names with their file's SHA-256 (when known) and the model key they were described with.
pub type Hashes = std::collections::HashMap<String, (Option<Sha256Hash>, String)>;

/// A shard that did not answer, for searches that allow partial results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardFailure {
    /// `host:port/db` of the shard's primary.
    pub shard: String,
    /// Why.
    pub error: String,
}

struct Shard {
    url: ShardUrl,
    client: Mutex<Option<Client>>,
}

/// An opened collection on PostgreSQL shards.
pub struct PgStore {
    shards: Vec<Shard>,
    meta: PgMeta,
    mode: OpenMode,
    ef_search: usize,
    /// The `--db` value, password hidden.
    display: String,
    /// The row id the next add gets (writers only).
    next_seq: std::sync::atomic::AtomicU64,
}

impl Drop for PgStore {
    /// Close the connections on a thread of their own (the blocking client cannot close them inside an async runtime).
    fn drop(&mut self) {
        let clients: Vec<Client> = self.shards.iter_mut().filter_map(|s| s.client.get_mut().unwrap_or_else(|p| p.into_inner()).take()).collect();
        off_runtime(move || drop(clients));
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.display).field("kind", &self.meta.kind).finish()
    }
}

fn shard_err(label: &str, reason: impl std::fmt::Display) -> IndexError {
    IndexError::Shard { shard: label.to_owned(), reason: reason.to_string() }
}

/// The first error's message with its cause (postgres::Error's Display hides the server's words).
fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// Connect to a shard: to write, the server that is not in recovery; to read, a replica first.
fn connect(url: &ShardUrl, mode: OpenMode) -> Result<Client, IndexError> {
    let mut tried = Vec::new();
    let order: Vec<&String> = match mode {
        OpenMode::Read => url.replicas.iter().chain(std::iter::once(&url.primary)).collect(),
        OpenMode::Write => std::iter::once(&url.primary).chain(&url.replicas).collect(),
    };
    for conn in order {
        let mut client = match conn.parse::<postgres::Config>().and_then(|c| c.connect(NoTls)) {
            Ok(c) => c,
            Err(e) => {
                tried.push(format!("{}: {}", redact(conn), pg_reason(&e)));
                continue;
            }
        };
        if mode == OpenMode::Write {
            match client.query_one("SELECT pg_is_in_recovery()", &[]) {
                Ok(row) if !row.get::<_, bool>(0) => return Ok(client),
                Ok(_) => tried.push(format!("{}: a replica in recovery (read-only)", redact(conn))),
                Err(e) => tried.push(format!("{}: {}", redact(conn), pg_reason(&e))),
            }
            continue;
        }
        return Ok(client);
    }
    let what = if mode == OpenMode::Write { "no writable server answered" } else { "no server answered" };
    Err(shard_err(&url.label, format!("{what} ({})", tried.join("; "))))
}

impl PgStore {
    /// Connect to every shard at once. To read, a shard that does not answer is kept without a
    /// connection (a search retries it, and fails or, when allowed, leaves it out); to write,
    /// every shard must answer.
    fn connect_all(urls: Vec<ShardUrl>, mode: OpenMode) -> Result<Vec<Shard>, IndexError> {
        let outcomes: Vec<(ShardUrl, Result<Client, IndexError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = urls.into_iter().map(|u| s.spawn(move || (u.clone(), connect(&u, mode)))).collect();
            handles.into_iter().map(|h| h.join().expect("connect does not panic")).collect()
        });
        let connected = outcomes.iter().filter(|(_, c)| c.is_ok()).count();
        let (mut shards, mut first_err) = (Vec::with_capacity(outcomes.len()), None);
        for (url, c) in outcomes {
            let client = c.map_err(|e| first_err = first_err.take().or(Some(e))).ok();
            shards.push(Shard { url, client: Mutex::new(client) });
        }
        match first_err {
            Some(e) if mode == OpenMode::Write || connected == 0 => Err(e),
            _ => Ok(shards),
        }
    }

    /// Create the collection on the shards `db` names (none may hold one yet).
    pub fn create(db: &str, meta: PgMeta) -> Result<Self, IndexError> {
        off_runtime(|| Self::create_here(db, meta))
    }

    fn create_here(db: &str, meta: PgMeta) -> Result<Self, IndexError> {
        let urls = parse_urls(db)?;
        let meta = PgMeta { schema: SCHEMA, shards: urls.len(), ..meta };
        let shards = Self::connect_all(urls, OpenMode::Write)?;
        let json = serde_json::to_string(&meta).expect("serialisable");
        let (dim, vtype) = (meta.model.dim, if meta.half { "halfvec" } else { "vector" });
        for (i, shard) in shards.iter().enumerate() {
            let label = &shard.url.label;
            let mut guard = shard.client.lock().expect("not poisoned");
            let client = guard.as_mut().expect("connected");
            let exists: bool = client.query_one("SELECT to_regclass('dolg_meta') IS NOT NULL", &[]).map_err(|e| shard_err(label, pg_reason(&e)))?.get(0);
            if exists {
                return Err(shard_err(label, "already holds a dolg collection (dolg_meta exists); open it, or drop its dolg_ tables first"));
            }
            let mut tx = client.transaction().map_err(|e| shard_err(label, pg_reason(&e)))?;
            let ddl = format!(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TABLE dolg_meta (shard integer NOT NULL, collection text NOT NULL, dba text, dba_fresh boolean NOT NULL DEFAULT false,
                     generation bigint NOT NULL DEFAULT 0);
                 CREATE TABLE dolg_photos (
                     seq bigint NOT NULL,
                     name text PRIMARY KEY,
                     sha256 bytea,
                     model text NOT NULL,
                     vector {vtype}({dim}) NOT NULL,
                     local bytea,
                     folder text NOT NULL,
                     {META_COLUMNS},
                     dba {vtype}({dim}));
                 CREATE INDEX dolg_photos_folder ON dolg_photos (folder text_pattern_ops);
                 CREATE INDEX dolg_photos_seq ON dolg_photos (seq);"
            );
            tx.batch_execute(&ddl).map_err(|e| shard_err(label, pg_reason(&e)))?;
            tx.execute("INSERT INTO dolg_meta VALUES ($1, $2)", &[&(i as i32), &json]).map_err(|e| shard_err(label, pg_reason(&e)))?;
            tx.commit().map_err(|e| shard_err(label, pg_reason(&e)))?;
        }
        Ok(Self { shards, meta, mode: OpenMode::Write, ef_search: DEFAULT_EF_SEARCH, display: redact(db), next_seq: 0.into() })
    }

    /// Whether the first shard `db` names holds a collection (false when it cannot be reached).
    pub fn exists(db: &str) -> Result<bool, IndexError> {
        off_runtime(|| Self::exists_here(db))
    }

    fn exists_here(db: &str) -> Result<bool, IndexError> {
        let urls = parse_urls(db)?;
        let mut client = connect(&urls[0], OpenMode::Read)?;
        let row = client.query_one("SELECT to_regclass('dolg_meta') IS NOT NULL", &[]).map_err(|e| shard_err(&urls[0].label, pg_reason(&e)))?;
        Ok(row.get(0))
    }

    /// Open the collection on the shards `db` names, checking that every shard holds the same
    /// collection, in the position the list gives it.
    pub fn open(db: &str, mode: OpenMode) -> Result<Self, IndexError> {
        off_runtime(|| Self::open_here(db, mode))
    }

    fn open_here(db: &str, mode: OpenMode) -> Result<Self, IndexError> {
        let urls = parse_urls(db)?;
        let n = urls.len();
        let shards = Self::connect_all(urls, mode)?;
        let mut meta: Option<PgMeta> = None;
        for (i, shard) in shards.iter().enumerate() {
            let label = &shard.url.label;
            let mut guard = shard.client.lock().expect("not poisoned");
            // A shard that did not answer (reading only) is checked when it answers again.
            let Some(client) = guard.as_mut() else { continue };
            let rows = client.query("SELECT shard, collection FROM dolg_meta", &[]).map_err(|e| {
                if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
                    shard_err(label, "holds no dolg collection (no dolg_meta table); create one with `dolg index build --db URL`")
                } else {
                    shard_err(label, pg_reason(&e))
                }
            })?;
            let [row] = &rows[..] else { return Err(shard_err(label, format!("dolg_meta holds {} rows, expected 1", rows.len()))) };
            let (pos, json): (i32, String) = (row.get(0), row.get(1));
            let m: PgMeta = serde_json::from_str(&json).map_err(|e| shard_err(label, format!("unreadable collection description in dolg_meta: {e}")))?;
            if m.schema > SCHEMA {
                return Err(shard_err(label, format!("collection layout {} was written by a newer dolg (this one reads up to {SCHEMA})", m.schema)));
            }
            if m.shards != n || pos as usize != i {
                return Err(shard_err(
                    label,
                    format!("is shard {} of a {}-shard collection, but the --db list gives it as shard {i} of {n}: list every shard, in the order they were created", pos, m.shards),
                ));
            }
            match meta.as_mut() {
                // The layout version may differ (an upgrade that stopped part-way): the lowest
                // wins, so opening for writing finishes the upgrade.
                Some(first) if PgMeta { schema: 0, ..first.clone() } != PgMeta { schema: 0, ..m.clone() } => {
                    return Err(shard_err(label, "holds a different collection (model, kind or root) than the first shard"))
                }
                Some(first) => first.schema = first.schema.min(m.schema),
                None => meta = Some(m),
            }
        }
        let mut store = Self { shards, meta: meta.expect("at least one shard"), mode, ef_search: DEFAULT_EF_SEARCH, display: redact(db), next_seq: 0.into() };
        if mode == OpenMode::Write && store.meta.schema < SCHEMA {
            store.meta.schema = SCHEMA;
            let json = serde_json::to_string(&store.meta).expect("serialisable");
            let add: Vec<String> = META_COLUMNS.split(", ").map(|c| format!("ADD COLUMN IF NOT EXISTS {c}")).collect();
            let vtype = if store.meta.half { "halfvec" } else { "vector" };
            let ddl = format!(
                "ALTER TABLE dolg_photos {}, ADD COLUMN IF NOT EXISTS dba {vtype}({});
                 ALTER TABLE dolg_meta ADD COLUMN IF NOT EXISTS dba text, ADD COLUMN IF NOT EXISTS dba_fresh boolean NOT NULL DEFAULT false,
                     ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0;
                 CREATE INDEX IF NOT EXISTS dolg_photos_seq ON dolg_photos (seq)",
                add.join(", "),
                store.meta.model.dim
            );
            store.each_shard(|_, c| {
                let mut tx = c.transaction()?;
                tx.batch_execute(&ddl)?;
                tx.execute("UPDATE dolg_meta SET collection = $1", &[&json])?;
                tx.commit()
            })?;
        }
        if mode == OpenMode::Write {
            let next = store.each_shard(|_, c| c.query_one("SELECT coalesce(max(seq) + 1, 0) FROM dolg_photos", &[]).map(|r| r.get::<_, i64>(0)))?;
            store.next_seq.store(next.into_iter().max().unwrap_or(0) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The collection's description.
    pub fn meta(&self) -> &PgMeta {
        &self.meta
    }

    /// The `--db` value (password hidden), for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The shards' labels (`host:port/db`), in order.
    pub fn shard_labels(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.url.label.clone()).collect()
    }

    /// HNSW: candidates examined per query (at least `k`, at most pgvector's 1000).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.ef_search = ef.max(1);
    }

    /// Record a new root on every shard (the photos moved).
    pub fn set_root(&mut self, root: PathBuf) -> Result<(), IndexError> {
        self.check_writable()?;
        let meta = PgMeta { root: Some(root), ..self.meta.clone() };
        let json = serde_json::to_string(&meta).expect("serialisable");
        self.each_shard(|_, client| client.execute("UPDATE dolg_meta SET collection = $1", &[&json]).map(|_| ()))?;
        self.meta = meta;
        Ok(())
    }

    fn check_writable(&self) -> Result<(), IndexError> {
        if self.mode != OpenMode::Write {
            return Err(IndexError::ReadOnly { path: PathBuf::from(&self.display) });
        }
        Ok(())
    }

    /// Run `f` on every shard at once; the first shard that fails fails the call, named.
    fn each_shard<T: Send>(&self, f: impl Fn(usize, &mut Client) -> Result<T, postgres::Error> + Sync) -> Result<Vec<T>, IndexError> {
        self.each_shard_partial(&f).into_iter().collect()
    }

    /// Run `f` on every shard at once, keeping each shard's own outcome. A shard whose
    /// connection broke is reconnected once (a restarted or promoted server) before it counts as
    /// failed.
    fn each_shard_partial<T: Send>(&self, f: &(impl Fn(usize, &mut Client) -> Result<T, postgres::Error> + Sync)) -> Vec<Result<T, IndexError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .shards
                .iter()
                .enumerate()
                .map(|(i, shard)| {
                    s.spawn(move || {
                        let mut guard = shard.client.lock().unwrap_or_else(|p| p.into_inner());
                        let label = &shard.url.label;
                        if let Some(c) = guard.as_mut() {
                            match f(i, c) {
                                Ok(v) => return Ok(v),
                                Err(e)
                                    if !c.is_closed() && e.as_db_error().is_some_and(|d| d.code() != &postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) =>
                                {
                                    return Err(shard_err(label, pg_reason(&e)));
                                }
                                Err(_) => {}
                            }
                        }
                        // Gone or demoted: find the shard's server again (a promoted replica).
                        *guard = None;
                        let mut c = connect(&shard.url, self.mode)?;
                        let v = f(i, &mut c).map_err(|e| shard_err(label, pg_reason(&e)))?;
                        *guard = Some(c);
                        Ok(v)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("shard work does not panic")).collect()
        })
    }

    /// HNSW collections: build pgvector's index on every shard that lacks it (all at once), in
    /// bulk over the rows already loaded, which is many times faster than growing it row by row;
    /// afterwards PostgreSQL maintains it on every write. Writers call it when a load is done; a
    /// collection searched before has exact (sequential-scan) results meanwhile.
    pub fn ensure_index(&self) -> Result<(), IndexError> {
        if self.meta.kind != IndexKind::Hnsw {
            return Ok(());
        }
        self.check_writable()?;
        let ops = if self.meta.half { "halfvec_ip_ops" } else { "vector_ip_ops" };
        let sql = format!("CREATE INDEX IF NOT EXISTS dolg_photos_hnsw ON dolg_photos USING hnsw (vector {ops}) WITH (m = 16, ef_construction = 128)");
        self.each_shard(|_, c| c.batch_execute(&sql))?;
        Ok(())
    }

    /// What compaction is to a local index: `VACUUM (ANALYZE)` of every shard's table, which
    /// reclaims the space of removed and replaced rows (and of their HNSW graph entries) and
    /// refreshes the planner's statistics.
    pub fn vacuum(&self) -> Result<(), IndexError> {
        self.check_writable()?;
        // VACUUM cannot run in a transaction block; the simple query protocol runs it alone.
        self.each_shard(|_, c| c.batch_execute("VACUUM (ANALYZE) dolg_photos"))?;
        Ok(())
    }

    /// Live entries over all shards.
    pub fn count(&self) -> Result<usize, IndexError> {
        Ok(self.counts()?.into_iter().sum())
    }

    /// Entries per shard, in shard order.
    pub fn counts(&self) -> Result<Vec<usize>, IndexError> {
        self.each_shard(|_, c| c.query_one("SELECT count(*) FROM dolg_photos", &[]).map(|r| r.get::<_, i64>(0) as usize))
    }

    /// For each name, the stored (SHA-256, model) when the name is indexed.
    pub fn hashes(&self, names: &[String]) -> Result<Hashes, IndexError> {
        let by_shard = self.split(names);
        let found = self.each_shard(|i, c| {
            Ok(c.query("SELECT name, sha256, model FROM dolg_photos WHERE name = ANY($1)", &[&by_shard[i]])?.iter().map(hash_entry).collect::<Vec<_>>())
        })?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Whether `name` is stored with this content hash, by this collection's model.
    pub fn is_current(known: &Hashes, name: &str, hash: &[u8; 32], model: &str) -> bool {
        known.get(name).is_some_and(|(h, m)| h.as_ref() == Some(hash) && m == model)
    }

    /// This collection's model key as stored with each row: the fingerprint, or the model's
    /// name for imported vectors.
    pub fn model_key(&self) -> String {
        self.meta.model.fingerprint.clone().unwrap_or_else(|| self.meta.model.name.clone())
    }

    fn split(&self, names: &[String]) -> Vec<Vec<String>> {
        let mut by = vec![Vec::new(); self.shards.len()];
        for n in names {
            by[shard_of(n, self.shards.len())].push(n.clone());
        }
        by
    }

    /// Apply a batch: one transaction per shard, all shards at once. Within the batch the last
    /// record of a name decides (as in the local store); adds replace the row of their name.
    pub fn commit(&self, records: Vec<Record>) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let (dim, n) = (self.meta.model.dim, self.shards.len());
        // The last record of each name, split by shard.
        let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let name = match r {
                Record::Add { name, vector, local, .. } => {
                    if vector.len() != dim {
                        return Err(IndexError::Dimension { name: name.clone(), expected: dim, found: vector.len() });
                    }
                    if let Some(f) = local {
                        if self.meta.local.as_ref().is_none_or(|c| c.dim != f.dim) || !f.is_consistent() {
                            return Err(IndexError::LocalMismatch { name: name.clone(), given: f.dim, index: self.meta.local.as_ref().map(|c| c.dim) });
                        }
                    }
                    name
                }
                Record::Remove { name } => name,
            };
            last.insert(name.clone(), i);
        }
        let mut adds: Vec<Vec<(i64, &Record)>> = vec![Vec::new(); n];
        let mut removes: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut order: Vec<(&String, &usize)> = last.iter().collect();
        order.sort_by_key(|(_, &i)| i);
        let add_count = order.iter().filter(|(_, &i)| matches!(records[i], Record::Add { .. })).count() as u64;
        let mut seq = self.next_seq.fetch_add(add_count, std::sync::atomic::Ordering::Relaxed) as i64;
        for (name, &i) in order {
            match &records[i] {
                r @ Record::Add { .. } => {
                    adds[shard_of(name, n)].push((seq, r));
                    seq += 1;
                }
                Record::Remove { .. } => removes[shard_of(name, n)].push(name.clone()),
            }
        }
        let model = self.model_key();
        let (half, encoding) = (self.meta.half, self.meta.local.as_ref().map(|c| c.encoding));
        let vtype = if half { "halfvec" } else { "vector" };
        self.each_shard(|i, c| {
            if adds[i].is_empty() && removes[i].is_empty() {
                return Ok(());
            }
            let mut tx = c.transaction()?;
            // Any change makes a DBA layer stale until it is computed again (as locally). First, and
            // always (it locks the row until this commits): a layer being stored meanwhile either
            // waits for this change and sees it, or is stored before it and marked stale by it.
            tx.execute("UPDATE dolg_meta SET dba_fresh = false, generation = generation + 1", &[])?;
            if !removes[i].is_empty() {
                tx.execute("DELETE FROM dolg_photos WHERE name = ANY($1)", &[&removes[i]])?;
            }
            if !adds[i].is_empty() {
                // Binary COPY into a scratch table, then one upsert: the bulk path for any batch.
                tx.batch_execute(&format!(
                    "CREATE TEMP TABLE dolg_in (seq bigint, name text, sha256 bytea, model text, vector {vtype}, local bytea, folder text, {META_COLUMNS}) ON COMMIT DROP"
                ))?;
                let types = tx.prepare("INSERT INTO dolg_in VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")?.params().to_vec();
                let sink = tx.copy_in("COPY dolg_in FROM STDIN (FORMAT binary)")?;
                let mut w = BinaryCopyInWriter::new(sink, &types);
                for (seq, r) in &adds[i] {
                    let Record::Add { name, hash, vector, local, meta } = r else { unreachable!("adds only") };
                    let hash: Option<Vec<u8>> = hash.map(|h| h.to_vec());
                    let block: Option<Vec<u8>> = local.as_ref().zip(encoding).map(|(f, e)| local::encode_block(f, e));
                    let folder = folder_of(name);
                    let m = meta.as_deref().cloned().unwrap_or_default();
                    let (lat, lon) = (m.gps.map(|g| g[0]), m.gps.map(|g| g[1]));
                    let (width, height) = (m.width.map(|w| w as i32), m.height.map(|h| h as i32));
                    let filesize = m.filesize.map(|b| b as i64);
                    w.write(&[seq, name, &hash, &model, vector_param(vector, half).as_ref(), &block, &folder, &m.taken, &m.camera, &lat, &lon, &width, &height, &filesize])?;
                }
                w.finish()?;
                tx.execute(
                    &format!(
                        "INSERT INTO dolg_photos (seq, name, sha256, model, vector, local, folder, {META_NAMES})
                         SELECT seq, name, sha256, model, vector, local, folder, {META_NAMES} FROM dolg_in
                         ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, sha256 = EXCLUDED.sha256, model = EXCLUDED.model,
                             vector = EXCLUDED.vector, local = EXCLUDED.local, folder = EXCLUDED.folder, dba = NULL, {}",
                        META_NAMES.split(", ").map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
                    ),
                    &[],
                )?;
            }
            tx.commit()?;
            // A writer killed after some shards committed: the crash test's point.
            if crate::failpoints::requested().is_some() {
                crate::failpoints::check(&format!("pg-commit:{i}"));
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Top `k` entries per query (`k == 0`: every entry scoring at least `min_score`), best
    /// first, among those `filter` keeps and not named in `exclude[q]`; `exact` forces exact
    /// search on an HNSW collection. With `allow_partial`, shards that fail are reported instead
    /// of failing the search.
    #[allow(clippy::too_many_arguments)]
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        min_score: f32,
        filter: Option<&SqlWhere>,
        exclude: &[Option<String>],
        exact: bool,
        dba: bool,
        allow_partial: bool,
    ) -> Result<(Vec<Vec<NamedHit>>, Vec<ShardFailure>), IndexError> {
        let dim = self.meta.model.dim;
        let nq = queries.len() / dim;
        let n = self.shards.len();
        // The DBA vectors are compared exactly, whatever the kind (as locally).
        let hnsw = self.meta.kind == IndexKind::Hnsw && !exact && !dba;
        let column = if dba { "dba" } else { "vector" };
        // Rows added after the layer was found fresh have none (the layer is stale from then on).
        let dba_rows = if dba { "AND dba IS NOT NULL" } else { "" };
        let vtype = if self.meta.half { "halfvec" } else { "vector" };
        let where_ = filter.map_or(String::new(), |f| format!("AND {}", f.clause));
        let (limit, range) = if k == 0 { (i64::MAX, true) } else { ((k + 1) as i64, false) };
        // Ties go to the lower seq (the lower row), as on one machine; a range query compares in
        // SQL, a top-k query drops low scores after merging.
        let score_cut = if range { format!("AND ({column} <#> $1::{vtype}) <= {}", -(min_score as f64)) } else { String::new() };
        let order = if hnsw { "d" } else { "d, seq" };
        let sql =
            format!("SELECT seq, name, ({column} <#> $1::{vtype}) AS d FROM dolg_photos WHERE TRUE {dba_rows} {where_} {score_cut} ORDER BY {order} LIMIT $2");
        let ef = self.ef_search.max(k + 1).min(MAX_EF_SEARCH);
        let outcomes = self.each_shard_partial(&|_, c| {
            let mut tx = c.transaction()?;
            if hnsw {
                tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = strict_order"))?;
            } else {
                tx.batch_execute("SET LOCAL enable_indexscan = off")?;
            }
            let stmt = tx.prepare(&sql)?;
            let mut per_query = Vec::with_capacity(nq);
            for q in queries.chunks(dim) {
                let v = vector_param(q, self.meta.half);
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![v.as_ref(), &limit];
                if let Some(f) = filter {
                    params.extend(f.params.iter().map(|p| p as &(dyn ToSql + Sync)));
                }
                let rows = tx.query(&stmt, &params)?;
                per_query.push(
                    rows.iter()
                        .map(|r| {
                            let (seq, name, d): (i64, String, f64) = (r.get(0), r.get(1), r.get(2));
                            NamedHit { row: seq as usize, name, score: -d as f32, inliers: None }
                        })
                        .collect::<Vec<_>>(),
                );
            }
            tx.commit()?;
            Ok(per_query)
        });
        let mut failures = Vec::new();
        let mut lists: Vec<Vec<NamedHit>> = vec![Vec::new(); nq];
        for (shard, outcome) in self.shards.iter().zip(outcomes) {
            match outcome {
                Ok(per_query) => lists.iter_mut().zip(per_query).for_each(|(l, hits)| l.extend(hits)),
                Err(e) if allow_partial => failures.push(ShardFailure { shard: shard.url.label.clone(), error: e.to_string() }),
                Err(e) => return Err(e),
            }
        }
        if failures.len() == n {
            return Err(shard_err(&self.display, format!("no shard answered ({})", failures.iter().map(|f| f.error.as_str()).collect::<Vec<_>>().join("; "))));
        }
        let results = lists
            .into_iter()
            .zip(exclude.iter().chain(std::iter::repeat(&None)))
            .map(|(mut hits, ex)| {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
                let keep = hits.into_iter().filter(|h| h.score >= min_score && ex.as_deref() != Some(h.name.as_str()));
                if range {
                    keep.collect()
                } else {
                    keep.take(k).collect()
                }
            })
            .collect();
        Ok((results, failures))
    }

    /// The stored vector and row of each name (`None` where not indexed), with its local
    /// features when `with_local`.
    pub fn get(&self, names: &[String], with_local: bool) -> Result<Vec<Option<Stored>>, IndexError> {
        let by_shard = self.split(names);
        let local_col = if with_local { "local" } else { "NULL::bytea" };
        // A version-1 collection opened to read has no metadata columns yet.
        let meta_cols = if self.meta.schema >= 2 {
            META_NAMES.to_owned()
        } else {
            "NULL::bigint, NULL, NULL::float8, NULL::float8, NULL::int, NULL::int, NULL::bigint".into()
        };
        let sql = format!("SELECT seq, name, vector::real[], {local_col}, {meta_cols} FROM dolg_photos WHERE name = ANY($1)");
        let found = self.each_shard(|i, c| {
            let rows = c.query(&sql, &[&by_shard[i]])?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(1), (r.get::<_, i64>(0) as usize, r.get::<_, Vec<f32>>(2), r.get::<_, Option<Vec<u8>>>(3), meta_of(r, 4))))
                .collect::<Vec<_>>())
        })?;
        type Found = (usize, Vec<f32>, Option<Vec<u8>>, Option<PhotoMeta>);
        let mut map: std::collections::HashMap<String, Found> = found.into_iter().flatten().collect();
        names
            .iter()
            .map(|name| {
                map.remove(name)
                    .map(|(row, vector, block, meta)| {
                        let local = block.map(|b| local::decode_block(Path::new(&format!("{}:{name}", self.display)), &b)).transpose()?;
                        Ok(Stored { row, vector, local, meta })
                    })
                    .transpose()
            })
            .collect()
    }

    /// The DBA layer the shards hold: `(k, α, fresh)`, fresh when every shard says so (no entry
    /// changed since it was computed); `None` without one. With `allow_partial`, shards that do
    /// not answer are left out (a search leaves them out too).
    pub fn dba_layer(&self, allow_partial: bool) -> Result<Option<(usize, f32, bool)>, IndexError> {
        if self.meta.schema < 2 {
            return Ok(None);
        }
        let outcomes = self.each_shard_partial(&|_, c| {
            let r = c.query_one("SELECT dba, dba_fresh FROM dolg_meta", &[])?;
            Ok((r.get::<_, Option<String>>(0), r.get::<_, bool>(1)))
        });
        let mut rows = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Ok(r) => rows.push(r),
                Err(_) if allow_partial => {}
                Err(e) => return Err(e),
            }
        }
        let Some(Some(first)) = rows.first().map(|r| r.0.clone()) else { return Ok(None) };
        let params: DbaParams = serde_json::from_str(&first).map_err(|e| shard_err(&self.display, format!("unreadable DBA description in dolg_meta: {e}")))?;
        let fresh = rows.iter().all(|(d, f)| *f && d.as_deref() == Some(first.as_str()));
        Ok(Some((params.k, params.alpha, fresh)))
    }

    /// Each shard's write generation (every commit adds one): what [`PgStore::write_dba`]
    /// checks has not changed since the vectors the layer was computed from were read.
    pub fn stamps(&self) -> Result<Vec<i64>, IndexError> {
        self.each_shard(|_, c| c.query_one("SELECT generation FROM dolg_meta", &[]).map(|r| r.get(0)))
    }

    /// Store a DBA layer: `vectors[i]` for the entry `names[i]`, made with `k` neighbours and
    /// `alpha` from the entries the shards held at `stamps`; one transaction per shard, which
    /// fails (changing nothing there) when its entries changed meanwhile.
    pub fn write_dba(&self, names: &[String], vectors: &[f32], k: usize, alpha: f32, stamps: &[i64]) -> Result<(), IndexError> {
        self.check_writable()?;
        let dim = self.meta.model.dim;
        let n = self.shards.len();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, name) in names.iter().enumerate() {
            by_shard[shard_of(name, n)].push(i);
        }
        let json = serde_json::to_string(&DbaParams { k, alpha }).expect("serialisable");
        let (half, vtype) = (self.meta.half, if self.meta.half { "halfvec" } else { "vector" });
        let changed = std::sync::atomic::AtomicBool::new(false);
        self.each_shard(|i, c| {
            let mut tx = c.transaction()?;
            // Writers update this row first: holding it, no change can slip in unseen.
            tx.execute("SELECT 1 FROM dolg_meta FOR UPDATE", &[])?;
            if tx.query_one("SELECT generation FROM dolg_meta", &[])?.get::<_, i64>(0) != stamps[i] {
                changed.store(true, std::sync::atomic::Ordering::Relaxed);
                return tx.rollback();
            }
            tx.batch_execute(&format!("CREATE TEMP TABLE dolg_dba_in (name text, dba {vtype}) ON COMMIT DROP"))?;
            let types = tx.prepare("INSERT INTO dolg_dba_in VALUES ($1, $2)")?.params().to_vec();
            let mut w = BinaryCopyInWriter::new(tx.copy_in("COPY dolg_dba_in FROM STDIN (FORMAT binary)")?, &types);
            for &j in &by_shard[i] {
                w.write(&[&names[j], vector_param(&vectors[j * dim..(j + 1) * dim], half).as_ref()])?;
            }
            w.finish()?;
            tx.execute("UPDATE dolg_photos p SET dba = t.dba FROM dolg_dba_in t WHERE p.name = t.name", &[])?;
            tx.execute("UPDATE dolg_meta SET dba = $1, dba_fresh = true", &[&json])?;
            tx.commit()
        })?;
        if changed.into_inner() {
            return Err(shard_err(&self.display, "entries changed while the DBA layer was computed; run it again"));
        }
        Ok(())
    }

    /// The DBA vectors of `names` (`None` where not indexed or without one).
    pub fn get_dba(&self, names: &[String]) -> Result<Vec<Option<Vec<f32>>>, IndexError> {
        let by_shard = self.split(names);
        let found = self.each_shard(|i, c| {
            let rows = c.query("SELECT name, dba::real[] FROM dolg_photos WHERE name = ANY($1) AND dba IS NOT NULL", &[&by_shard[i]])?;
            Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, Vec<f32>>(1))).collect::<Vec<_>>())
        })?;
        let mut map: std::collections::HashMap<String, Vec<f32>> = found.into_iter().flatten().collect();
        Ok(names.iter().map(|n| map.remove(n)).collect())
    }

    /// The names of the rows `rows` (their `seq`), where they exist.
    pub fn names_of_rows(&self, rows: &[usize]) -> Result<std::collections::HashMap<usize, String>, IndexError> {
        let seqs: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let found = self.each_shard(|_, c| {
            Ok(c.query("SELECT seq, name FROM dolg_photos WHERE seq = ANY($1)", &[&seqs])?
                .iter()
                .map(|r| (r.get::<_, i64>(0) as usize, r.get(1)))
                .collect::<Vec<_>>())
        })?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Names and vectors of every entry, in row order (the order they were added in).
    pub fn export(&self) -> Result<(Vec<String>, Vec<f32>), IndexError> {
        let parts = self.each_shard(|_, c| {
            let rows = c.query("SELECT seq, name, vector::real[] FROM dolg_photos", &[])?;
            Ok(rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, Vec<f32>>(2))).collect::<Vec<_>>())
        })?;
        let mut all: Vec<(i64, String, Vec<f32>)> = parts.into_iter().flatten().collect();
        all.sort_unstable_by_key(|(seq, _, _)| *seq);
        let vectors = all.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        Ok((all.into_iter().map(|(_, n, _)| n).collect(), vectors))
    }

    /// Every entry's name with its SHA-256 and model key (sync plans with them).
    pub fn names(&self) -> Result<Hashes, IndexError> {
        let found = self.each_shard(|_, c| Ok(c.query("SELECT name, sha256, model FROM dolg_photos", &[])?.iter().map(hash_entry).collect::<Vec<_>>()))?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// An entry read back: its row id, vector and local features.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Row id (its `seq`).
    pub row: usize,
    /// The stored global vector.
    pub vector: Vec<f32>,
    /// Its local features, when asked for and stored.
    pub local: Option<LocalFeatures>,
    /// Its photo's metadata, if it was added with some.
    pub meta: Option<PhotoMeta>,
}

/// The metadata columns of `r` from column `first` on ([`META_NAMES`]'s order); `None` when all
/// are NULL (an entry added without metadata: a photo always has its file size).
fn meta_of(r: &postgres::Row, first: usize) -> Option<PhotoMeta> {
    let (lat, lon): (Option<f64>, Option<f64>) = (r.get(first + 2), r.get(first + 3));
    let m = PhotoMeta {
        taken: r.get(first),
        camera: r.get(first + 1),
        gps: lat.zip(lon).map(|(a, b)| [a, b]),
        width: r.get::<_, Option<i32>>(first + 4).map(|w| w as u32),
        height: r.get::<_, Option<i32>>(first + 5).map(|h| h as u32),
        filesize: r.get::<_, Option<i64>>(first + 6).map(|b| b as u64),
    };
    (m != PhotoMeta::default()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_shards_with_replicas() {
        let s = parse_urls("postgres://u:secret@h1:5432/db?replica=h2:5433&replica=h3:5434&sslmode=disable, postgresql://h4/db").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "h1:5432/db");
        assert_eq!(s[0].primary, "postgres://u:secret@h1:5432/db?sslmode=disable&connect_timeout=5");
        assert_eq!(
            s[0].replicas,
            ["postgres://u:secret@h2:5433/db?sslmode=disable&connect_timeout=5", "postgres://u:secret@h3:5434/db?sslmode=disable&connect_timeout=5"]
        );
        assert_eq!(s[1].primary, "postgresql://h4/db?connect_timeout=5");
        let err = parse_urls("postgres://u:secret@h1/db,/tmp/x").unwrap_err().to_string();
        assert!(err.contains("/tmp/x") && err.contains("not a postgres:// URL"), "{err}");
        assert_eq!(redact("postgres://u:secret@h1/db"), "postgres://u:***@h1/db");
        assert!(parse_urls("postgres://u@h/db?replica=").unwrap_err().to_string().contains("HOST:PORT"));
    }

    #[test]
    fn names_spread_over_shards_stably() {
        // Fixed values (Python: int.from_bytes(sha256(name).digest()[:8], 'little') % n): changing
        // the hash would strand every stored photo on the wrong shard.
        assert_eq!((shard_of("a.jpg", 3), shard_of("trips/japan/b.jpg", 3), shard_of("c.png", 7)), (1, 2, 4));
        let mut counts = [0usize; 3];
        (0..3000).for_each(|i| counts[shard_of(&format!("photo{i}.jpg"), 3)] += 1);
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
        assert_eq!(folder_of("/abs/x/y.jpg"), "abs/x");
        assert_eq!(folder_of("y.jpg"), "");
    }
}
