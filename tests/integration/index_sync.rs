//! `Collection::sync` and `dolg index sync`: new, changed, renamed/moved and vanished files, the
//! stat fast path, and a moved collection root. Model: the random DOLG-R50 fixture at scale 1.0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use dolg::collection::{AddEvent, AddOptions, Collection, CreateOptions, IndexKind, OpenMode, Query, SearchRequest};
use dolg::spec::ModelSpec;

fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images").join(name)
}

fn spec() -> ModelSpec {
    ModelSpec::dolg(crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")).with_scales(vec![1.0])
}

fn cpu() -> burn::tensor::Device {
    dolg::kernels::device("cpu").unwrap()
}

/// Copy `src` to `dst` with an old mtime, so the stat cache may trust it on the next run.
fn put(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst).unwrap();
    age(dst);
}

fn age(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    dolg::inputs::expand_inputs(&[dir.to_owned()]).unwrap()
}

/// Sync and count how many files were described (decoded and run through the network).
fn sync(c: &mut Collection, dir: &Path) -> (dolg::collection::SyncReport, usize) {
    let mut described = 0;
    let r = c
        .sync(&[dir.to_owned()], &files(dir), &AddOptions::default(), |e| {
            if let AddEvent::Described { .. } = e {
                described += 1
            }
        })
        .unwrap();
    (r, described)
}

fn names(c: &Collection) -> Vec<String> {
    let mut n = c.export().0;
    n.sort();
    n
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn sync_adds_updates_renames_removes_and_survives_a_moved_root() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    put(&photo("wxbs-kyiv_1.jpg"), &photos.join("a.jpg"));
    put(&photo("wxbs-tyn_1.jpg"), &photos.join("b.jpg"));
    put(&photo("wxbs-berlin_1.jpg"), &photos.join("c.jpg"));
    let db = tmp.path().join("idx");
    let mut c = Collection::create(&db, spec(), &CreateOptions::kind(IndexKind::Exact).with_root(Some(&photos)), &cpu()).unwrap();
    let (r, described) = sync(&mut c, &photos);
    assert_eq!((r.added, r.updated, r.renamed, r.removed, r.unchanged, described), (3, 0, 0, 0, 0, 3));
    assert_eq!(names(&c), ["a.jpg", "b.jpg", "c.jpg"], "names are relative to the root");
    let b_vector = c.export().1[512..1024].to_vec();

    // No change: nothing described.
    let (r, described) = sync(&mut c, &photos);
    assert_eq!((r.added, r.updated, r.renamed, r.removed, r.unchanged, described), (0, 0, 0, 0, 3, 0));

    // The fast path trusts size, mtime and inode: content rewritten in place with all three kept
    // is not read (this is the documented limit of a stat cache, as in git and rsync).
    let a = photos.join("a.jpg");
    let before = std::fs::metadata(&a).unwrap();
    let mut bytes = std::fs::read(&a).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    std::fs::write(&a, &bytes).unwrap();
    std::fs::File::options().write(true).open(&a).unwrap().set_modified(before.modified().unwrap()).unwrap();
    let (r, described) = sync(&mut c, &photos);
    assert_eq!((r.unchanged, described), (3, 0), "unchanged stat: not read, not hashed");

    // Rename b into a subfolder, change c, delete a, add d.
    std::fs::create_dir(photos.join("sub")).unwrap();
    std::fs::rename(photos.join("b.jpg"), photos.join("sub/b2.jpg")).unwrap();
    put(&photo("wxbs-warsaw_1.jpg"), &photos.join("c.jpg"));
    std::fs::remove_file(&a).unwrap();
    put(&photo("wxbs-maidan_1.jpg"), &photos.join("d.jpg"));
    let (r, described) = sync(&mut c, &photos);
    assert_eq!((r.added, r.updated, r.renamed, r.removed, r.unchanged, described), (1, 1, 1, 1, 0, 2));
    assert_eq!(names(&c), ["c.jpg", "d.jpg", "sub/b2.jpg"]);
    let (n, v) = c.export();
    let row = n.iter().position(|x| x == "sub/b2.jpg").unwrap();
    assert_eq!(&v[row * 512..(row + 1) * 512], &b_vector[..], "a renamed file keeps its descriptor, bit for bit");
    // The changed file got the new photo's descriptor: searching with the photo finds it at 1.0.
    let hit = &c.search(Query::Images(&[photo("wxbs-warsaw_1.jpg")]), &SearchRequest::top(1)).unwrap()[0][0];
    assert_eq!(hit.name, "c.jpg");
    assert!((hit.score - 1.0).abs() < 1e-5, "{hit:?}");
    drop(c);

    // Move the whole folder: with the new root recorded, nothing is described or removed.
    let moved = tmp.path().join("moved");
    std::fs::rename(&photos, &moved).unwrap();
    let mut c = Collection::open(&db, OpenMode::Write, &cpu()).unwrap();
    c.set_root(&moved).unwrap();
    let (r, described) = sync(&mut c, &moved);
    assert_eq!((r.unchanged, r.removed, r.added, described), (3, 0, 0, 0));
    assert_eq!(c.path_of("sub/b2.jpg"), std::fs::canonicalize(&moved).unwrap().join("sub/b2.jpg"));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn cli_sync_reports_counts_as_json_and_leaves_other_folders_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    put(&photo("wxbs-kyiv_1.jpg"), &one.join("x.jpg"));
    put(&photo("wxbs-tyn_1.jpg"), &two.join("y.jpg"));
    let db = tmp.path().join("idx");
    let weights = spec().weights.unwrap();
    let dolg = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dolg")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (db_s, one_s, two_s) = (db.to_str().unwrap(), one.to_str().unwrap(), two.to_str().unwrap());
    dolg(&["index", "build", "--db", db_s, "--weights", weights.to_str().unwrap(), "--scales", "1.0", one_s, two_s]);
    // The default root is the deepest folder holding both inputs.
    let info: serde_json::Value = serde_json::from_str(&dolg(&["index", "info", "--db", db_s, "--json"])).unwrap();
    assert_eq!(info["root"], serde_json::json!(std::fs::canonicalize(tmp.path()).unwrap()));
    std::fs::remove_file(one.join("x.jpg")).unwrap();
    std::fs::remove_file(two.join("y.jpg")).unwrap();
    // Syncing `one` removes its vanished photo, not the one under `two`.
    let v: serde_json::Value = serde_json::from_str(&dolg(&["index", "sync", "--db", db_s, one_s, "--json"])).unwrap();
    for (k, want) in [("added", 0), ("updated", 0), ("renamed", 0), ("removed", 1), ("unchanged", 0), ("entries", 1)] {
        assert_eq!(v[k], want, "{k} in {v}");
    }
    assert_eq!(v["failed"], serde_json::json!([]));
    // A photo already deleted from disk is still removed by its path.
    dolg(&["index", "remove", "--db", db_s, two.join("y.jpg").to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_str(&dolg(&["index", "info", "--db", db_s, "--json"])).unwrap();
    assert_eq!(info["entries"], 0);
}
