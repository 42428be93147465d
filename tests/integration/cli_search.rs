//! `dolg search` end to end, on indexes built by `dolg index build` with the random-weight DOLG
//! fixture (`../shared/fixtures/dolg-r50-random`, variant A) at `--scales 1.0` over a few photos of
//! `examples/landmarks/images`: self-exclusion of an indexed query, searching by stored vectors
//! when the weights are gone, `--out-npy`, `--html` and `--json` (with `-k` and `--min-score`).
//!
//! The independent reference is `dolg extract` with the same weights and scales: its descriptors,
//! and the dot products computed here, must give every score the search reports (within 1e-5).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::shared_dir;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");
const TOL: f64 = 1e-5;

/// Indexed photos (small JPEGs, 400–640 px) and one that is never indexed.
const INDEXED: [&str; 6] = ["wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg", "wxbs-berlin_1.jpg", "wxbs-berlin_2.jpg", "lg-building_1.jpg", "distractor_01.jpg"];
const OUTSIDER: &str = "wxbs-church_1.jpg";

fn weights() -> PathBuf {
    shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")
}

fn example_photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images").join(name)
}

fn dolg<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let t = std::time::Instant::now();
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let out = Command::new(BIN).args(&args).env_remove("RUST_LOG").output().expect("run dolg");
    eprintln!("dolg {args:?}: {:?} in {:.1?}", out.status.code(), t.elapsed());
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run dolg and require exit status 0.
fn ok<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let o = dolg(args);
    assert_eq!(o.status.code(), Some(0), "dolg {:?} failed:\n{}", args.iter().map(|a| a.as_ref().to_owned()).collect::<Vec<_>>(), text(&o.stderr));
    o
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&o.stdout)))
}

/// The name an image is indexed under: its path relative to the collection root, which is the
/// folder holding every indexed photo in these tests (the default root of `dolg index build`).
fn indexed_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

/// Rows of a float32 [N, D] .npy.
fn npy_rows(path: &Path) -> Vec<Vec<f32>> {
    let (shape, data) = crate::common::read_npy_f32(path);
    assert_eq!(shape.len(), 2, "{}", path.display());
    data.chunks(shape[1]).map(<[f32]>::to_vec).collect()
}

fn write_npy_f32(path: &Path, rows: &[&[f32]]) {
    use npyz::WriterBuilder;
    let dim = rows[0].len();
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows.len() as u64, dim as u64])
        .writer(std::io::BufWriter::new(std::fs::File::create(path).unwrap()))
        .begin_nd()
        .unwrap();
    w.extend(rows.iter().flat_map(|r| r.iter().copied())).unwrap();
    w.finish().unwrap();
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

/// One search result as printed by `--json`.
#[derive(Debug, Clone)]
struct Hit {
    name: String,
    score: f64,
}

/// The `--json` output, checked for its documented structure: `{"queries": [{"query": …,
/// "results": [{"name": …, "score": …}, …]}, …]}`, nothing else, scores descending.
fn parse_search(v: &Value) -> Vec<(Value, Vec<Hit>)> {
    let top = v.as_object().expect("top level is an object");
    assert_eq!(top.keys().collect::<Vec<_>>(), ["queries"], "{v:#}");
    let queries = top["queries"].as_array().expect("queries is an array");
    queries
        .iter()
        .map(|q| {
            let q = q.as_object().expect("a query is an object");
            let mut keys: Vec<&String> = q.keys().collect();
            keys.sort();
            assert_eq!(keys, ["query", "results"], "{q:?}");
            let hits: Vec<Hit> = q["results"]
                .as_array()
                .expect("results is an array")
                .iter()
                .map(|h| {
                    let h = h.as_object().expect("a result is an object");
                    let mut keys: Vec<&String> = h.keys().collect();
                    keys.sort();
                    assert_eq!(keys, ["name", "score"], "{h:?}");
                    Hit { name: h["name"].as_str().expect("name is a string").to_owned(), score: h["score"].as_f64().expect("score is a number") }
                })
                .collect();
            for w in hits.windows(2) {
                assert!(w[0].score >= w[1].score, "scores not descending: {hits:?}");
            }
            (q["query"].clone(), hits)
        })
        .collect()
}

