//! Revisited Oxford / Paris: ground-truth loading and golden metric values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dolg::eval::metric::pct;
use dolg::eval::{EvalError, Protocol, RanksMatrix, RevisitedGnd, RevisitedResult};
use serde_json::{json, Value};

fn gnd_path(shared: &Path, dataset: &str) -> PathBuf {
    shared.join(format!("data/revisitop/gnd_{dataset}.pkl"))
}

fn read_ranks(path: &Path) -> RanksMatrix {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    assert_eq!(npy.order(), npyz::Order::C, "{}", path.display());
    let data: Vec<i32> = npy.into_vec().expect("npy data");
    let data: Vec<usize> = data.into_iter().map(|v| usize::try_from(v).expect("index")).collect();
    RanksMatrix::from_row_major(&data, shape[0], shape[1]).expect("ranks matrix")
}

/// Parses JSON with every number turned into its literal text (a JSON string), so that floats
/// can be read with Rust's correctly rounded `str::parse` (serde_json's default float parser
/// may be 1 ulp off without its `float_roundtrip` feature).
fn json_exact(text: &str) -> Value {
    let mut out = String::with_capacity(text.len() * 2);
    let (mut in_str, mut escaped, mut in_num) = (false, false, false);
    for c in text.chars() {
        if in_num && !matches!(c, '0'..='9' | '.' | 'e' | 'E' | '+' | '-') {
            out.push('"');
            in_num = false;
        }
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if !in_num && matches!(c, '-' | '0'..='9') {
            out.push('"');
            in_num = true;
        }
        out.push(c);
    }
    if in_num {
        out.push('"');
    }
    serde_json::from_str(&out).expect("expected.json")
}

/// A number from [`json_exact`] (`None` for `null`).
fn num(v: &Value) -> Option<f64> {
    v.as_str().map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
}

/// Compares one float, counting exact (bit-identical) matches.
fn check(what: &str, got: f64, want: f64, stats: &mut (usize, usize, f64)) {
    let diff = (got - want).abs();
    assert!(diff <= 1e-12, "{what}: got {got:?}, expected {want:?}");
    stats.0 += 1;
    if got.to_bits() != want.to_bits() {
        stats.1 += 1;
        stats.2 = stats.2.max(diff);
    }
}

