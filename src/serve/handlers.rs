//! Routes, middleware and handlers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::api::{
    Added, Deleted, DuplicateParams, Duplicates, ErrorBody, Group, Health, Hit, ImageForm, ImageInfo, ImageList, ImageRef, Member, Paging, Pair, RawImage,
    Ready, SearchJson, SearchParams, SearchResults, UploadRefusals,
};
use super::collection::Served;
use super::photo_id;
use super::state::{AppState, THUMB_CACHE};
use crate::collection::{CollectionError, DedupMethod, Filter, FilterError, NamedHit, Query as SearchQuery, SearchRequest, DEFAULT_K};
use crate::decode::{decode_file_oriented, DecodeError, DecodeLimits, Orientation};
use crate::descriptors::{Description, DescriptorError};
use crate::error::Error;
use crate::index::hnsw::DEFAULT_EF_SEARCH;
use crate::metadata::PhotoMeta;
use crate::preprocess::CropBox;
use crate::rerank::{Rerank, RerankError, RerankSpec};

const PAGE: &str = include_str!("index.html");
/// Results per query at most.
pub const MAX_K: usize = 1000;
/// Longest side of a thumbnail.
pub const THUMB_SIDE: u32 = 320;

/// A failed request: its status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status (4xx for the client's mistakes, 5xx for the server's).
    pub status: StatusCode,
    /// What went wrong, naming the key, value or file at fault.
    pub message: String,
    /// Seconds the client should wait before trying again, sent as `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`, no `Retry-After`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    fn busy(message: impl Into<String>) -> Self {
        Self { retry_after: Some(1), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
    }

    /// The status a library error deserves; `upload` (a temporary file) is named "the upload".
    pub(crate) fn from_error(e: Error, upload: Option<&Path>) -> Self {
        let mut message = e.to_string();
        if let Some(p) = upload {
            message = message.replace(&p.display().to_string(), "the upload");
        }
        let decode_status = |d: &DecodeError| match d {
            DecodeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            DecodeError::UnknownFormat { .. } | DecodeError::UnsupportedFormat { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let status = match &e {
            Error::Collection(CollectionError::NotInIndex { .. }) => StatusCode::NOT_FOUND,
            Error::Collection(CollectionError::VectorLength { .. } | CollectionError::Request { .. }) | Error::Rerank(_) => StatusCode::BAD_REQUEST,
            Error::Collection(CollectionError::NoModel { .. }) => StatusCode::CONFLICT,
            Error::Decode(d) | Error::Descriptor(DescriptorError::Decode(d)) => decode_status(d),
            Error::Descriptor(DescriptorError::Preprocess { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Index(crate::index::IndexError::ReadOnly { .. }) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("{message}");
        }
        Self::new(status, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::from_error(e, None)
    }
}

impl From<CollectionError> for ApiError {
    fn from(e: CollectionError) -> Self {
        Self::from_error(e.into(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(ErrorBody { error: self.message })).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The application: every route behind the observing middleware (metrics, time limit, JSON errors)
/// and the token check.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/", get(page))
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/search", axum::routing::post(search))
        .route("/images", get(list_images).post(add_image))
        .route("/images/{id}", get(image_info).delete(delete_image))
        .route("/images/{id}/thumbnail", get(thumbnail))
        .route("/images/{id}/file", get(image_file))
        .route("/duplicates", get(duplicates))
        .fallback(|| async { ApiError::not_found("no such endpoint: see /openapi.json") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The route template a path belongs to, for metrics.
fn route_of(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => "/",
        ["", "openapi.json"] => "/openapi.json",
        ["", "health"] => "/health",
        ["", "ready"] => "/ready",
        ["", "metrics"] => "/metrics",
        ["", "search"] => "/search",
        ["", "duplicates"] => "/duplicates",
        ["", "images"] => "/images",
        ["", "images", _] => "/images/{id}",
        ["", "images", _, "thumbnail"] => "/images/{id}/thumbnail",
        ["", "images", _, "file"] => "/images/{id}/file",
        _ => "other",
    }
}

/// Outermost: time limit, JSON bodies for every error (including axum's own rejections), CORS
/// when configured, and metrics.
/// The id a request is logged under and answered with (`x-request-id`): the client's, when it
/// sends a short one made of letters, digits, '-' and '_' (so ids can follow a request through a
/// proxy), else a new one.
fn request_id(req: &Request) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let given = req.headers().get("x-request-id").and_then(|v| v.to_str().ok());
    match given {
        Some(id) if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => id.to_owned(),
        _ => format!("{:08x}-{:x}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
    }
}

async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = st.request_started();
    let route = route_of(req.uri().path());
    let method = req.method().clone();
    let id = request_id(&req);
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = if method == Method::OPTIONS && st.config.cors_origin.is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else if method == Method::POST && route == "/images" {
        // An upload times itself out, before its commit only: once the photo is committed the
        // client must hear so, not a 503 for a photo that is in fact stored.
        next.run(req).await
    } else {
        match tokio::time::timeout(st.config.timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the request took longer than {} s", st.config.timeout.as_secs_f64())).into_response()
            }
        }
    };
    let is_json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if resp.status().as_u16() >= 400 && !is_json {
        let status = resp.status();
        let body = axum::body::to_bytes(std::mem::replace(resp.body_mut(), Body::empty()), 64 * 1024).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        let text = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
        let mut wrapped = ApiError::new(status, text).into_response();
        for h in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
            if let Some(v) = resp.headers().get(&h) {
                wrapped.headers_mut().insert(h, v.clone());
            }
        }
        resp = wrapped;
    }
    if let (Some(allowed), Some(_)) = (&st.config.cors_origin, origin) {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(allowed) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
    }
    st.metrics.record(route, method.as_str(), resp.status().as_u16(), started.elapsed());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    // One structured line per request (fields, not prose), for log pipelines.
    tracing::info!(target: "dolg::serve::request", request_id = %id, method = %method, path = %path, route, status = resp.status().as_u16(), ms = started.elapsed().as_secs_f64() * 1e3);
    resp
}

/// Whether a request changes the collection.
fn is_write(method: &Method, path: &str) -> bool {
    (method == Method::POST && route_of(path) == "/images") || method == Method::DELETE
}

/// Token check, read-only mode, and early refusal of bodies declared larger than the limit.
async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    let write = is_write(req.method(), path);
    if let Some(token) = &st.config.token {
        let open = matches!(route_of(path), "/" | "/health" | "/ready" | "/openapi.json");
        if write || (st.config.token_read && !open) {
            let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            let ok = given.is_some_and(|g| {
                let (a, b) = (Sha256::digest(g.as_bytes()), Sha256::digest(token.as_bytes()));
                a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
            });
            if !ok {
                let why = if given.is_some() { "wrong token" } else { "this request needs Authorization: Bearer <token>" };
                drain(req, st.config.body_limit).await;
                let mut r = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
    }
    if write && st.config.read_only {
        drain(req, st.config.body_limit).await;
        return ApiError::new(StatusCode::FORBIDDEN, "the server is read-only (--read-only)").into_response();
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > st.config.body_limit as u64) {
        // Read and drop a body of up to 4x the limit first, so that a client still sending it reads
        // the 413 instead of a broken pipe; a larger one is cut off unread.
        if n <= (st.config.body_limit as u64).saturating_mul(4) {
            drain(req, n as usize).await;
        }
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the limit of {} bytes", st.config.body_limit)).into_response();
    }
    next.run(req).await
}

/// Read and drop a refused request's body (within the limit, for at most 10 s), so that a client
/// still sending it reads the answer instead of a broken connection.
async fn drain(req: Request, limit: usize) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), axum::body::to_bytes(req.into_body(), limit)).await;
}

#[utoipa::path(get, path = "/", tag = "page", responses((status = 200, description = "The web page (HTML, nothing loaded from elsewhere)", content_type = "text/html")))]
async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
}

#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "This description", content_type = "application/json")))]
async fn openapi(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(super::api::to_json(&super::api::description(&st.config)))
}

#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, description = "The process answers", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

#[utoipa::path(get, path = "/ready", tag = "meta", responses(
    (status = 200, description = "The model is loaded", body = Ready),
    (status = 503, description = "Still loading the model (Retry-After)", body = ErrorBody),
))]
async fn ready(State(st): State<Arc<AppState>>) -> Response {
    if !st.ready.load(Ordering::SeqCst) {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading the model");
        e.retry_after = Some(1);
        return e.into_response();
    }
    let describes = matches!(st.model.get(), Some(Ok(_)));
    let c = st.read();
    let local = c.local_config().map(|l| l.extractor.clone());
    let queue = st.describe.status();
    Json(Ready { ready: true, entries: c.count().unwrap_or(0), model: st.model_name.clone(), describes_photos: describes, local_features: local, queue })
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text metrics", content_type = "text/plain")))]
async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let entries = st.read().count().unwrap_or(0);
    let text = st.metrics.render(entries, &st.model_name, &st.fingerprint, &st.describe.status(), st.describe.waited(), st.in_flight());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Run `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Search options from the query string, a JSON body or multipart fields: the result count and
/// filters here, re-ranking as the library's [`RerankSpec`] (its keys, parsing and validation).
#[derive(Debug, Default, Clone)]
struct Options {
    k: Option<usize>,
    min_score: Option<f32>,
    crop: Option<CropBox>,
    ef: Option<usize>,
    filter: Filter,
    rerank: RerankSpec,
}

impl Options {
    /// Every key a search takes besides re-ranking's ([`RerankSpec::KEYS`]).
    const KEYS: [&'static str; 5] = ["k", "min_score", "crop", "ef", "where"];

    fn set(&mut self, key: &str, value: &str) -> ApiResult<()> {
        let bad = |what: &str| ApiError::bad(format!("{key}: '{value}' is not {what}"));
        match key {
            "k" => self.k = Some(value.trim().parse().map_err(|_| bad("a whole number"))?),
            "min_score" => self.min_score = Some(value.trim().parse::<f32>().ok().filter(|s| s.is_finite()).ok_or_else(|| bad("a finite number"))?),
            "crop" => self.crop = Some(value.parse().map_err(|e: String| ApiError::bad(format!("crop: {e}")))?),
            "ef" => self.ef = Some(value.trim().parse().ok().filter(|&e| e > 0).ok_or_else(|| bad("a positive whole number"))?),
            // Repeated `where` keys all hold.
            "where" => self.filter = std::mem::take(&mut self.filter).and(value.parse().map_err(|e: FilterError| ApiError::bad(e.to_string()))?),
            _ => self.rerank.set(key, value).map_err(rerank_error)?,
        }
        Ok(())
    }

    /// The re-ranking asked for, over `c` (spatial settings not given follow its local features),
    /// as `dolg search` builds it from the same flags.
    fn rerank(&self, c: &dyn Served) -> ApiResult<Rerank> {
        self.rerank.resolve(c.spatial_rerank_defaults()).map_err(rerank_error)
    }

    /// The request, re-ranking still to be resolved against the collection ([`Options::rerank`]).
    fn params(&self) -> ApiResult<SearchRequest> {
        let k = self.k.unwrap_or(DEFAULT_K);
        if k == 0 || k > MAX_K {
            return Err(ApiError::bad(format!("k must be between 1 and {MAX_K}, not {k}")));
        }
        self.rerank.validate().map_err(rerank_error)?;
        if self.rerank.dba.is_some() || self.rerank.dba_alpha.is_some() {
            return Err(ApiError::bad("dba: DBA belongs to the index (`dolg index dba`); once built, every search uses it without being asked"));
        }
        Ok(SearchRequest::top(k).with_min_score(self.min_score).with_crop(self.crop).with_filter(self.filter.clone()))
    }
}

/// A re-ranking request the library refused, as a 400 naming the key; an unknown key lists the
/// search's own keys too.
fn rerank_error(e: RerankError) -> ApiError {
    match e {
        RerankError::UnknownKey { key } => {
            // DBA belongs to the index: not a search option here.
            let rerank: Vec<&str> = RerankSpec::KEYS.into_iter().filter(|k| !k.starts_with("dba")).collect();
            ApiError::bad(format!(
                "unknown option '{key}' (a search takes {}, and re-ranking's {}; a JSON body also vector, name or id)",
                Options::KEYS.join(", "),
                rerank.join(", ")
            ))
        }
        e => ApiError::bad(e.to_string()),
    }
}

/// What to search with.
enum QueryBy {
    Upload(Vec<u8>),
    Vector(Vec<f32>),
    Name(String),
}

fn content_type(req: &Request) -> String {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

/// The image of a multipart body (the field named `image`, or the first with a file name), with
/// the other fields applied to `options` (a search's), or ignored (an upload's: `None`).
async fn read_multipart(req: Request, mut options: Option<&mut Options>) -> ApiResult<(Vec<u8>, Option<String>)> {
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut image = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ApiError::new(e.status(), e.body_text())),
        };
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let is_file = file_name.is_some() || name == "image";
        let bytes = field.bytes().await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if is_file {
            if image.is_some() {
                return Err(ApiError::bad("send one image per request"));
            }
            image = Some((bytes.to_vec(), file_name));
        } else if let Some(o) = options.as_deref_mut() {
            o.set(&name, std::str::from_utf8(&bytes).map_err(|_| ApiError::bad(format!("field {name} is not UTF-8 text")))?)?;
        }
    }
    image.ok_or_else(|| ApiError::bad("the multipart body has no image (a field named 'image')"))
}

/// Check an upload looks like an image and name its format's extension.
fn sniff(bytes: &[u8]) -> ApiResult<&'static str> {
    sniff_format(bytes).map(ext_of)
}

/// The file extension a photo of `format` is written with.
fn ext_of(format: image::ImageFormat) -> &'static str {
    format.extensions_str().first().copied().unwrap_or("img")
}

/// The format an upload's bytes announce.
fn sniff_format(bytes: &[u8]) -> ApiResult<image::ImageFormat> {
    if bytes.is_empty() {
        return Err(ApiError::bad("the upload is empty"));
    }
    image::guess_format(bytes)
        .map_err(|_| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the upload is not an image in a known format (JPEG, PNG, WebP, TIFF, BMP, GIF, PNM)"))
}

/// Describe `path` with the query model through the describing queue (429 only when the work
/// ahead would not let it finish within the time limit); with
/// `local`, also the photo's local features when the index stores them (a photo being added, or
/// a query for spatial re-ranking).
async fn describe_full(st: &Arc<AppState>, path: PathBuf, crop: Option<CropBox>, upload: bool, local: bool) -> ApiResult<Description> {
    match st.model.get() {
        None => return Err(ApiError { retry_after: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is still loading") }),
        Some(Err(e)) => return Err(ApiError::new(StatusCode::CONFLICT, format!("this index cannot describe photos: {e}"))),
        Some(Ok(_)) => {}
    }
    let deadline = Instant::now() + st.config.timeout;
    let answer = st.describe.submit(path.clone(), crop, local, deadline).map_err(|r| ApiError {
        retry_after: Some(r.retry_after),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the photos ahead of this one would take about {:.1} s to describe, longer than this server's time limit of {} s; retry in {} s",
                r.expected_wait,
                st.config.timeout.as_secs_f64(),
                r.retry_after
            ),
        )
    })?;
    // The queue drops the job if this future is dropped (the client left, or the time limit).
    let described = answer.await.map_err(|_| ApiError::internal("describing the photo failed inside the model (the server log has the details)"))?;
    described.map_err(|e| ApiError::from_error(e.into(), upload.then_some(path.as_path())))
}

/// Write an upload to a temporary file (removed on drop) in `dir`, or the system's.
fn temp_upload(bytes: &[u8], ext: &str, dir: Option<&Path>) -> ApiResult<tempfile::NamedTempFile> {
    let suffix = format!(".{ext}");
    let mut b = tempfile::Builder::new();
    b.prefix(".dolg-upload-").suffix(&suffix);
    let f = match dir {
        Some(d) => b.tempfile_in(d),
        None => b.tempfile(),
    };
    let mut f = f.map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
    std::io::Write::write_all(&mut f, bytes).map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
    Ok(f)
}

fn hits_json(hits: Vec<NamedHit>) -> Vec<Hit> {
    hits.into_iter().map(|h| Hit { id: photo_id(&h.name), name: h.name, score: h.score, inliers: h.inliers }).collect()
}

/// Run a search under the read lock, or under the write lock when `ef` is given (it is a setting
/// of the index; restored to the default afterwards).
fn locked_search<T>(st: &AppState, ef: Option<usize>, f: impl FnOnce(&dyn Served) -> Result<T, CollectionError>) -> ApiResult<T> {
    match ef {
        None => Ok(f(st.read().as_ref())?),
        Some(ef) => {
            let mut c = st.write();
            c.set_ef_search(ef);
            let r = f(c.as_ref());
            c.set_ef_search(DEFAULT_EF_SEARCH);
            Ok(r?)
        }
    }
}

/// A JSON search body: what to search with, the result count and filters, and the re-ranking
/// keys of [`RerankSpec`] beside them (read into it, so it refuses unknown keys).
#[derive(serde::Deserialize)]
struct SearchBody {
    vector: Option<Vec<f32>>,
    name: Option<String>,
    id: Option<String>,
    k: Option<usize>,
    min_score: Option<f32>,
    crop: Option<[f64; 4]>,
    ef: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<Value>,
    #[serde(flatten)]
    rerank: serde_json::Map<String, Value>,
}

#[utoipa::path(post, path = "/search", tag = "search", params(SearchParams),
    request_body(description = "A photo (multipart, with the options as fields too, or a raw image body), or JSON naming the query", content(
        (ImageForm = "multipart/form-data"),
        (RawImage = "image/*"),
        (SearchJson = "application/json"),
    )),
    responses(
        (status = 200, description = "Results, best first", body = SearchResults),
        (status = 400, description = "A bad option, body or vector (the message names it)", body = ErrorBody),
        (status = 404, description = "No photo of that name or id", body = ErrorBody),
        (status = 409, description = "This index cannot describe photos (imported vectors only)", body = ErrorBody),
        UploadRefusals,
        (status = 503, description = "The model is still loading, or the request ran out of time", body = ErrorBody),
    ))]
async fn search(State(st): State<Arc<AppState>>, Query(q): Query<Vec<(String, String)>>, req: Request) -> ApiResult<Json<SearchResults>> {
    let started = Instant::now();
    let mut opts = Options::default();
    for (k, v) in &q {
        opts.set(k, v)?;
    }
    let ct = content_type(&req);
    let by = if ct.starts_with("multipart/form-data") {
        QueryBy::Upload(read_multipart(req, Some(&mut opts)).await?.0)
    } else if ct.starts_with("application/json") {
        let bytes = axum::body::to_bytes(req.into_body(), st.config.body_limit)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the limit of {} bytes", st.config.body_limit)))?;
        let b: SearchBody = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("JSON body: {e}")))?;
        opts.k = b.k.or(opts.k);
        opts.min_score = b.min_score.or(opts.min_score);
        if let Some(c) = b.crop {
            opts.set("crop", &c.map(|x| x.to_string()).join(","))?;
        }
        if let Some(ef) = b.ef {
            opts.set("ef", &ef.to_string())?;
        }
        // `where`: one expression or a list of them, all to hold.
        match b.filter {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) => opts.set("where", &e)?,
            Some(Value::Array(items)) => {
                for item in items {
                    opts.set(
                        "where",
                        item.as_str()
                            .ok_or_else(|| ApiError::bad(format!("where: {item} is not a string (give filter expressions such as \"folder = trips\")")))?,
                    )?;
                }
            }
            Some(v) => return Err(ApiError::bad(format!("where: {v} is not a string or a list of strings"))),
        }
        // The rest is re-ranking, key by key through the library's RerankSpec::set: the same
        // parsing and key-naming errors as query-string and form keys, merged with them (the
        // body's value wins, `rerank` lists are joined); an unknown key is refused. null is
        // "not given".
        for (key, value) in b.rerank {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s,
                Value::Array(items) => items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(","),
                v => v.to_string(),
            };
            opts.set(&key, &text)?;
        }
        let name = match (b.name, b.id) {
            (n, None) => n,
            (None, Some(id)) => Some(st.name_of_id(&id).ok_or_else(|| ApiError::not_found(format!("no photo with id {id}")))?),
            (Some(_), Some(_)) => return Err(ApiError::bad("give one of vector, name or id")),
        };
        match (b.vector, name) {
            (Some(v), None) => QueryBy::Vector(v),
            (None, Some(n)) => QueryBy::Name(n),
            _ => return Err(ApiError::bad("give one of vector, name or id")),
        }
    } else if ct.starts_with("image/") || ct.starts_with("application/octet-stream") {
        let bytes = axum::body::to_bytes(req.into_body(), st.config.body_limit)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the limit of {} bytes", st.config.body_limit)))?;
        QueryBy::Upload(bytes.to_vec())
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type '{ct}': send multipart/form-data with an image, an image/* body, or JSON {{\"vector\"|\"name\"|\"id\": ...}}"),
        ));
    };
    let params = opts.params()?;
    let ef = opts.ef;
    let hits = search_hits(&st, by, params, ef, &opts).await?;
    Ok(Json(SearchResults { results: hits_json(hits), took_ms: started.elapsed().as_secs_f64() * 1000.0 }))
}

/// Results of a search, re-ranked as asked, with the same ranking as `dolg search` given the same
/// query and flags. Spatial re-ranking uses the stored local features of an indexed photo searched
/// by name (uncropped), else those of the photo described.
async fn search_hits(st: &Arc<AppState>, by: QueryBy, params: SearchRequest, ef: Option<usize>, opts: &Options) -> ApiResult<Vec<NamedHit>> {
    let (rerank, has_local) = {
        let c = st.read();
        (opts.rerank(c.as_ref())?, c.local_config().is_some())
    };
    let spatial = rerank.spatial.is_some();
    let params = params.with_rerank(rerank);
    if spatial && !has_local {
        return Err(ApiError::bad(format!(
            "rerank=spatial needs local features, and this index ({}) stores none: build it with `dolg index build --local xfeat`",
            st.config.db.display()
        )));
    }
    let described = |d: Description| {
        let st = st.clone();
        let params = params.clone();
        blocking(move || {
            if spatial && d.local.is_none() {
                return Err(ApiError::internal("the model gave no local features for spatial re-ranking"));
            }
            let first = |hits: Vec<Vec<NamedHit>>| hits.into_iter().next().unwrap_or_default();
            locked_search(&st, ef, |c| c.search(SearchQuery::Described(std::slice::from_ref(&d)), &params).map(first))
        })
    };
    match by {
        QueryBy::Vector(v) => {
            if spatial {
                return Err(ApiError::bad("rerank=spatial needs a query photo (an upload, a name or an id), not a vector"));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(ApiError::bad("the vector holds a value that is not finite"));
            }
            let st2 = st.clone();
            let params = params.clone();
            blocking(move || locked_search(&st2, ef, |c| Ok(c.search(SearchQuery::Vectors(&v), &params)?.pop().unwrap_or_default()))).await
        }
        QueryBy::Upload(bytes) => {
            let ext = sniff(&bytes)?;
            let tmp = temp_upload(&bytes, ext, None)?;
            let d = describe_full(st, tmp.path().to_owned(), params.crop, true, spatial).await?;
            drop(tmp);
            described(d).await
        }
        QueryBy::Name(n) => {
            let (stored, path, in_root) = {
                let c = st.read();
                if c.entry_hash(&n)?.is_none() {
                    return Err(ApiError::not_found(format!("no photo named '{n}'")));
                }
                let stored = if spatial && params.crop.is_none() { c.stored_local(&n)? } else { None };
                let path = c.path_of(&n);
                let in_root = c.contains_path(&path);
                (stored, path, in_root)
            };
            // A cropped query, or local features the entry was stored without: describe its file,
            // as `dolg search` does.
            let local = if params.crop.is_some() || (spatial && stored.is_none()) {
                if !in_root {
                    return Err(ApiError::not_found(format!("the file of '{n}' is not available under the collection's root")));
                }
                let d = describe_full(st, path, params.crop, false, spatial).await?;
                if params.crop.is_some() {
                    return described(d).await;
                }
                d.local
            } else {
                stored
            };
            let st2 = st.clone();
            let params = params.clone();
            blocking(move || {
                locked_search(&st2, ef, |c| Ok(c.search(SearchQuery::Name { name: &n, local: local.as_ref() }, &params)?.pop().unwrap_or_default()))
            })
            .await
        }
    }
}

fn name_for(st: &AppState, id: &str) -> ApiResult<String> {
    st.name_of_id(id).ok_or_else(|| ApiError::not_found(format!("no photo with id {id}")))
}

fn info_json(st: &AppState, id: &str, name: &str) -> ImageInfo {
    let c = st.read();
    let sha256 = c.entry_hash(name).ok().flatten().flatten().map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let path = c.path_of(name);
    ImageInfo {
        id: id.to_owned(),
        name: name.to_owned(),
        sha256,
        file: c.contains_path(&path),
        thumbnail_url: format!("/images/{id}/thumbnail"),
        file_url: format!("/images/{id}/file"),
    }
}

#[utoipa::path(get, path = "/images", tag = "images", params(Paging), responses(
    (status = 200, description = "Photos in name order", body = ImageList),
    (status = 400, description = "A bad offset or limit", body = ErrorBody),
))]
async fn list_images(State(st): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<ImageList>> {
    // A whole number too large for this machine is past every photo: as good as the largest.
    let num = |k: &str, d: usize| {
        q.get(k).map_or(Ok(d), |v| match v.parse::<usize>() {
            Ok(n) => Ok(n),
            Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Ok(usize::MAX),
            Err(_) => Err(ApiError::bad(format!("{k}: '{v}' is not a whole number"))),
        })
    };
    let (offset, limit) = (num("offset", 0)?, num("limit", 100)?.min(MAX_K));
    let mut all: Vec<(String, String)> = st.ids.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(i, n)| (n.clone(), i.clone())).collect();
    all.sort();
    let total = all.len();
    let images = all.into_iter().skip(offset).take(limit).map(|(name, id)| ImageRef { id, name }).collect();
    Ok(Json(ImageList { total, offset, images }))
}

/// `GET /duplicates?threshold=S&method=auto|exact|graph`: groups of near-duplicate photos, as
/// `dolg dedup --json` gives them, with each member's id and best score within its group.
#[utoipa::path(get, path = "/duplicates", tag = "images", params(DuplicateParams), responses(
    (status = 200, description = "Groups of near-duplicate photos", body = Duplicates),
    (status = 400, description = "A bad threshold or method", body = ErrorBody),
    (status = 503, description = "The request ran out of time", body = ErrorBody),
))]
async fn duplicates(State(st): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Duplicates>> {
    let threshold = match q.get("threshold") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|t| (-1.0..=1.0).contains(t))
                .ok_or_else(|| ApiError::bad(format!("threshold: '{v}' is not a cosine similarity between -1 and 1")))?,
        ),
    };
    let method = match q.get("method").map(|m| m.trim()) {
        None | Some("auto") => DedupMethod::Auto,
        Some("exact") => DedupMethod::Exact,
        Some("graph") => DedupMethod::Graph,
        Some(m) => return Err(ApiError::bad(format!("method: '{m}' is not auto, exact or graph"))),
    };
    let st2 = st.clone();
    blocking(move || {
        let c = st2.read();
        let (threshold, method, groups) = c.duplicates(threshold, method)?;
        let groups = groups
            .iter()
            .map(|g| {
                let best = g.member_best();
                let members = g.members.iter().zip(best).map(|(n, best)| Member { id: photo_id(n), name: n.clone(), best }).collect();
                let pairs = g.pairs.iter().map(|p| Pair { a: p.a.clone(), b: p.b.clone(), score: p.score }).collect();
                Group { members, pairs, best: g.best, weakest: g.weakest }
            })
            .collect();
        let method = serde_json::to_value(method).ok().and_then(|m| m.as_str().map(str::to_owned)).unwrap_or_default();
        Ok(Json(Duplicates { threshold, method, entries: c.count()?, groups }))
    })
    .await
}

#[utoipa::path(get, path = "/images/{id}", tag = "images", params(("id" = String, Path, description = "The photo's id")), responses(
    (status = 200, description = "The photo", body = ImageInfo),
    (status = 404, description = "No photo with that id", body = ErrorBody),
))]
async fn image_info(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<ImageInfo>> {
    let name = name_for(&st, &id)?;
    Ok(Json(info_json(&st, &id, &name)))
}

#[utoipa::path(post, path = "/images", tag = "images",
    params(("name" = Option<String>, Query, description = "The file name to store a raw image body under (a multipart part's own file name wins)")),
    request_body(description = "The photo, as a multipart form or a raw image body", content(
        (ImageForm = "multipart/form-data"),
        (RawImage = "image/*"),
    )),
    responses(
        (status = 201, description = "Stored and indexed", body = Added, headers(("Location" = String, description = "The photo's URL")),
            links(("info" = (operation_id = "image_info", parameters(("id" = "$response.body#/id")))),
                  ("delete" = (operation_id = "delete_image", parameters(("id" = "$response.body#/id")))))),
        (status = 200, description = "The same photo was already stored under that name", body = Added),
        (status = 400, description = "An empty or malformed body", body = ErrorBody),
        (status = 403, description = "The server is read-only", body = ErrorBody),
        (status = 409, description = "This index cannot describe photos, or has no root folder", body = ErrorBody),
        UploadRefusals,
        (status = 503, description = "The model is still loading, or the upload ran out of time (not stored)", body = ErrorBody),
    ))]
async fn add_image(State(st): State<Arc<AppState>>, req: Request) -> ApiResult<Response> {
    let limit = st.config.timeout;
    let (tmp, dir, file_name, hash, d, meta) = tokio::time::timeout(limit, receive_upload(&st, req))
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the upload took longer than {} s; it was not stored", limit.as_secs_f64())))??;
    let st2 = st.clone();
    let (name, added) = blocking(move || {
        // Durable file first (contents, then the folder entry), then the index commit.
        let saving = |e: std::io::Error| ApiError::internal(format!("saving the upload: {e}"));
        tmp.as_file().sync_all().map_err(saving)?;
        let dest = {
            // One upload at a time picks its name, so two uploads of one name get two files.
            let _naming = UPLOAD_NAMES.lock().unwrap_or_else(|p| p.into_inner());
            store_upload(tmp, &dir, &file_name, &hash).map_err(saving)?
        };
        std::fs::File::open(&dir).and_then(|f| f.sync_all()).map_err(saving)?;
        let mut c = st2.write();
        let name = c.name_of(&dest);
        let same = c.entry_hash(&name)? == Some(Some(hash));
        if !same {
            c.add_description(name.clone(), Some(hash), d, Some(meta))?;
        }
        Ok((name, !same))
    })
    .await?;
    st.set_id(&name, true);
    let id = photo_id(&name);
    let body = Added { image: info_json(&st, &id, &name), added };
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::LOCATION, format!("/images/{id}"))], Json(body)).into_response())
}

/// Held while an upload picks its file name.
static UPLOAD_NAMES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Move `tmp` (an upload whose content hashes to `hash`) into `dir` as `file_name`, or
/// `stem-1.ext`, `stem-2.ext`, ... when that name holds another photo; a file of that name with
/// the same content is the same photo, and is kept instead (the upload is dropped). Never
/// replaces a file. Returns the final path.
fn store_upload(mut tmp: tempfile::NamedTempFile, dir: &Path, file_name: &str, hash: &[u8; 32]) -> std::io::Result<PathBuf> {
    let (stem, ext) = file_name.rsplit_once('.').unwrap_or((file_name, ""));
    for i in 0..10_000u32 {
        let candidate = if i == 0 { file_name.to_owned() } else { format!("{stem}-{i}.{ext}") };
        let dest = dir.join(&candidate);
        if dest.is_file() && std::fs::read(&dest).is_ok_and(|b| Sha256::digest(&b)[..] == hash[..]) {
            return Ok(dest);
        }
        match tmp.persist_noclobber(&dest) {
            Ok(_) => return Ok(dest),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => tmp = e.file,
            Err(e) => return Err(e.error),
        }
    }
    Err(std::io::Error::other(format!("10000 files named like {file_name} already exist in {}", dir.display())))
}

/// Longest stored file name, in bytes, extension included.
const MAX_UPLOAD_NAME: usize = 120;

/// The name an upload called `given` is stored under: its last path component, with characters
/// that are unsafe in file names (controls, `/ \ : * ? " < > |`) replaced by `_`, no leading dots
/// (hidden files) or trailing dots and spaces, not a name Windows reserves (`CON`, `NUL`,
/// `COM1`...), at most [`MAX_UPLOAD_NAME`] bytes, and ending in an extension of its format
/// (`ext`, added when the given one is not). `None` when nothing usable is left.
pub(crate) fn safe_upload_name(given: &str, format_extensions: &[&str]) -> Option<String> {
    let last = given.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().map(|c| if c.is_control() || r#":*?"<>|"#.contains(c) { '_' } else { c }).collect();
    let cleaned = cleaned.trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']);
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((stem, ext)) if format_extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)) => (stem, ext.to_owned()),
        _ => (cleaned, format_extensions.first()?.to_string()),
    };
    let stem = stem.trim_end_matches(['.', ' ']);
    if stem.is_empty() {
        return None;
    }
    let reserved = |s: &str| {
        let base = s.split('.').next().unwrap_or(s).to_ascii_uppercase();
        ["CON", "PRN", "AUX", "NUL"].contains(&base.as_str())
            || (base.len() == 4 && (base.starts_with("COM") || base.starts_with("LPT")) && base.as_bytes()[3].is_ascii_digit())
    };
    let mut stem = if reserved(stem) { format!("_{stem}") } else { stem.to_owned() };
    let room = MAX_UPLOAD_NAME - ext.len() - 1;
    if stem.len() > room {
        let mut cut = room;
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem.truncate(cut);
    }
    Some(format!("{stem}.{ext}"))
}

