//! dolg::rerank against hand-worked cases and against the independent numpy reference
//! (scripts/rerank_reference.py, fixtures in tests/fixtures/rerank/).

use std::path::Path;

use dolg::collection::{Collection, Query, SearchRequest, VectorOrigin};
use dolg::rerank::{dba, expand_query, rank_reranked, superglobal, QueryExpansion, Rerank, SuperGlobal};
use serde_json::Value;

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn average_qe_by_hand() {
    // α = 0: every weight 1: (1,0) + (0.6,0.8) + (0,1) = (1.6,1.8), normalised.
    let e = expand_query(&[1.0, 0.0], &[0.6, 0.8, 0.0, 1.0], 0.0);
    let n = (1.6f32 * 1.6 + 1.8 * 1.8).sqrt();
    assert!(close(e[0], 1.6 / n) && close(e[1], 1.8 / n), "{e:?}");
    // α = 2: weights 0.36 and 0: (1 + 0.216, 0.288), normalised.
    let e = expand_query(&[1.0, 0.0], &[0.6, 0.8, 0.0, 1.0], 2.0);
    let n = (1.216f32 * 1.216 + 0.288 * 0.288).sqrt();
    assert!(close(e[0], 1.216 / n) && close(e[1], 0.288 / n), "{e:?}");
}

#[test]
fn negative_similarity_is_clamped() {
    // q·x = -0.6: weight max(-0.6, 0)^3 = 0 (no NaN), and 0^0 = 1 for α = 0.
    let e = expand_query(&[1.0, 0.0], &[-0.6, 0.8], 3.0);
    assert_eq!(e, vec![1.0, 0.0]);
    let e = expand_query(&[1.0, 0.0], &[-0.6, 0.8], 0.5);
    assert_eq!(e, vec![1.0, 0.0]);
    let e = expand_query(&[1.0, 0.0], &[-0.6, 0.8], 0.0);
    let n = (0.4f32 * 0.4 + 0.8 * 0.8).sqrt();
    assert!(close(e[0], 0.4 / n) && close(e[1], 0.8 / n));
}

#[test]
fn dba_k0_is_identity_and_k1_by_hand() {
    let db = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
    assert_eq!(dba(&db, 2, 0, 3.0), db.to_vec());
    // k = 1, α = 1: row 0's neighbour is row 1 (0.6): (1 + 0.36, 0.48) normalised.
    let d = dba(&db, 2, 1, 1.0);
    let n = (1.36f32 * 1.36 + 0.48 * 0.48).sqrt();
    assert!(close(d[0], 1.36 / n) && close(d[1], 0.48 / n), "{d:?}");
}

#[test]
fn superglobal_by_hand() {
    // q = (1,0); candidates a = (1,0), b = (0.6,0.8), c = (0,1); K = 1, β = 1.
    // a' = (a + 0.6b)/1.6 = (0.85, 0.3); b' = (b + 0.8c)/1.8; c' = (c + 0.8b)/1.8.
    // s1 = (0.85, 1/3, 0.48/1.8); q̂ = max(a', b') = (0.85, 1.6/1.8).
    let cand = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
    let out = superglobal(&[1.0, 0.0], &cand, &SuperGlobal { m: 3, k: 1, beta: 1.0 });
    let refined = [(0.85f32, 0.3f32), (0.6 / 1.8, 1.6 / 1.8), (0.48 / 1.8, 1.64 / 1.8)];
    let qhat = (0.85f32, 1.6f32 / 1.8);
    let expect: Vec<f32> = refined.iter().map(|&(x, y)| (x + x * qhat.0 + y * qhat.1) / 2.0).collect();
    assert_eq!(out.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2]);
    for (p, s) in &out {
        assert!(close(*s, expect[*p]), "{out:?} vs {expect:?}");
    }
    assert!(close(expect[0], 0.919_583));
}