/// Rounded values of the README table: `dataset/case -> [mAP E, M, H, mP@1 M, mP@5 M, mP@10 M]`.
fn readme_table(shared: &Path) -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(shared.join("fixtures/revisitop/README.md")).expect("README");
    text.lines()
        .filter(|l| l.starts_with("| roxford5k/") || l.starts_with("| rparis6k/"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let mut vals: Vec<String> = cells[1..4].iter().map(|s| s.to_string()).collect();
            vals.extend(cells[4].split(',').map(|s| s.trim().to_string()));
            (cells[0].to_string(), vals)
        })
        .collect()
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn golden_values_all_cases() {
    let shared = crate::common::shared_dir();
    let fixtures = shared.join("fixtures/revisitop");
    let expected = json_exact(&std::fs::read_to_string(fixtures.join("expected.json")).expect("expected.json"));
    let table = readme_table(&shared);
    let mut gnds: HashMap<String, RevisitedGnd> = HashMap::new();
    let mut stats = (0usize, 0usize, 0f64);
    let cases = expected.as_object().expect("object");
    assert_eq!(cases.len(), 10);

    for (name, case) in cases {
        let dataset = name.split('/').next().expect("dataset");
        let gnd = gnds.entry(dataset.to_string()).or_insert_with(|| RevisitedGnd::load(gnd_path(&shared, dataset)).expect("gnd"));
        let ranks = read_ranks(&fixtures.join(case["ranks_file"].as_str().expect("ranks_file")));
        assert_eq!(case["shape"], json!([ranks.n_db().to_string(), "70"]), "{name}");
        assert_eq!(case["kappas"], json!(["1", "5", "10"]));
        let result: RevisitedResult = gnd.evaluate(&ranks).expect("evaluate");

        for p in Protocol::ALL {
            let (got, want) = (result.get(p), &case[p.name()]);
            let tag = format!("{name}/{}", p.name());
            check(&format!("{tag} mAP"), got.map, num(&want["mAP"]).expect("mAP"), &mut stats);
            for k in 0..3 {
                let w = num(&want["mP@k"][k]).expect("mP@k");
                check(&format!("{tag} mP@k[{k}]"), got.mp[k], w, &mut stats);
            }
            assert_eq!(num(&want["num_valid_queries"]), Some(got.n_queries as f64), "{tag}");
            let (aps, prs) = (want["aps"].as_array().expect("aps"), want["prs"].as_array().expect("prs"));
            assert_eq!((got.aps.len(), got.prs.len()), (aps.len(), prs.len()), "{tag}");
            for q in 0..aps.len() {
                // A skipped query's P@k row is written as `null` or as `[null, null, null]`.
                let wpr = prs[q].as_array().filter(|row| row.iter().all(|v| !v.is_null()));
                match (got.aps[q], num(&aps[q]), got.prs[q], wpr) {
                    (None, None, None, None) => {}
                    (Some(ap), Some(w), Some(pr), Some(wpr)) => {
                        check(&format!("{tag} ap[{q}]"), ap, w, &mut stats);
                        for k in 0..3 {
                            let w = num(&wpr[k]).expect("pr");
                            check(&format!("{tag} pr[{q}][{k}]"), pr[k], w, &mut stats);
                        }
                    }
                    other => panic!("{tag} query {q}: skipped mismatch {other:?}"),
                }
            }
        }

        // Printed 2-decimal values: the README table and our own table().
        let want = &table[name.as_str()];
        let (e, m, h) = (&result.easy, &result.medium, &result.hard);
        let got = [pct(e.map), pct(m.map), pct(h.map), pct(m.mp[0]), pct(m.mp[1]), pct(m.mp[2])];
        assert_eq!(&got[..], &want[..], "{name}: printed values");
        let printed = result.table(dataset);
        let map_line = format!(">> {dataset}: mAP E: {}, M: {}, H: {}", want[0], want[1], want[2]);
        assert!(printed.contains(&map_line), "{printed}");
        let mp_m = format!("M: [{} {} {}]", want[3], want[4], want[5]);
        assert!(printed.contains(&mp_m), "{printed}");
        if name.as_str() == "roxford5k/oracle" {
            println!("{printed}");
        }

        // JSON shape.
        let j = result.to_json(true);
        assert_eq!(j["medium"]["n_queries"], json!(70));
        assert_eq!(j["medium"]["map"].as_f64(), Some(m.map * 100.0));
        assert_eq!(j["hard"]["mp"]["10"].as_f64(), Some(h.mp[2] * 100.0));
        assert_eq!(j["easy"]["aps"].as_array().map(Vec::len), Some(70));
        assert!(result.to_json(false)["easy"].get("aps").is_none());
    }
    println!("compared {} values, {} not bit-identical (max |diff| {:e})", stats.0, stats.1, stats.2);
    assert_eq!(stats.1, 0, "expected bit-identical results");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn roxford_easy_skips_two_queries() {
    let shared = crate::common::shared_dir();
    let gnd = RevisitedGnd::load(gnd_path(&shared, "roxford5k")).expect("gnd");
    let ranks = read_ranks(&shared.join("fixtures/revisitop/roxford5k_oracle_ranks.npy"));
    let r = gnd.evaluate(&ranks).expect("evaluate");
    assert_eq!((r.easy.n_queries, r.easy.n_skipped()), (68, 2));
    let j = r.to_json(true);
    assert_eq!(j["easy"]["n_queries"], json!(68));
    let nulls = j["easy"]["aps"].as_array().expect("aps").iter().filter(|v| v.is_null()).count();
    assert_eq!(nulls, 2);
    assert!(r.table("roxford5k").contains("skipped) E: 2, M: 0, H: 0"));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn gnd_counts() {
    let shared = crate::common::shared_dir();
    // (dataset, n_db, easy, hard, junk, queries without easy, queries without hard)
    for (dataset, n_db, easy, hard, junk, no_easy, no_hard) in [("roxford5k", 4993, 3029, 2497, 1356, 2, 0), ("rparis6k", 6322, 6874, 10350, 7153, 0, 0)] {
        let g = RevisitedGnd::load(gnd_path(&shared, dataset)).expect("gnd");
        assert_eq!((g.n_db(), g.n_queries(), g.gnd.len()), (n_db, 70, 70), "{dataset}");
        let sum = |f: fn(&dolg::eval::QueryGnd) -> usize| g.gnd.iter().map(f).sum::<usize>();
        assert_eq!(sum(|q| q.easy.len()), easy, "{dataset}");
        assert_eq!(sum(|q| q.hard.len()), hard, "{dataset}");
        assert_eq!(sum(|q| q.junk.len()), junk, "{dataset}");
        assert_eq!(g.gnd.iter().filter(|q| q.easy.is_empty()).count(), no_easy);
        assert_eq!(g.gnd.iter().filter(|q| q.hard.is_empty()).count(), no_hard);
        assert!(g.qimlist.iter().all(|q| !g.imlist.contains(q)), "queries are not in the database");
        for q in &g.gnd {
            let [x1, y1, x2, y2] = q.crop_box();
            assert!(x1 <= x2 && y1 <= y2);
        }
        assert_eq!(g.relevant().len(), 70);
    }
    let ox = RevisitedGnd::load(gnd_path(&shared, "roxford5k")).expect("gnd");
    assert_eq!(ox.gnd[0].bbx, [136.5, 34.1, 648.5, 955.7]);
    assert_eq!(ox.crop_box(0), [136, 34, 648, 955]);
    let pa = RevisitedGnd::load(gnd_path(&shared, "rparis6k")).expect("gnd");
    assert_eq!(pa.gnd[0].bbx, [130.0, 17.0, 843.0, 732.0]);
    assert_eq!(pa.crop_box(0), [130, 17, 843, 732]);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn truncated_pickles_are_errors() {
    let shared = crate::common::shared_dir();
    let path = gnd_path(&shared, "roxford5k");
    let bytes = std::fs::read(&path).expect("read");
    let mut lens: Vec<usize> = (0..256).collect();
    lens.extend((256..bytes.len()).step_by(997));
    lens.push(bytes.len() - 1);
    for len in lens {
        match RevisitedGnd::from_bytes(&bytes[..len], &path) {
            Err(e @ EvalError::Pickle { .. }) => {
                assert!(e.to_string().contains("gnd_roxford5k.pkl"), "{e}");
            }
            other => panic!("truncated to {len} bytes: expected a pickle error, got {other:?}"),
        }
    }
    // Corrupted bytes in the middle must not panic either (errors or, rarely, parse).
    for pos in (2..bytes.len()).step_by(1499) {
        let mut b = bytes.clone();
        b[pos] ^= 0x5a;
        let _ = RevisitedGnd::from_bytes(&b, &path);
    }
}

fn pickle(v: &Value) -> Vec<u8> {
    serde_pickle::to_vec(v, serde_pickle::SerOptions::new()).expect("pickle")
}

fn base() -> Value {
    json!({
        "imlist": ["a", "b", "c"],
        "qimlist": ["q0", "q1"],
        "gnd": [
            {"bbx": [1.5, 2.9, 10.0, 20.7], "easy": [0], "hard": [1], "junk": [2]},
            {"bbx": [0, 0, 5, 5], "easy": [], "hard": [0, 2], "junk": []}
        ]
    })
}

#[test]
fn synthetic_pickle_parses() {
    let p = Path::new("synthetic.pkl");
    let g = RevisitedGnd::from_bytes(&pickle(&base()), p).expect("valid");
    assert_eq!(g.crop_box(0), [1, 2, 10, 20]);
    assert_eq!(g.gnd[1].hard, vec![0, 2]);
    assert_eq!(g.relevant(), vec![vec![0, 1, 2], vec![0, 2]]);
}

#[test]
fn malformed_structure_is_an_error() {
    let p = Path::new("bad.pkl");
    let err = |v: Value| RevisitedGnd::from_bytes(&pickle(&v), p).expect_err("must fail");

    let mut v = base();
    v.as_object_mut().expect("obj").remove("imlist");
    let e = err(v);
    assert!(matches!(e, EvalError::Pickle { .. }) && e.to_string().contains("imlist"), "{e}");

    assert!(matches!(err(json!([1, 2, 3])), EvalError::Pickle { .. }));

    let mut v = base();
    v["gnd"].as_array_mut().expect("arr").pop();
    assert!(matches!(err(v), EvalError::GndCount { key: "gnd", expected: 2, found: 1, .. }));

    let mut v = base();
    v["gnd"][1]["hard"] = json!([0, 3]);
    let e = err(v);
    assert!(matches!(e, EvalError::GndIndex { query: 1, key: "hard", index: 3, n_db: 3, .. }), "{e}");
    assert!(e.to_string().contains("bad.pkl"), "{e}");

    let mut v = base();
    v["gnd"][0]["junk"] = json!([-1]);
    assert!(matches!(err(v), EvalError::GndIndex { query: 0, key: "junk", index: -1, .. }));

    let mut v = base();
    v["gnd"][1]["hard"] = json!([2, 0]);
    assert!(matches!(err(v), EvalError::GndUnsorted { query: 1, key: "hard", prev: 2, next: 0, .. }));

    let mut v = base();
    v["gnd"][0]["bbx"] = json!([1, 2, 3]);
    assert!(matches!(err(v), EvalError::GndBox { query: 0, .. }));

    let mut v = base();
    v["gnd"][0]["bbx"] = json!([1, 2, "x", 4]);
    assert!(matches!(err(v), EvalError::Pickle { .. }));

    let missing = RevisitedGnd::load("/nonexistent/gnd.pkl").expect_err("missing");
    assert!(matches!(missing, EvalError::Io { .. }) && missing.to_string().contains("/nonexistent/gnd.pkl"));
}

/// `dolg eval revisited --images ROOT --weights W` end to end on a tiny synthetic dataset of real
/// photos: cropped queries, cached descriptors on the second run, and every missing image named.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn end_to_end_from_images_with_cache_and_missing_files() {
    let shared = crate::common::shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let jpg = dir.path().join("jpg");
    std::fs::create_dir_all(&jpg).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let names = ["lg-building_1", "lg-building_2", "wxbs-berlin_1", "wxbs-berlin_2"];
    for n in names {
        std::fs::copy(src.join(format!("{n}.jpg")), jpg.join(format!("{n}.jpg"))).unwrap();
    }
    let gnd = json!({
        "imlist": ["lg-building_2", "wxbs-berlin_1", "wxbs-berlin_2"],
        "qimlist": ["lg-building_1"],
        "gnd": [{"bbx": [10.5, 20.2, 300.9, 250.0], "easy": [0], "hard": [], "junk": [2]}]
    });
    let gnd_path = dir.path().join("gnd_tiny.pkl");
    std::fs::write(&gnd_path, pickle(&gnd)).unwrap();
    let weights = shared.join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dolg"))
            .args(["eval", "revisited", "--json", "--scales", "0.5", "--images"])
            .arg(dir.path())
            .arg("--gnd")
            .arg(&gnd_path)
            .arg("--weights")
            .arg(&weights)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let v: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(v["medium"]["map"].as_f64().is_some(), "{v}");
    assert!(dir.path().join(".dolg-cache/queries.npy").exists());
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("using cached descriptors"));
    assert_eq!(first.stdout, second.stdout, "the cache gives the same result");

    // Two database images missing (and the cache invalid): both are named in one error.
    std::fs::remove_dir_all(dir.path().join(".dolg-cache")).unwrap();
    std::fs::remove_file(jpg.join("wxbs-berlin_1.jpg")).unwrap();
    std::fs::remove_file(jpg.join("wxbs-berlin_2.jpg")).unwrap();
    let out = run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 database image(s)") && err.contains("wxbs-berlin_1") && err.contains("wxbs-berlin_2"), "{err}");
}