/// The file name an upload was sent with: the multipart part's, else the `name` query key's,
/// else the `Content-Disposition` header's.
fn given_name(req: &Request) -> Option<String> {
    let query = Query::<HashMap<String, String>>::try_from_uri(req.uri()).map(|q| q.0).unwrap_or_default();
    query.get("name").cloned().or_else(|| {
        let cd = req.headers().get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
        let v = cd.split(';').map(str::trim).find_map(|p| p.strip_prefix("filename="))?;
        Some(v.trim_matches('"').to_owned())
    })
}

/// A received, described upload: its temporary file, the upload folder, the file name to store it
/// under, its content hash, description and metadata.
type Upload = (tempfile::NamedTempFile, PathBuf, String, [u8; 32], Description, PhotoMeta);

/// The part of an upload that may time out: read the body, check it is an image, write it to a
/// temporary file in the upload folder and describe it.
async fn receive_upload(st: &Arc<AppState>, req: Request) -> ApiResult<Upload> {
    let ct = content_type(&req);
    let named = given_name(&req);
    let (bytes, sent_as) = if ct.starts_with("multipart/form-data") {
        read_multipart(req, None).await?
    } else if ct.starts_with("image/") || ct.starts_with("application/octet-stream") {
        let bytes = axum::body::to_bytes(req.into_body(), st.config.body_limit)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the limit of {} bytes", st.config.body_limit)))?
            .to_vec();
        (bytes, None)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type '{ct}': send multipart/form-data with an image, or an image/* body"),
        ));
    };
    let format = sniff_format(&bytes)?;
    let ext = ext_of(format);
    let root = st.read().root().map(Path::to_owned).ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "this index has no root folder to store uploads in"))?;
    let dir = root.join(&st.config.upload_dir);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    // The name it was sent with, made safe; a photo sent without one is named by its content.
    let file_name = sent_as.or(named).and_then(|n| safe_upload_name(&n, format.extensions_str())).unwrap_or_else(|| format!("{}.{ext}", &hex[..16]));
    let tmp = temp_upload(&bytes, ext, Some(&dir))?;
    let d = describe_full(st, tmp.path().to_owned(), None, true, true).await?;
    // Taken: the EXIF date, else now (the stored file's modification time).
    let meta = PhotoMeta::of_file(&bytes, Some(std::time::SystemTime::now()));
    Ok((tmp, dir, file_name, hash, d, meta))
}

#[utoipa::path(delete, path = "/images/{id}", tag = "images", params(("id" = String, Path, description = "The photo's id")), responses(
    (status = 200, description = "Removed from the index", body = Deleted),
    (status = 403, description = "The server is read-only", body = ErrorBody),
    (status = 404, description = "No photo with that id", body = ErrorBody),
))]
async fn delete_image(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Deleted>> {
    let name = name_for(&st, &id)?;
    let st2 = st.clone();
    let n = name.clone();
    let file_removed = blocking(move || {
        let mut c = st2.write();
        c.remove(std::slice::from_ref(&n))?;
        // Files the server stored (in the upload folder) go with their entry; others stay.
        let path = c.path_of(&n);
        let uploads = c.root().map(|r| r.join(&st2.config.upload_dir));
        let ours = uploads.is_some_and(|u| std::fs::canonicalize(&path).is_ok_and(|p| p.parent() == Some(u.as_path())));
        Ok(ours && crate::atomic_file::remove(&path).is_ok())
    })
    .await?;
    st.set_id(&name, false);
    Ok(Json(Deleted { id, name, deleted: true, file_removed }))
}

/// The file of photo `id`, if it lies inside the collection's root.
fn file_of(st: &AppState, id: &str) -> ApiResult<PathBuf> {
    let name = name_for(st, id)?;
    let c = st.read();
    let path = c.path_of(&name);
    if !c.contains_path(&path) {
        return Err(ApiError::not_found(format!("the file of '{name}' is not available under the collection's root")));
    }
    std::fs::canonicalize(&path).map_err(|_| ApiError::not_found(format!("the file of '{name}' is missing")))
}

#[utoipa::path(get, path = "/images/{id}/file", tag = "images", params(("id" = String, Path, description = "The photo's id")), responses(
    (status = 200, description = "The photo's file as stored, typed by its extension", content(
        ("image/jpeg"), ("image/png"), ("image/webp"), ("image/tiff"), ("image/bmp"), ("image/gif"), ("image/x-portable-anymap"), ("application/octet-stream"),
    )),
    (status = 404, description = "No photo with that id, or its file is not available", body = ErrorBody),
))]
async fn image_file(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> ApiResult<Response> {
    let path = file_of(&st, &id)?;
    // The formats dolg decodes, by extension (as the description lists them); anything else is bytes.
    use image::ImageFormat as F;
    let mime = match F::from_path(&path) {
        Ok(f @ (F::Jpeg | F::Png | F::WebP | F::Tiff | F::Bmp | F::Gif | F::Pnm)) => f.to_mime_type(),
        _ => "application/octet-stream",
    };
    let bytes = blocking(move || std::fs::read(&path).map_err(|e| ApiError::not_found(format!("reading the file: {e}")))).await?;
    Ok(([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "private, max-age=60")], bytes).into_response())
}

#[utoipa::path(get, path = "/images/{id}/thumbnail", tag = "images", params(("id" = String, Path, description = "The photo's id")), responses(
    (status = 200, description = "A JPEG thumbnail", content_type = "image/jpeg"),
    (status = 404, description = "No photo with that id, or its file is not available", body = ErrorBody),
    (status = 422, description = "Its file cannot be decoded", body = ErrorBody),
    (status = 429, description = "Too many thumbnails are being made (Retry-After)", body = ErrorBody),
    (status = 503, description = "The request ran out of time", body = ErrorBody),
))]
async fn thumbnail(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> ApiResult<Response> {
    let cached = st.thumbs.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
    let jpeg = match cached {
        Some(j) => j,
        None => {
            let path = file_of(&st, &id)?;
            let permit = st.thumb_slots.clone().try_acquire_owned().map_err(|_| ApiError::busy("too many thumbnails are being made; retry shortly"))?;
            let (limits, orientation) = match st.model.get() {
                Some(Ok(m)) => (m.extractor.limits, m.extractor.orientation),
                _ => (DecodeLimits::default(), Orientation::Apply),
            };
            let jpeg = blocking(move || {
                let _permit = permit;
                make_thumbnail(&path, &limits, orientation)
            })
            .await?;
            let mut cache = st.thumbs.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= THUMB_CACHE {
                cache.clear();
            }
            cache.insert(id, jpeg.clone());
            jpeg
        }
    };
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=300")], jpeg).into_response())
}

/// Decode (within the decoder limits, turned upright), shrink to [`THUMB_SIDE`] and encode as JPEG.
fn make_thumbnail(path: &Path, limits: &DecodeLimits, orientation: Orientation) -> ApiResult<Vec<u8>> {
    let img = decode_file_oriented(path, limits, orientation).map_err(|e| ApiError::from_error(e.into(), None))?;
    let rgb: Vec<u8> = img.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, rgb).ok_or_else(|| ApiError::internal("decoded image has the wrong size"))?;
    let scale = (THUMB_SIDE as f64 / buf.width().max(buf.height()) as f64).min(1.0);
    let (w, h) = (((buf.width() as f64 * scale).round() as u32).max(1), ((buf.height() as f64 * scale).round() as u32).max(1));
    let small = image::imageops::thumbnail(&buf, w, h);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&small)
        .map_err(|e| ApiError::internal(format!("encoding the thumbnail: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{safe_upload_name, Options, RerankSpec};

    /// The description lists exactly the keys `Options::set` takes (the search's own and
    /// re-ranking's, DBA aside: it belongs to the index), as query parameters and JSON keys.
    #[test]
    fn the_description_lists_the_keys_the_server_takes() {
        let doc = serde_json::to_value(super::super::api::description(&crate::serve::Config::new("db".into()))).unwrap();
        let taken: BTreeSet<String> = Options::KEYS.iter().chain(RerankSpec::KEYS.iter()).filter(|k| !k.starts_with("dba")).map(|k| k.to_string()).collect();
        let params: BTreeSet<String> =
            doc["paths"]["/search"]["post"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(params, taken);
        let json: BTreeSet<String> = doc["components"]["schemas"]["SearchJson"]["properties"].as_object().unwrap().keys().cloned().collect();
        let mut expected = taken.clone();
        expected.extend(["vector", "name", "id"].map(String::from));
        assert_eq!(json, expected);
        assert_eq!(doc["components"]["schemas"]["SearchJson"]["additionalProperties"], serde_json::json!(false));
    }

    #[test]
    fn upload_names_are_made_safe() {
        let jpeg = image::ImageFormat::Jpeg.extensions_str();
        let png = image::ImageFormat::Png.extensions_str();
        let name = |given: &str, ext: &[&str]| safe_upload_name(given, ext);
        assert_eq!(name("IMG 0001.JPG", jpeg).as_deref(), Some("IMG 0001.JPG"));
        assert_eq!(name("Été à Kyiv.jpeg", jpeg).as_deref(), Some("Été à Kyiv.jpeg"));
        // Path separators of either kind: only the last component.
        assert_eq!(name("../../etc/passwd", jpeg).as_deref(), Some("passwd.jpg"));
        assert_eq!(name(r"C:\Users\me\photo.jpg", jpeg).as_deref(), Some("photo.jpg"));
        // Hidden, reserved, unsafe characters, trailing dots.
        assert_eq!(name(".hidden.jpg", jpeg).as_deref(), Some("hidden.jpg"));
        assert_eq!(name("con.jpg", jpeg).as_deref(), Some("_con.jpg"));
        assert_eq!(name("COM3", png).as_deref(), Some("_COM3.png"));
        assert_eq!(name("COMPUTER.png", png).as_deref(), Some("COMPUTER.png"));
        assert_eq!(name("a:b*c?\"d\"<e>|f\u{7}.png", png).as_deref(), Some("a_b_c__d__e__f_.png"));
        assert_eq!(name("photo. . .", jpeg).as_deref(), Some("photo.jpg"));
        // The extension follows the content: a PNG sent as .jpg keeps its name and gains .png.
        assert_eq!(name("shot.jpg", png).as_deref(), Some("shot.jpg.png"));
        // Nothing usable left.
        for bad in ["", "...", "/", "dir/", " . "] {
            assert_eq!(name(bad, jpeg), None, "{bad:?}");
        }
        // Bounded length, cut on a character boundary, extension kept.
        let long = name(&format!("{}.jpg", "é".repeat(200)), jpeg).unwrap();
        assert!(long.len() <= super::MAX_UPLOAD_NAME && long.ends_with("é.jpg"), "{long}");
    }
}