#[test]
fn superglobal_leaves_the_tail_alone() {
    let db: Vec<f32> = (0..20)
        .flat_map(|i| {
            let t = i as f32 * 0.15;
            [t.cos(), t.sin()]
        })
        .collect();
    let plain = rank_reranked(&db, 2, &[1.0, 0.0], None, &Rerank::default());
    let sg = rank_reranked(&db, 2, &[1.0, 0.0], None, &Rerank { qe: None, superglobal: Some(SuperGlobal { m: 5, k: 2, beta: 0.15 }), spatial: None });
    assert_eq!(plain[5..], sg[5..]);
    let mut head: Vec<usize> = sg[..5].iter().map(|h| h.0).collect();
    head.sort();
    assert_eq!(head, [0, 1, 2, 3, 4]);
}

fn rerank_of(case: &Value) -> (Option<(usize, f32)>, Rerank) {
    let pair = |v: &Value| (v[0].as_u64().unwrap() as usize, v[1].as_f64().unwrap() as f32);
    let dba = (!case["dba"].is_null()).then(|| pair(&case["dba"]));
    let qe = (!case["qe"].is_null()).then(|| {
        let (n, alpha) = pair(&case["qe"]);
        QueryExpansion { n, alpha }
    });
    let sg = &case["sg"];
    let superglobal =
        (!sg.is_null()).then(|| SuperGlobal { m: sg[0].as_u64().unwrap() as usize, k: sg[1].as_u64().unwrap() as usize, beta: sg[2].as_f64().unwrap() as f32 });
    (dba, Rerank { qe, superglobal, spatial: None })
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Compare every case of a fixture: scores within 1e-5 everywhere, rows where the reference's
/// score is more than 1e-5 away from its neighbours' (not tied).
fn check_fixture(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rerank");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let dim = f["dim"].as_u64().unwrap() as usize;
    let exclude: Vec<Option<usize>> = f["exclude"].as_array().unwrap().iter().map(|v| v.as_u64().map(|x| x as usize)).collect();
    let (db, queries) = match f["db_npy"].as_str() {
        Some(npy) => {
            let (db, _, d) = dolg::descriptors::read_matrix(&dir.join(npy)).unwrap();
            assert_eq!(d, dim);
            let q: Vec<f32> = exclude.iter().flat_map(|r| db[r.unwrap() * dim..(r.unwrap() + 1) * dim].to_vec()).collect();
            (db, q)
        }
        None => (floats(&f["db"]), floats(&f["queries"])),
    };
    let mut checked = 0;
    for case in f["cases"].as_array().unwrap() {
        let cname = case["name"].as_str().unwrap();
        let (dba_opt, rerank) = rerank_of(case);
        let db = dba_opt.map_or_else(|| db.clone(), |(k, a)| dba(&db, dim, k, a));
        for (qi, (q, ex)) in queries.chunks(dim).zip(&exclude).enumerate() {
            let got = rank_reranked(&db, dim, q, *ex, &rerank);
            let rows: Vec<usize> = case["ranks"][qi].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let scores = floats(&case["scores"][qi]);
            assert!(got.len() >= rows.len());
            for (i, (&row, &s)) in rows.iter().zip(&scores).enumerate() {
                assert!(close(got[i].1, s), "{name}/{cname} query {qi} rank {i}: score {} vs reference {s}", got[i].1);
                let tied = (i > 0 && close(scores[i - 1], s)) || scores.get(i + 1).is_some_and(|&n| close(n, s));
                if !tied {
                    assert_eq!(got[i].0, row, "{name}/{cname} query {qi} rank {i}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn matches_reference_on_random_vectors() {
    check_fixture("random");
}

#[test]
fn matches_reference_on_mobilenetv2_descriptors() {
    check_fixture("mobilenetv2");
}

#[test]
fn collection_search_reranked_matches_pure_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let device = dolg::kernels::device("cpu").unwrap();
    let mut c = Collection::create_for_vectors(&dir.path().join("v.idx"), 8, &device).unwrap();
    let mut state = 7u64;
    let mut rnd = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let mut vectors: Vec<f32> = (0..60 * 8).map(|_| rnd()).collect();
    vectors.chunks_mut(8).for_each(dolg::rerank::normalize);
    let names: Vec<String> = (0..60).map(|i| format!("v{i}")).collect();
    c.import(&mut vectors.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    let q: Vec<f32> = (0..8).map(|_| rnd()).collect();
    let mut qn = q.clone();
    dolg::rerank::normalize(&mut qn);
    let rerank = Rerank { qe: Some(QueryExpansion { n: 3, alpha: 3.0 }), superglobal: Some(SuperGlobal { m: 20, k: 4, beta: 0.15 }), spatial: None };
    let hits = c.search(Query::Vectors(&q), &SearchRequest::top(25).with_rerank(rerank)).unwrap().remove(0);
    let expect = rank_reranked(&vectors, 8, &qn, None, &rerank);
    assert_eq!(hits.len(), 25);
    for (h, (row, s)) in hits.iter().zip(&expect) {
        assert_eq!(h.name, names[*row]);
        assert!(close(h.score, *s));
    }
}

#[test]
fn matches_reference_on_dolg_fixture_descriptors() {
    check_fixture("dolg-r50-random");
}

#[test]
fn dba_layer_is_used_goes_stale_and_is_rebuilt() {
    use dolg::collection::dba::DbaState;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.idx");
    let device = dolg::kernels::device("cpu").unwrap();
    let mut c = Collection::create_for_vectors(&db, 8, &device).unwrap();
    let mut state = 11u64;
    let mut rnd = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let mut vectors: Vec<f32> = (0..40 * 8).map(|_| rnd()).collect();
    vectors.chunks_mut(8).for_each(dolg::rerank::normalize);
    let names: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    c.import(&mut vectors.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    assert!(matches!(c.dba_state().unwrap(), DbaState::Absent));
    c.build_dba(3, 3.0).unwrap();
    let augmented = dba(&vectors, 8, 3, 3.0);
    let DbaState::Fresh(layer) = c.dba_state().unwrap() else { panic!("not fresh") };
    assert_eq!((layer.k, layer.alpha), (3, 3.0));
    assert!(layer.vectors.iter().zip(&augmented).all(|(a, b)| close(*a, *b)));

    // Searches (reranked, plain and range) compare with the DBA vectors.
    let q: Vec<f32> = vectors[..8].to_vec();
    let expect = rank_reranked(&augmented, 8, &q, None, &Rerank::default());
    let reranked = c.search(Query::Vectors(&q), &SearchRequest::top(10).with_rerank(Rerank::default())).unwrap().remove(0);
    let plain = c.search(Query::Vectors(&q), &SearchRequest::top(10)).unwrap().remove(0);
    let range = c.search(Query::Vectors(&q), &SearchRequest::range(expect[9].1 - 1e-6)).unwrap().remove(0);
    for hits in [&reranked, &plain, &range] {
        assert_eq!(hits.len(), 10);
        for (h, (row, s)) in hits.iter().zip(&expect) {
            assert_eq!(h.name, names[*row]);
            assert!(close(h.score, *s));
        }
    }

    // A removal makes it stale (ignored); refreshing recomputes it over the live entries.
    c.remove(&["v5".to_string()]).unwrap();
    assert!(matches!(c.dba_state().unwrap(), DbaState::Stale { k: 3, .. }));
    assert!(c.fresh_dba().unwrap().is_none());
    let r = c.refresh_dba().unwrap().unwrap();
    assert_eq!((r.k, r.alpha, r.live), (3, 3.0, 39));
    assert!(r.recomputed < 39, "only the entries that had v5 as a neighbour: {}", r.recomputed);
    let keep: Vec<usize> = (0..40).filter(|&i| i != 5).collect();
    let live: Vec<f32> = keep.iter().flat_map(|&i| vectors[i * 8..(i + 1) * 8].to_vec()).collect();
    let augmented = dba(&live, 8, 3, 3.0);
    let layer = c.fresh_dba().unwrap().unwrap();
    for (p, &i) in keep.iter().enumerate() {
        assert!(layer.vectors[i * 8..(i + 1) * 8].iter().zip(&augmented[p * 8..(p + 1) * 8]).all(|(a, b)| close(*a, *b)));
    }

    // Compaction renumbers rows: stale again until refreshed.
    c.compact().unwrap();
    assert!(matches!(c.dba_state().unwrap(), DbaState::Stale { .. }));
    c.refresh_dba().unwrap();
    let layer = c.fresh_dba().unwrap().unwrap();
    assert!(layer.vectors.iter().zip(&augmented).all(|(a, b)| close(*a, *b)));

    // The checksum catches a flipped byte.
    let file = db.join("dba.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[60] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    assert!(c.dba_state().is_err());
}

/// The incremental refresh recomputes only affected entries, yet must equal a full rebuild bit
/// for bit, through adds, removals, re-adds under the same name and clustered data (many entries
/// share neighbours).
#[test]
fn incremental_dba_refresh_equals_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let device = dolg::kernels::device("cpu").unwrap();
    let mut c = Collection::create_for_vectors(&dir.path().join("v.idx"), 16, &device).unwrap();
    let mut state = 5u64;
    let mut rnd = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<f32> = (0..4 * 16).map(|_| rnd()).collect();
    let mut vec_of = |i: usize| -> Vec<f32> {
        let mut v: Vec<f32> = centres[(i % 4) * 16..(i % 4 + 1) * 16].iter().map(|x| x + 0.3 * rnd()).collect();
        dolg::rerank::normalize(&mut v);
        v
    };
    let import = |c: &mut Collection, names: Vec<String>, vectors: Vec<f32>| {
        c.import(&mut vectors.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    };
    let first: Vec<f32> = (0..60).flat_map(&mut vec_of).collect();
    import(&mut c, (0..60).map(|i| format!("v{i}")).collect(), first);
    c.build_dba(5, 3.0).unwrap();
    let mut partial = 0;
    for step in 0..4 {
        let adds: Vec<usize> = (0..3).map(|j| 60 + step * 3 + j).collect();
        let add_vectors: Vec<f32> = adds.iter().flat_map(|&i| vec_of(i)).collect();
        let mut names: Vec<String> = adds.iter().map(|i| format!("v{i}")).collect();
        names[0] = format!("v{}", step * 7); // an update: the old row dies, a new one is born
        import(&mut c, names, add_vectors);
        c.remove(&[format!("v{}", step * 11 + 1)]).unwrap();
        let r = c.refresh_dba().unwrap().expect("stale after the changes");
        assert!(r.recomputed >= 3, "at least the new entries");
        partial += (r.recomputed < r.live) as usize;
        let incremental = c.fresh_dba().unwrap().expect("fresh after the refresh");
        c.build_dba(5, 3.0).unwrap();
        let full = c.fresh_dba().unwrap().unwrap();
        let s = c.index().store();
        for (row, _) in s.live_rows() {
            assert_eq!(incremental.vectors[row * 16..(row + 1) * 16], full.vectors[row * 16..(row + 1) * 16], "step {step}, row {row}");
        }
    }
    assert!(partial > 0, "some refresh should have recomputed only part of the entries");
}

#[test]
fn scale_gem_max_and_spec_option() {
    use dolg::descriptors::{combine_scales_with, ScaleCombine};
    use dolg::spec::ModelSpec;
    // Element-wise max of (1,0) and (0.6,0.8) is (1,0.8), normalised; the mean is (0.8,0.4), normalised.
    let per_scale = vec![vec![1.0, 0.0], vec![0.6, 0.8]];
    let n = (1.0f32 + 0.64).sqrt();
    let m = combine_scales_with(&per_scale, ScaleCombine::Max);
    assert!(close(m[0], 1.0 / n) && close(m[1], 0.8 / n), "{m:?}");
    let a = combine_scales_with(&per_scale, ScaleCombine::Mean);
    let n = (0.64f32 + 0.16).sqrt();
    assert!(close(a[0], 0.8 / n) && close(a[1], 0.4 / n), "{a:?}");
    // The mean is never written (stored specs keep their bytes); max is, and reads back.
    let spec = ModelSpec::dolg("w.pyth");
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("scale_combine"), "{json}");
    let max = spec.clone().with_scale_combine(ScaleCombine::Max);
    let json = serde_json::to_string(&max).unwrap();
    assert!(json.ends_with(r#","scale_combine":"max"}"#), "{json}");
    assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), max);
}

/// Extra cost per query of each method on random unit vectors (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn timing_per_query() {
    for dim in [512usize, 1280] {
        let mut state = 5u64;
        let mut rnd = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let n = 5000;
        let mut db: Vec<f32> = (0..n * dim).map(|_| rnd()).collect();
        db.chunks_mut(dim).for_each(dolg::rerank::normalize);
        let queries: Vec<f32> = db[..20 * dim].to_vec();
        let cases = [
            ("plain", Rerank::default()),
            ("qe n=2", Rerank { qe: Some(QueryExpansion { n: 2, alpha: 3.0 }), superglobal: None, spatial: None }),
            ("sg M=400 K=9", Rerank { qe: None, superglobal: Some(SuperGlobal::default()), spatial: None }),
            ("sg M=100 K=9", Rerank { qe: None, superglobal: Some(SuperGlobal { m: 100, ..SuperGlobal::default() }), spatial: None }),
        ];
        for (name, r) in cases {
            let t = std::time::Instant::now();
            for q in queries.chunks(dim) {
                std::hint::black_box(rank_reranked(&db, dim, q, None, &r));
            }
            println!("dim {dim}, n {n}: {name}: {:.2} ms/query", t.elapsed().as_secs_f64() * 1e3 / 20.0);
        }
        let t = std::time::Instant::now();
        std::hint::black_box(dba(&db[..2000 * dim], dim, 2, 3.0));
        println!("dim {dim}: dba of 2000 vectors (k 2): {:.2} s", t.elapsed().as_secs_f64());
    }
}

/// `dolg eval revisited` with re-ranking equals ranking by the library's `rank_reranked` and
/// evaluating those ranks (`--ranks`), on the real ROxford ground truth with random descriptors:
/// the re-ranked evaluation path (DBA on the database, then QE, then SuperGlobal) feeds the exact
/// protocol unchanged.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn eval_revisited_reranked_equals_ranks_from_the_library() {
    let gnd = crate::common::shared_dir().join("data/revisitop/gnd_roxford5k.pkl");
    let (n_db, n_q, dim) = (4993usize, 70usize, 16usize);
    let mut state = 9u64;
    let mut unit_rows = |n: usize| -> Vec<f32> {
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        v.chunks_mut(dim).for_each(dolg::rerank::normalize);
        v
    };
    let (db, q) = (unit_rows(n_db), unit_rows(n_q));
    let dir = tempfile::tempdir().unwrap();
    let npy = |name: &str, rows: &[f32], n: usize| {
        let p = dir.path().join(name);
        dolg::descriptors::write_npy(&p, &[n as u64, dim as u64], rows.iter().copied()).unwrap();
        p
    };
    let (db_path, q_path) = (npy("db.npy", &db, n_db), npy("q.npy", &q, n_q));
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dolg")).args(["eval", "revisited", "--json", "--gnd"]).arg(&gnd).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let rerank = Rerank { qe: Some(QueryExpansion { n: 2, alpha: 3.0 }), superglobal: Some(SuperGlobal { m: 50, k: 2, beta: 0.15 }), spatial: None };
    let augmented = dba(&db, dim, 2, 3.0);
    let ranks: Vec<Vec<i64>> = q.chunks(dim).map(|qv| rank_reranked(&augmented, dim, qv, None, &rerank).into_iter().map(|(r, _)| r as i64).collect()).collect();
    let ranks_path = dir.path().join("ranks.npy");
    let values: Vec<i64> = (0..n_db).flat_map(|r| ranks.iter().map(move |col| col[r])).collect();
    dolg::descriptors::write_npy(&ranks_path, &[n_db as u64, n_q as u64], values).unwrap();
    let (db_s, q_s) = (db_path.to_str().unwrap(), q_path.to_str().unwrap());
    let via_cli = run(&["--db", db_s, "--queries", q_s, "--dba", "2", "--qe", "2", "--rerank", "superglobal", "--sg-m", "50", "--sg-k", "2"]);
    let via_ranks = run(&["--ranks", ranks_path.to_str().unwrap()]);
    assert_eq!(via_cli, via_ranks);
    let plain = run(&["--db", db_s, "--queries", q_s]);
    assert_ne!(plain, via_cli, "re-ranking changed nothing: the test would not see a broken path");
}
