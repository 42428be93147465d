//! `dolg index sync` over 100,000 files that have not changed: the stat fast path.
//!
//! `cargo bench --bench sync_100k [-- N]` makes N small files (default 100,000) in a temporary
//! folder, an index holding one entry per file (its name, its SHA-256 and a random 512-d vector:
//! what `dolg index build` would have stored, without spending days describing them), then times
//! whole `dolg index sync` processes, start-up and index verification included: the first run
//! hashes every file and writes the stat cache, the next ones find nothing to do. Prints a table.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use dolg::index::{Index, IndexKind, ModelIdentity, Record};
use sha2::{Digest, Sha256};

const DIM: usize = 512;

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let photos = tmp.path().join("photos");
    let db = tmp.path().join("idx");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let t = Instant::now();
    let mut index = Index::create_with_root(
        &db,
        ModelIdentity { name: "benchmark".into(), dim: DIM, fingerprint: Some("benchmark".into()), spec: None },
        IndexKind::Exact,
        Some(std::fs::canonicalize(tmp.path()).unwrap().join("photos")),
    )
    .expect("index");
    let mut batch = Vec::new();
    for i in 0..n {
        // 1,000 files per folder, as cameras and phones lay them out.
        let name = format!("{:03}/IMG_{i:06}.jpg", i / 1000);
        let path = photos.join(&name);
        if i % 1000 == 0 {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        let bytes = format!("photo {i} {}", "x".repeat(200));
        std::fs::write(&path, &bytes).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        let hash: [u8; 32] = Sha256::digest(bytes.as_bytes()).into();
        let vector = common::unit_rows(1, DIM, i as u64 + 1);
        batch.push(Record::add(name, Some(hash), vector));
        if batch.len() == 10_000 {
            index.commit(std::mem::take(&mut batch)).unwrap();
        }
    }
    index.commit(batch).unwrap();
    drop(index);
    eprintln!("made {n} files and their index in {:.1} s", t.elapsed().as_secs_f64());

    println!("| run | files | wall s | peak RSS MiB | result |");
    println!("|---|---:|---:|---:|---|");
    for run in ["first (hash all)", "no change", "no change"] {
        let (wall, rss, out) = timed(&db, &photos);
        println!("| {run} | {n} | {wall:.2} | {rss:.0} | {out} |");
    }
}

/// One whole `dolg index sync --json` process: wall time, peak RSS (from `/usr/bin/time`), and
/// the counts it printed.
fn timed(db: &Path, photos: &Path) -> (f64, f64, String) {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_dolg"))
        .args(["index", "sync", "--db"])
        .arg(db)
        .arg(photos)
        .arg("--json")
        .output()
        .expect("run /usr/bin/time dolg");
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rss_kib: f64 = String::from_utf8_lossy(&out.stderr).lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(f64::NAN);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let counts = ["added", "updated", "renamed", "removed", "unchanged"].map(|k| format!("{k} {}", v[k]));
    (wall, rss_kib / 1024.0, counts.join(", "))
}
