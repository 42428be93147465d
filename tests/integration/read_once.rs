//! `index add` and `index sync` read each new photo once: the content hash is taken from the read
//! that decodes it (issue 16 item 4). Measured with the kernel's count of bytes this process read
//! (`rchar` in /proc/self/io), so the test runs alone in a child process (this test binary run
//! again with `--exact`): another test running beside it in the same process would add its own
//! reads. Model: the random DOLG-R50 fixture at scale 1.0.

use std::path::{Path, PathBuf};

use dolg::collection::{AddOptions, Collection, CreateOptions, IndexKind};
use dolg::spec::ModelSpec;
use sha2::{Digest, Sha256};

fn photos() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Bytes this process has read through read(2) and friends so far.
fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io (Linux)");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).expect("rchar line").trim().parse().unwrap()
}

fn copy_into(dir: &Path, srcs: &[PathBuf]) -> (Vec<PathBuf>, u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut total = 0;
    let out = srcs
        .iter()
        .map(|s| {
            let d = dir.join(s.file_name().unwrap());
            total += std::fs::copy(s, &d).unwrap();
            // Old enough for the stat cache to trust, so a later sync does not hash it again.
            let f = std::fs::File::options().write(true).open(&d).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
            d
        })
        .collect();
    (out, total)
}

#[cfg(target_os = "linux")]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
#[test]
fn new_photos_are_read_once_and_stored_with_the_hash_of_their_bytes() {
    const ALONE: &str = "DOLG_TEST_READ_ONCE_CHILD";
    if std::env::var_os(ALONE).is_none() {
        let name = crate::common::this_test(module_path!(), "new_photos_are_read_once_and_stored_with_the_hash_of_their_bytes");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the measurement, run alone:\n{text}");
        return;
    }
    let all = photos();
    assert!(all.len() >= 9, "bundled photos");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    let spec = ModelSpec::dolg(crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")).with_scales(vec![1.0]);
    let cpu = dolg::kernels::device("cpu").unwrap();
    // The first photo loads the model, so the measured adds below read photos and the index only.
    let (warm, _) = copy_into(&root.join("a"), &all[..1]);
    let mut c = Collection::create(&tmp.path().join("db"), spec, &CreateOptions::kind(IndexKind::Exact).with_root(Some(&root)), &cpu).unwrap();
    c.add_paths(&warm, &AddOptions::default(), |_| {}).unwrap();

    // add: four new photos.
    let (added, bytes) = copy_into(&root.join("b"), &all[1..5]);
    let before = rchar();
    let r = c.add_paths(&added, &AddOptions::default(), |_| {}).unwrap();
    let read = rchar() - before;
    assert_eq!((r.added, r.failed.len()), (4, 0));
    // Reading them twice (hash, then decode) would read at least 2 x bytes.
    assert!(read >= bytes && read < bytes + bytes / 2, "index add read {read} bytes for {bytes} bytes of new photos");

    // sync with nothing vanished: the new photos are read once too.
    let (synced, bytes) = copy_into(&root.join("c"), &all[5..9]);
    let files: Vec<PathBuf> = [warm.clone(), added.clone(), synced.clone()].concat();
    let before = rchar();
    let r = c.sync(std::slice::from_ref(&root), &files, &AddOptions::default(), |_| {}).unwrap();
    let read = rchar() - before;
    assert_eq!((r.added, r.unchanged, r.failed.len()), (4, 5, 0));
    assert!(read >= bytes && read < bytes + bytes / 2, "index sync read {read} bytes for {bytes} bytes of new photos");

    // The stored hash is of the file's bytes: each entry is current for the SHA-256 of its file,
    // and a second add finds every photo unchanged.
    for p in &files {
        let name = p.strip_prefix(&root).unwrap().to_str().unwrap().replace('\\', "/");
        let h: [u8; 32] = Sha256::digest(std::fs::read(p).unwrap()).into();
        assert!(c.index().is_current(&name, &h), "{name}: stored hash is not the file's SHA-256");
    }
    let r = c.add_paths(&files, &AddOptions::default(), |_| {}).unwrap();
    assert_eq!((r.added, r.unchanged), (0, 9));
}