/// An index over [`INDEXED`] (copied into one directory) and `dolg extract`'s descriptors of the
/// same photos plus [`OUTSIDER`], made once per test binary in CARGO_TARGET_TMPDIR (cargo's
/// scratch directory for integration tests; a static is never dropped, so the next run removes it).
struct Setup {
    root: PathBuf,
    db: PathBuf,
    photos: Vec<PathBuf>,
    outsider: PathBuf,
    /// Reference descriptor per indexed name (canonical path), and of the outsider.
    desc: HashMap<String, Vec<f32>>,
}

impl Setup {
    fn get() -> &'static Setup {
        static CELL: OnceLock<Setup> = OnceLock::new();
        CELL.get_or_init(Setup::make)
    }

    fn make() -> Setup {
        let w = weights();
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Remove what earlier runs left, where the process that made it is gone.
        if Path::new("/proc/self").exists() {
            for e in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("cli_search-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let root = scratch.join(format!("cli_search-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("photos");
        std::fs::create_dir_all(&dir).unwrap();
        let photos: Vec<PathBuf> = INDEXED
            .iter()
            .map(|n| {
                let p = dir.join(n);
                std::fs::copy(example_photo(n), &p).unwrap();
                p
            })
            .collect();
        let outsider = root.join(OUTSIDER);
        std::fs::copy(example_photo(OUTSIDER), &outsider).unwrap();
        let db = root.join("db");
        let o = ok(&[
            OsStr::new("index"),
            "build".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
            "--weights".as_ref(),
            w.as_os_str(),
            "--scales".as_ref(),
            "1.0".as_ref(),
            "--threads".as_ref(),
            "2".as_ref(),
            "--json".as_ref(),
            dir.as_os_str(),
        ]);
        let summary = json_out(&o);
        assert_eq!((summary["added"].as_u64(), summary["entries"].as_u64()), (Some(6), Some(6)), "{summary:#}");

        let npy = root.join("ref.npy");
        let mut args: Vec<&OsStr> = ["extract", "--weights"].map(OsStr::new).to_vec();
        args.push(w.as_os_str());
        args.extend(["--scales", "1.0", "--threads", "2", "--out"].map(OsStr::new));
        args.push(npy.as_os_str());
        args.extend(photos.iter().map(|p| p.as_os_str()));
        args.push(outsider.as_os_str());
        ok(&args);
        let rows = npy_rows(&npy);
        let names = std::fs::read_to_string(root.join("ref.names.txt")).unwrap();
        let names: Vec<String> = names.lines().map(|n| indexed_name(Path::new(n))).collect();
        assert_eq!(rows.len(), 7);
        assert_eq!(names.len(), 7);
        let desc = names.into_iter().zip(rows).collect();
        Setup { root, db, photos, outsider, desc }
    }

    fn desc(&self, p: &Path) -> &[f32] {
        &self.desc[&indexed_name(p)]
    }

    /// Reference scores of query `q` against every indexed photo except `skip`, best first.
    fn expected(&self, q: &[f32], skip: Option<&Path>) -> Vec<Hit> {
        let skip = skip.map(indexed_name);
        let mut hits: Vec<Hit> =
            self.photos.iter().map(|p| indexed_name(p)).filter(|n| Some(n) != skip.as_ref()).map(|n| Hit { score: dot(q, &self.desc[&n]), name: n }).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits
    }

    fn search(&self, extra: &[&OsStr]) -> Vec<(Value, Vec<Hit>)> {
        let mut args: Vec<&OsStr> = ["search", "--json", "--threads", "2", "--db"].map(OsStr::new).to_vec();
        args.push(self.db.as_os_str());
        args.extend_from_slice(extra);
        parse_search(&json_out(&ok(&args)))
    }
}

/// `got` are the reference hits `want` (all of them, or its first `got.len()`): same scores within
/// [`TOL`], and the same names wherever the reference scores are not tied within [`TOL`].
fn assert_hits(what: &str, got: &[Hit], want: &[Hit]) {
    assert!(got.len() <= want.len(), "{what}: {} results, at most {} expected\n{got:?}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g.score - w.score).abs() <= TOL, "{what}: result {i} scores {} (reference {})\ngot  {got:?}\nwant {want:?}", g.score, w.score);
        let tied = want.iter().any(|o| o.name != w.name && (o.score - w.score).abs() <= TOL);
        if !tied {
            assert_eq!(g.name, w.name, "{what}: result {i}\ngot  {got:?}\nwant {want:?}");
        }
        // Whatever the ties, the name must be one the reference scores this way.
        let ref_score = want.iter().find(|o| o.name == g.name).unwrap_or_else(|| panic!("{what}: unexpected result {}", g.name)).score;
        assert!((ref_score - g.score).abs() <= TOL, "{what}: {} scores {} (reference {ref_score})", g.name, g.score);
    }
    let mut names: Vec<&str> = got.iter().map(|h| h.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), got.len(), "{what}: a name is repeated: {got:?}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn indexed_query_is_left_out_of_its_results_and_uses_its_stored_descriptor() {
    let s = Setup::get();
    let q = &s.photos[0];
    let name = indexed_name(q);
    // By image: every other indexed photo, never the query itself.
    let by_image = s.search(&[q.as_os_str()]);
    assert_eq!(by_image.len(), 1);
    assert_eq!(by_image[0].0, Value::String(q.display().to_string()), "the query label is the path as given");
    let hits = &by_image[0].1;
    assert!(hits.iter().all(|h| h.name != name), "the query is in its own results: {hits:?}");
    assert_eq!(hits.len(), INDEXED.len() - 1, "{hits:?}");
    let want = s.expected(s.desc(q), Some(q));
    assert_hits("query by indexed image", hits, &want);

    // By its descriptor from `dolg extract` (--vectors): the same results and scores, plus the
    // photo itself (score 1), which a vector query does not exclude.
    let qnpy = s.root.join("q_self.npy");
    write_npy_f32(&qnpy, &[s.desc(q)]);
    let by_vector = s.search(&["--vectors".as_ref(), qnpy.as_os_str()]);
    assert_eq!(by_vector.len(), 1);
    assert_eq!(by_vector[0].0, Value::from(0), "a vector query is labelled by its row number");
    let vhits = &by_vector[0].1;
    assert_eq!(vhits.len(), INDEXED.len(), "{vhits:?}");
    assert_eq!(vhits[0].name, name, "a vector query finds the photo itself first: {vhits:?}");
    assert!((vhits[0].score - 1.0).abs() <= TOL, "self score {}", vhits[0].score);
    let others: Vec<Hit> = vhits[1..].to_vec();
    assert_eq!(others.len(), hits.len());
    for (a, b) in hits.iter().zip(&others) {
        assert!((a.score - b.score).abs() <= TOL, "image query {a:?} vs vector query {b:?}");
    }
    assert_hits("query by extract's descriptor", &others, &want);

    // The same file named by a relative path from another directory is still recognised.
    let o = Command::new(BIN)
        .current_dir(s.root.join("photos"))
        .args(["search", "--json", "--threads", "2", "--db"])
        .arg(&s.db)
        .arg(INDEXED[0])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let rel = parse_search(&json_out(&o));
    assert_eq!(rel[0].0, Value::String(INDEXED[0].to_owned()));
    assert!(rel[0].1.iter().all(|h| h.name != name), "relative path: the query is in its own results");
    assert_hits("query by relative path", &rel[0].1, &want);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn indexed_photos_are_searchable_after_the_weights_are_gone() {
    let s = Setup::get();
    let tmp = tempfile::tempdir().unwrap();
    let wdir = tmp.path().join("weights");
    std::fs::create_dir_all(&wdir).unwrap();
    let copy = wdir.join("moved-away.pyth.gz");
    std::fs::copy(weights(), &copy).unwrap();
    let copy_name = canonical(&copy);
    let db = tmp.path().join("db");
    let (a, b) = (&s.photos[2], &s.photos[3]);
    let build = ok(&[
        OsStr::new("index"),
        "build".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
        "--weights".as_ref(),
        copy.as_os_str(),
        "--scales".as_ref(),
        "1.0".as_ref(),
        "--threads".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let summary = json_out(&build);
    assert_eq!((summary["added"].as_u64(), summary["entries"].as_u64()), (Some(2), Some(2)), "{summary:#}");
    std::fs::remove_dir_all(&wdir).unwrap();
    assert!(!copy.exists());

    // An indexed photo needs no model: its stored descriptor is the query.
    let o = ok(&[OsStr::new("search"), "--json".as_ref(), "--db".as_ref(), db.as_os_str(), a.as_os_str()]);
    let res = parse_search(&json_out(&o));
    assert_eq!(res.len(), 1);
    let hits = &res[0].1;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].name, indexed_name(b));
    assert!((hits[0].score - dot(s.desc(a), s.desc(b))).abs() <= TOL, "{hits:?}");

    // Any other photo must be described, which needs the weights: exit 1, naming the file.
    let o = dolg(&[OsStr::new("search"), "--db".as_ref(), db.as_os_str(), s.outsider.as_os_str()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error:") && err.contains(&copy_name), "the error should name {copy_name}:\n{err}");
    assert!(o.stdout.is_empty(), "no results printed on a fatal error: {}", text(&o.stdout));
}

/// A float32 or int64 `.npy` as (shape, data), checking the dtype.
fn read_npy<T: npyz::Deserialize>(path: &Path, descr: &str) -> (Vec<usize>, Vec<T>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(f.dtype().descr(), descr, "{}", path.display());
    let shape = f.shape().iter().map(|&s| s as usize).collect();
    (shape, f.into_vec::<T>().unwrap())
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn out_npy_writes_ids_scores_and_rows_matching_the_json() {
    let s = Setup::get();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("hits");
    // An indexed query (5 results: itself excluded) and an outsider (all 6), asking for more
    // results than there are entries: --k is capped at the 6 entries, and the indexed query's
    // row is padded once.
    let res = s.search(&["--k".as_ref(), "8".as_ref(), "--out-npy".as_ref(), prefix.as_os_str(), s.photos[1].as_os_str(), s.outsider.as_os_str()]);
    assert_eq!(res.len(), 2);
    assert_eq!(res[0].1.len(), 5);
    assert_eq!(res[1].1.len(), 6);
    assert_hits("indexed query", &res[0].1, &s.expected(s.desc(&s.photos[1]), Some(&s.photos[1])));
    assert_hits("outsider query", &res[1].1, &s.expected(s.desc(&s.outsider), None));

    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));
    let (ishape, ids) = read_npy::<i64>(&file("ids.npy"), "'<i8'");
    let (sshape, scores) = read_npy::<f32>(&file("scores.npy"), "'<f4'");
    let k = 6;
    assert_eq!(ishape, [2, k]);
    assert_eq!(sshape, [2, k]);
    let table: BTreeMap<i64, String> = std::fs::read_to_string(file("rows.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (id, name) = l.split_once('\t').unwrap_or_else(|| panic!("rows.tsv line without a tab: {l:?}"));
            (id.parse().unwrap_or_else(|_| panic!("rows.tsv id {id:?}")), name.to_owned())
        })
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for (qi, (_, hits)) in res.iter().enumerate() {
        for j in 0..k {
            let (id, score) = (ids[qi * k + j], scores[qi * k + j]);
            match hits.get(j) {
                Some(h) => {
                    assert!(id >= 0, "query {qi} result {j}: id {id}");
                    assert_eq!(table.get(&id), Some(&h.name), "query {qi} result {j}: id {id}");
                    assert!((f64::from(score) - h.score).abs() <= 1e-6, "query {qi} result {j}: npy score {score}, JSON {}", h.score);
                    used.insert(id);
                }
                None => {
                    assert_eq!(id, -1, "query {qi} padding {j}");
                    assert!(score.is_nan(), "query {qi} padding {j}: score {score}");
                }
            }
        }
    }
    // rows.tsv maps exactly the ids used, each to a distinct name.
    assert_eq!(table.keys().copied().collect::<std::collections::BTreeSet<_>>(), used);
    let mut names: Vec<&String> = table.values().collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.len(), "{table:?}");
    assert_eq!(table.len(), INDEXED.len());
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn html_page_is_self_contained_with_one_section_per_query() {
    let s = Setup::get();
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("results.html");
    let o = ok(&[
        OsStr::new("search"),
        "--threads".as_ref(),
        "2".as_ref(),
        "--k".as_ref(),
        "3".as_ref(),
        "--db".as_ref(),
        s.db.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
        s.photos[4].as_os_str(),
        s.outsider.as_os_str(),
    ]);
    assert!(text(&o.stderr).contains(&page.display().to_string()), "{}", text(&o.stderr));
    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(html.starts_with("<!doctype html>"), "{}", html.chars().take(200).collect::<String>());
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<section").count(), 2, "one section per query");
    // Every picture is embedded: the two queries and 3 results each, all decodable JPEGs.
    let srcs: Vec<&str> = html.split("<img src=\"").skip(1).map(|r| &r[..r.find('"').unwrap()]).collect();
    assert_eq!(srcs.len(), 2 + 2 * 3, "{} images", srcs.len());
    for src in &srcs {
        assert!(src.starts_with("data:image/jpeg;base64,") && src.len() > 1000, "not an embedded JPEG: {}", &src[..src.len().min(80)]);
    }
    // Nothing is fetched from elsewhere: no links, scripts or stylesheets by URL.
    for needle in ["href=", "<script", "<link", "url(", "file:", "http:", "https:"] {
        assert!(!html.contains(needle), "the page references {needle}");
    }
    // Each section shows its query's file name, then its results' names.
    let sections: Vec<&str> = html.split("<section").skip(1).collect();
    for (section, q) in sections.iter().zip([&s.photos[4], &s.outsider]) {
        let qname = q.file_name().unwrap().to_str().unwrap();
        assert!(section.contains(qname), "section lacks its query {qname}");
    }
    // The indexed query's file name appears once in its section: in the query's caption, not
    // among its results.
    assert_eq!(sections[0].matches(INDEXED[4]).count(), 1, "the indexed query is among its own results");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn json_respects_k_and_min_score() {
    let s = Setup::get();
    let q = &s.photos[2];
    let want = s.expected(s.desc(q), Some(q));
    // --k larger than the index: every other entry; --k 2: the best two.
    let all = s.search(&["--k".as_ref(), "100".as_ref(), q.as_os_str()]);
    assert_hits("--k 100", &all[0].1, &want);
    assert_eq!(all[0].1.len(), INDEXED.len() - 1);
    let two = s.search(&["--k".as_ref(), "2".as_ref(), q.as_os_str()]);
    assert_eq!(two[0].1.len(), 2);
    assert_hits("--k 2", &two[0].1, &want);

    // --min-score halfway across the widest gap between consecutive reference scores keeps
    // exactly the results above it.
    let n = (1..want.len()).max_by(|&i, &j| (want[i - 1].score - want[i].score).total_cmp(&(want[j - 1].score - want[j].score))).unwrap();
    let cut = (want[n - 1].score + want[n].score) / 2.0;
    assert!(want[n - 1].score - want[n].score > 4.0 * TOL, "reference scores too close to cut between: {want:?}");
    let cut_s = format!("{cut}");
    let kept = s.search(&["--min-score".as_ref(), cut_s.as_ref(), q.as_os_str()]);
    assert_eq!(kept[0].1.len(), n, "--min-score {cut}: {:?}", kept[0].1);
    assert!(kept[0].1.iter().all(|h| h.score >= cut), "{:?}", kept[0].1);
    assert_hits("--min-score", &kept[0].1, &want);
    // Above every score: queries are still listed, with no results.
    let none = s.search(&["--min-score".as_ref(), "1.5".as_ref(), q.as_os_str(), s.outsider.as_os_str()]);
    assert_eq!(none.len(), 2);
    assert!(none.iter().all(|(_, hits)| hits.is_empty()), "{none:?}");
    // Several queries come back in the order given.
    let labels: Vec<Value> = none.iter().map(|(q, _)| q.clone()).collect();
    assert_eq!(labels, [Value::String(q.display().to_string()), Value::String(s.outsider.display().to_string())]);
}
