//! Groups ground truth (landmarks-dev style CSV) and its evaluation.

use std::path::Path;

use dolg::eval::{EvalError, GroupsGt, RanksMatrix};
use serde_json::json;

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn landmarks_dev_groups() {
    let shared = crate::common::shared_dir();
    let g = GroupsGt::load(shared.join("data/landmarks-dev/groups.csv")).expect("groups.csv");
    assert_eq!(g.n_images(), 87);
    assert_eq!(g.n_groups(), 29);
    // 69 queries: the images of the 22 groups of 2, 3 of 3 and 4 of 4 (README sizes).
    assert_eq!(g.queries().len(), 69);
    assert_eq!(g.n_distractors(), 18);
    assert!(g.singleton_groups().is_empty());
    // Every image exists and every group name is the file-name prefix.
    for (img, grp) in g.images.iter().zip(&g.group) {
        assert!(shared.join("data/landmarks-dev/images").join(img).is_file(), "{img}");
        match grp {
            Some(grp) => assert_eq!(img.rsplit_once('_').map(|p| p.0), Some(grp.as_str())),
            None => assert!(img.starts_with("distractor_")),
        }
    }
    let size = |name: &str| g.group.iter().filter(|x| x.as_deref() == Some(name)).count();
    assert_eq!((size("wxbs-kettle"), size("wxbs-maidan"), size("lg-building")), (4, 3, 2));
    let total_pos: usize = g.queries().iter().map(|&q| g.positives(q).len()).sum();
    // Sum over groups of n(n-1), from the README sizes: 22 groups of 2, 3 of 3, 4 of 4.
    assert_eq!(total_pos, 22 * 2 + 3 * 6 + 4 * 12);
    let rel = g.relevant();
    assert_eq!(rel.len(), 69);
    assert_eq!(rel[0], vec![0, 1]);
}

fn parse(text: &str) -> Result<GroupsGt, EvalError> {
    GroupsGt::parse(text, Path::new("g.csv"))
}

#[test]
fn parse_variants() {
    let g = parse("\u{feff}image,group\r\na1.jpg,a\r\n\r\n\"b,1.jpg\", b \nd.jpg,\na2.jpg,a\n").expect("ok");
    assert_eq!(g.images, ["a1.jpg", "b,1.jpg", "d.jpg", "a2.jpg"]);
    assert_eq!(g.group, [Some("a".into()), Some("b".into()), None, Some("a".into())]);
    assert_eq!(g.queries(), [0, 1, 3]);
    assert_eq!(g.positives(0), [3]);
    assert_eq!(g.positives(3), [0]);
    assert_eq!(g.positives(2), Vec::<usize>::new());
    assert_eq!(g.singleton_groups(), ["b"]);
    assert_eq!(g.group_names(), ["a", "b"]);
}

