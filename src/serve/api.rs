//! The API's description, generated from the code with `utoipa`: every handler carries its
//! `#[utoipa::path]` (parameters, bodies, every status it can answer), and the bodies it sends
//! are the types below, serialised as they are described. [`description`] adds the security the
//! server was started with (a bearer token for writes, and for reads with `--token-read`), so
//! `/openapi.json` describes the server as configured.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Response, SecurityRequirement};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::queue::QueueStatus;
use super::Config;

/// Every error answer: `{"error": "..."}` naming what is at fault.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the key, value or file at fault.
    pub error: String,
}

/// The refusals of a request that uploads a photo to describe (`POST /search`, `POST /images`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Described, not built: the handlers answer with `ApiError`.
pub enum UploadRefusals {
    /// The body is larger than the limit.
    #[response(status = 413, description = "The body is larger than the limit")]
    TooLarge(ErrorBody),
    /// Not an image.
    #[response(status = 415, description = "Not an image, or an unsupported content type")]
    NotAnImage(ErrorBody),
    /// Not decodable.
    #[response(status = 422, description = "An image that cannot be decoded or is too large")]
    Undecodable(ErrorBody),
    /// The queue is too long for the time limit.
    #[response(status = 429, description = "The photos ahead would not let this one finish in time (Retry-After)")]
    Busy(ErrorBody),
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: String,
}

/// `GET /ready`, once the model is loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always true (a server still loading answers 503).
    pub ready: bool,
    /// Live entries in the index.
    pub entries: usize,
    /// The index's model.
    pub model: String,
    /// Whether uploaded photos can be described (false for an index of imported vectors).
    pub describes_photos: bool,
    /// The local features the index stores (`xfeat`, `delg`), if any.
    pub local_features: Option<String>,
    /// The describing queue.
    pub queue: QueueStatus,
}

/// One search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hit {
    /// The photo's id.
    pub id: String,
    /// The photo's indexed name.
    pub name: String,
    /// Cosine similarity to the query (or the re-ranked score).
    pub score: f32,
    /// RANSAC inliers, with spatial re-ranking, for the verified results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inliers: Option<u32>,
}

/// `POST /search`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Best first.
    pub results: Vec<Hit>,
    /// Time spent on the request, in milliseconds.
    pub took_ms: f64,
}

/// A photo of the collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageInfo {
    /// Its id: the first 16 hex digits of the SHA-256 of its name.
    pub id: String,
    /// Its indexed name (the path relative to the collection's root).
    pub name: String,
    /// SHA-256 of its content when indexed, hex (none for imported vectors).
    pub sha256: Option<String>,
    /// Whether its file is available under the collection's root.
    pub file: bool,
    /// Where its thumbnail is.
    pub thumbnail_url: String,
    /// Where its file is.
    pub file_url: String,
}

/// `POST /images`: the stored photo.
#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    /// The photo as stored.
    #[serde(flatten)]
    pub image: ImageInfo,
    /// False when the same photo was already stored under that name.
    pub added: bool,
}

/// A photo in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageRef {
    /// Its id.
    pub id: String,
    /// Its indexed name.
    pub name: String,
}

/// `GET /images`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageList {
    /// Photos in the collection.
    pub total: usize,
    /// The first listed, in name order.
    pub offset: usize,
    /// At most `limit` photos from `offset`, in name order.
    pub images: Vec<ImageRef>,
}

/// `DELETE /images/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The photo's id.
    pub id: String,
    /// Its indexed name.
    pub name: String,
    /// Always true.
    pub deleted: bool,
    /// Whether its file went too (only files the server stored, in the upload folder).
    pub file_removed: bool,
}

/// A member of a group of near-duplicates.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its indexed name.
    pub name: String,
    /// Its best similarity to another member.
    pub best: f32,
}

/// Two members scoring at least the threshold.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pair {
    /// One photo's name.
    pub a: String,
    /// The other's (`a < b`).
    pub b: String,
    /// Their similarity.
    pub score: f32,
}

/// A group of near-duplicate photos.
#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    /// Its members, by name.
    pub members: Vec<Member>,
    /// Pairs scoring at least the threshold, best first.
    pub pairs: Vec<Pair>,
    /// The best pair's score.
    pub best: f32,
    /// The lowest similarity between any two members (none for very large groups).
    pub weakest: Option<f32>,
}

/// `GET /duplicates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Duplicates {
    /// The similarity pairs must reach.
    pub threshold: f32,
    /// How pairs were found: `exact` or `graph`.
    pub method: String,
    /// Photos in the collection.
    pub entries: usize,
    /// The groups.
    pub groups: Vec<Group>,
}

/// A described-only request struct: its own fields (those whose type or constraints differ between
/// the query string and JSON), then the options both take alike (`min_score` and `RerankSpec`'s
/// keys but `rerank`), written once for both.
macro_rules! search_options {
    ($(#[$meta:meta])* pub struct $name:ident { $($own:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($own)*
            /// Drop results scoring below this cosine similarity.
            min_score: Option<f32>,
            /// α-QE: expand the query with its top N.
            qe: Option<usize>,
            /// α-QE's weighting exponent (default 3; needs `qe`).
            qe_alpha: Option<f32>,
            /// SuperGlobal: results refined (needs superglobal in `rerank`).
            sg_m: Option<usize>,
            /// SuperGlobal: neighbours per refinement.
            sg_k: Option<usize>,
            /// SuperGlobal: β.
            sg_beta: Option<f32>,
            /// Spatial: results verified (needs spatial in `rerank`).
            rerank_k: Option<usize>,
            /// Spatial: inliers a result needs to move up.
            min_inliers: Option<usize>,
            /// Spatial: weight of the inlier evidence, a number or `inliers`.
            spatial_weight: Option<String>,
            /// Spatial: `mnn` or `lighterglue`.
            matcher: Option<String>,
            /// Spatial: Lowe's ratio test instead of the distance bound.
            match_ratio: Option<f64>,
            /// Spatial: keep mutual nearest neighbours only.
            mutual: Option<bool>,
            /// Spatial: `homography` or `affine`.
            ransac: Option<String>,
            /// Spatial: RANSAC inlier threshold in pixels.
            ransac_px: Option<f64>,
        }
    };
}

search_options! {
    /// A JSON search: exactly one of `vector`, `name` or `id`, with the options of the query string
    /// (the body's value wins where both give one).
    #[derive(Debug, serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Described, not built: the handler reads the body key by key.
    pub struct SearchJson {
        /// A query descriptor of the index's dimension (normalised by the server).
        vector: Option<Vec<f32>>,
        /// An indexed photo's name.
        name: Option<String>,
        /// An indexed photo's id.
        id: Option<String>,
        /// Results (1 to 1000; default 10).
        #[schema(minimum = 1, maximum = 1000)]
        k: Option<usize>,
        /// Crop the query photo to x1, y1, x2, y2 (pixels) first.
        #[schema(min_items = 4, max_items = 4)]
        crop: Option<[f64; 4]>,
        /// HNSW: candidates examined per query (default 64).
        #[schema(minimum = 1)]
        ef: Option<usize>,
        /// Filter expressions (`folder = trips`, `name ~ IMG_*.jpg`), all to hold; a single string is one expression.
        r#where: Option<Vec<String>>,
        /// Re-ranking methods (`superglobal`, `spatial`); a single string may list them comma-separated.
        rerank: Option<Vec<String>>,
    }
}