#[test]
fn parse_errors_name_file_and_line() {
    let e = parse("name,group\na,b\n").expect_err("header");
    assert!(matches!(e, EvalError::GroupsHeader { line: 1, .. }), "{e}");
    assert!(e.to_string().starts_with("g.csv:1:"), "{e}");
    assert!(matches!(parse(""), Err(EvalError::GroupsHeader { line: 1, .. })));

    let e = parse("image,group\na,x\nb,y\na,z\n").expect_err("dup");
    assert!(matches!(e, EvalError::DuplicateImage { line: 4, first_line: 2, .. }), "{e}");
    assert!(e.to_string().contains("g.csv:4:"), "{e}");

    let e = parse("image,group\na,x,y\n").expect_err("fields");
    assert!(matches!(e, EvalError::GroupsSyntax { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("found 3"), "{e}");
    assert!(matches!(parse("image,group\na\n"), Err(EvalError::GroupsSyntax { line: 2, .. })));
    assert!(matches!(parse("image,group\n\n\"a,x\n"), Err(EvalError::GroupsSyntax { line: 3, .. })));
    assert!(matches!(parse("image,group\n,x\n"), Err(EvalError::GroupsSyntax { line: 2, .. })));

    let e = GroupsGt::load("/nonexistent/groups.csv").expect_err("missing");
    assert!(matches!(e, EvalError::Io { .. }) && e.to_string().contains("/nonexistent/groups.csv"));
}

/// Hand-worked: images a1 a2 b1 b2 d s (s: singleton group) -> queries a1 a2 b1 b2 s.
#[test]
fn groups_hand_worked() {
    let g = parse("image,group\na1,a\na2,a\nb1,b\nb2,b\nd,\ns,s\n").expect("ok");
    let (a1, a2, b1, b2, d, s) = (0, 1, 2, 3, 4, 5);
    let cols = vec![
        // a1: itself first (ignored), then a2 -> perfect: AP 1, P@k = 1.
        vec![a1, a2, b1, b2, d, s],
        // a2: d, a2 (ignored), a1 -> adjusted rank of a1 = 1: AP = (0/1 + 1/2)/2 = 0.25;
        // kq = min(2, k): P@1 = 0, P@5 = P@10 = 1/2.
        vec![d, a2, a1, b1, b2, s],
        // b1: b2 last of 6, itself at 0 -> adjusted rank 4: AP = (0/4 + 1/5)/2 = 0.1;
        // 1-based 5: P@1 = 0, P@5 = 1/5, P@10 = kq=5 -> 1/5.
        vec![b1, a1, a2, d, s, b2],
        // b2: b1 at 0 -> AP 1.
        vec![b1, b2, a1, a2, d, s],
        // s: no positive -> skipped.
        vec![s, a1, a2, b1, b2, d],
    ];
    let ranks = RanksMatrix::from_columns(cols, 6).expect("ranks");
    let r = g.evaluate(&ranks).expect("evaluate");
    assert_eq!(r.aps, [Some(1.0), Some(0.25), Some(0.1), Some(1.0), None]);
    assert_eq!(r.prs[1], Some([0.0, 0.5, 0.5]));
    assert_eq!(r.prs[2], Some([0.0, 0.2, 0.2]));
    assert_eq!(r.n_queries, 4);
    assert_eq!(r.n_skipped(), 1);
    assert_eq!(r.map, (1.0 + 0.25 + 0.1 + 1.0) / 4.0);
    assert_eq!(r.mp, [0.5, (1.0 + 0.5 + 0.2 + 1.0) / 4.0, (1.0 + 0.5 + 0.2 + 1.0) / 4.0]);
    let j = r.to_json(true);
    assert_eq!(j["n_queries"], json!(4));
    assert_eq!(j["aps"][4], serde_json::Value::Null);
    assert_eq!(j["aps"][1].as_f64(), Some(25.0));
    assert_eq!(j["mp"]["1"].as_f64(), Some(50.0));
    let t = r.table("toy");
    assert!(t.starts_with(">> toy: mAP: 58.75, mP@k[1, 5, 10]: [50.00 67.50 67.50]\n"), "{t}");
    assert!(t.contains("1 of 5 queries have no positive"), "{t}");

    // Wrong number of queries in the ranking.
    let ranks = RanksMatrix::from_columns(vec![vec![0, 1, 2, 3, 4, 5]], 6).expect("ranks");
    assert!(matches!(g.evaluate(&ranks), Err(EvalError::CountMismatch { expected: 5, found: 1, .. })));
}

/// `dolg eval groups` over two sources, each scored against its own photos, and their mean.
/// Hand-worked (2-d descriptors): source `a` ranks each query's positive first (mAP 100);
/// in source `b` the distractor e = (0.707, 0.707) beats the positive for both queries
/// (b1 = (1, 0), b2 = (0, 1)), so each AP is (0/1 + 1/2) / 2 = 0.25 (mAP 25). Mean 62.5.
#[test]
fn several_sources_are_scored_apart_and_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let source = |name: &str, csv: &str, names: [&str; 3], rows: [f32; 6]| -> [std::path::PathBuf; 3] {
        let s = dir.path().join(name);
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join("groups.csv"), csv).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let rows: Vec<Vec<f32>> = rows.chunks(2).map(<[f32]>::to_vec).collect();
        dolg::descriptors::write_descriptors(&s.join("db.npy"), &rows, 2, Some(&names)).unwrap();
        [s.join("groups.csv"), s.clone(), s.join("db.npy")]
    };
    let a = source("a", "image,group\na1.jpg,g\na2.jpg,g\nd.jpg,\n", ["a1.jpg", "a2.jpg", "d.jpg"], [1.0, 0.0, 0.9, 0.436, 0.0, 1.0]);
    let b = source(
        "b",
        "image,group\nb1.jpg,h\nb2.jpg,h\ne.jpg,\n",
        ["b1.jpg", "b2.jpg", "e.jpg"],
        [1.0, 0.0, 0.0, 1.0, std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::FRAC_1_SQRT_2],
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dolg"));
    cmd.args(["eval", "groups", "--json"]);
    for s in [&a, &b] {
        cmd.arg("--groups").arg(&s[0]).arg("--images").arg(&s[1]).arg("--db").arg(&s[2]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = j["sources"].as_array().unwrap();
    assert_eq!((sources[0]["source"].as_str(), sources[1]["source"].as_str()), (Some("a"), Some("b")));
    assert!((sources[0]["result"]["map"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{j}");
    assert!((sources[1]["result"]["map"].as_f64().unwrap() - 25.0).abs() < 1e-9, "{j}");
    assert!((j["mean_map"].as_f64().unwrap() - 62.5).abs() < 1e-9, "{j}");
    // A --db short of the --groups is refused, naming the counts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dolg"))
        .args(["eval", "groups"])
        .arg("--groups")
        .arg(&a[0])
        .arg("--images")
        .arg(&a[1])
        .arg("--db")
        .arg(&a[2])
        .arg("--groups")
        .arg(&b[0])
        .arg("--images")
        .arg(&b[1])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("2 --groups, 2 --images, 1 --db"), "{err}");
}