/// A photo upload as a multipart form: the image and, for a search, its options as fields.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Described, not built: the handler reads the form part by part.
pub struct ImageForm {
    /// The photo (JPEG, PNG, WebP, TIFF, BMP, GIF, PNM); its file name is kept by `POST /images`.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// A raw image body (`image/*`).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Described, not built.
pub struct RawImage(Vec<u8>);

search_options! {
    /// The search options of the query string (and of form fields and JSON keys): the library's
    /// `SearchRequest` and `RerankSpec` keys.
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)] // Described, not built: `Options::set` parses them.
    pub struct SearchParams {
        /// Results (1 to 1000; default 10).
        #[param(minimum = 1, maximum = 1000)]
        k: Option<usize>,
        /// Filter expression (`folder = trips`, `name ~ IMG_*.jpg`, `name != a/b.jpg`); repeat for several, all to hold.
        #[param(style = Form, explode)]
        r#where: Option<Vec<String>>,
        /// Crop the query photo first: `x1,y1,x2,y2` in pixels.
        crop: Option<String>,
        /// HNSW: candidates examined per query (default 64).
        #[param(minimum = 1)]
        ef: Option<usize>,
        /// Re-ranking methods, comma-separated: `superglobal`, `spatial`.
        rerank: Option<String>,
    }
}

/// `GET /images` paging.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Described, not built.
pub struct Paging {
    /// Photos to skip (default 0).
    offset: Option<usize>,
    /// Photos to list (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /duplicates`'s `method`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Described, not built.
pub enum MethodName {
    /// Exact up to a collection size, then the graph.
    Auto,
    /// Every pair, exactly.
    Exact,
    /// Neighbours from the HNSW graph.
    Graph,
}

/// `GET /duplicates` options.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Described, not built.
pub struct DuplicateParams {
    /// Similarity pairs must reach, -1 to 1 (default: the one measured for the index's model).
    #[param(minimum = -1.0, maximum = 1.0)]
    threshold: Option<f32>,
    /// How pairs are found (default `auto`: exact up to a size, then the HNSW graph).
    #[param(inline)]
    method: Option<MethodName>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dolg serve",
        description = "Image retrieval over a dolg collection: search by photo, vector or indexed photo; add and remove photos; near-duplicates."
    ),
    paths(
        super::handlers::page,
        super::handlers::openapi,
        super::handlers::health,
        super::handlers::ready,
        super::handlers::metrics,
        super::handlers::search,
        super::handlers::list_images,
        super::handlers::add_image,
        super::handlers::image_info,
        super::handlers::delete_image,
        super::handlers::thumbnail,
        super::handlers::image_file,
        super::handlers::duplicates,
    ),
    components(schemas(ErrorBody, QueueStatus))
)]
struct ApiDoc;

/// The description as JSON. utoipa 5.5 writes a link's `operationId`, `operationRef` and
/// `requestBody` in snake case (its `Link` lacks serde's camelCase renaming); they are renamed
/// here so that clients following links (schemathesis's stateful phase) find them.
pub(crate) fn to_json(doc: &Document) -> serde_json::Value {
    fn fix(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                    for link in links.values_mut().filter_map(serde_json::Value::as_object_mut) {
                        for (from, to) in [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")] {
                            if let Some(x) = link.remove(from) {
                                link.insert(to.into(), x);
                            }
                        }
                    }
                }
                map.values_mut().for_each(fix);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(doc).unwrap_or_default();
    fix(&mut v);
    v
}

/// Routes a token guards for reads too (`--token-read`): all but these.
const OPEN_ROUTES: [&str; 4] = ["/", "/health", "/ready", "/openapi.json"];

/// The description of a server started with `config`: the generated one, with the bearer token
/// required where the server requires it (and the 401 it answers without it).
pub(crate) fn description(config: &Config) -> Document {
    let mut doc = ApiDoc::openapi();
    if config.token.is_none() {
        return doc;
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = OPEN_ROUTES.contains(&path.as_str());
        let ops = [(&mut item.get, false), (&mut item.post, path == "/images"), (&mut item.delete, true)];
        for (op, write) in ops {
            let Some(op) = op.as_mut() else { continue };
            if write || (config.token_read && !open) {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                let unauthorized = Response::builder()
                    .description("No token, or the wrong one (`Authorization: Bearer <token>`)")
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build();
                op.responses.responses.insert("401".into(), unauthorized.into());
            }
        }
    }
    doc
}
