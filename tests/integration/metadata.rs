//! Photo metadata read at indexing time ([`dolg::metadata::PhotoMeta`]: date taken, camera, GPS
//! position, pixel and file size) and the filters over it (`--where`): six photos whose EXIF was
//! written for the test (`common::metadata_photos`) are stored with the values worked out by hand
//! below, every kind of filter keeps the photos `common::METADATA_FILTERS` lists, and the metadata
//! survives reopening, compaction and a renaming sync.

use std::path::Path;
use std::process::Command;

use dolg::collection::{Collection, Filter, OpenMode, Query, SearchRequest};
use dolg::metadata::PhotoMeta;

use crate::common::{metadata_photos, METADATA_FILTERS};

const BIN: &str = env!("CARGO_BIN_EXE_dolg");

fn dolg(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "dolg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// What each photo of `common::metadata_photos` must be stored with: dates from its EXIF (else
/// its modification time), the camera string, degrees from its degrees-minutes-seconds, the
/// upright size (the turned photo is 640x400 stored with orientation 6), the file's length.
fn expected(photos: &Path) -> Vec<(&'static str, PhotoMeta)> {
    let size = |name: &str| Some(std::fs::metadata(photos.join(name)).unwrap().len());
    let m = |taken: i64, camera: Option<&str>, gps: Option<[f64; 2]>, w: u32, h: u32, name: &str| PhotoMeta {
        taken: Some(taken),
        camera: camera.map(str::to_owned),
        gps,
        width: Some(w),
        height: Some(h),
        filesize: size(name),
    };
    vec![
        // 2024-06-01 09:30:00 = 19875 days * 86400 + 34200 s.
        ("paris/eiffel.jpg", m(1_717_234_200, Some("Apple iPhone 12"), Some([48.8584, 2.2945]), 640, 433, "paris/eiffel.jpg")),
        // The make is not repeated before a model that starts with it (or its first word).
        ("paris/notre-dame.jpg", m(1_718_474_400, Some("Canon EOS 5D Mark IV"), Some([48.853, 2.3499]), 512, 512, "paris/notre-dame.jpg")),
        // South and west are negative.
        ("rio/cristo.jpg", m(1_704_067_199, Some("NIKON D750"), Some([-22.9519, -43.2105]), 640, 480, "rio/cristo.jpg")),
        // No EXIF: the modification time.
        ("old/scan.jpg", m(1_577_836_800, None, None, 640, 426, "old/scan.jpg")),
        // IFD0's DateTime when there is no DateTimeOriginal; turned upright.
        ("turned.jpg", m(1_717_286_399, None, None, 400, 640, "turned.jpg")),
        // A make alone; a 0,0 position is a camera without a fix.
        ("gopro.jpg", m(1_656_676_800, Some("GoPro"), None, 640, 427, "gopro.jpg")),
    ]
}

fn assert_meta(c: &Collection, expected: &[(&str, PhotoMeta)]) {
    let store = c.index().store();
    assert_eq!(store.live_count(), expected.len());
    for (name, want) in expected {
        let row = store.lookup(name).unwrap_or_else(|| panic!("{name} is not stored"));
        let got = store.rows()[row].meta.as_deref().unwrap_or_else(|| panic!("{name} has no metadata"));
        let gps_close = match (got.gps, want.gps) {
            (Some(a), Some(b)) => (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9,
            (a, b) => a == b,
        };
        assert!(gps_close, "{name}: {got:?}");
        assert_eq!(PhotoMeta { gps: None, ..got.clone() }, PhotoMeta { gps: None, ..want.clone() }, "{name}");
    }
}

/// The names a filtered search over every entry returns, sorted.
fn kept(c: &Collection, exprs: &[&str]) -> Vec<String> {
    let q = c.index().store().vector(0).to_vec();
    let request = SearchRequest::top(100).with_filter(Filter::parse(exprs).unwrap());
    let mut names: Vec<String> = c.search(Query::Vectors(&q), &request).unwrap().remove(0).into_iter().map(|h| h.name).collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn metadata_is_stored_as_worked_by_hand_and_every_filter_keeps_its_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    metadata_photos(&photos);
    let weights = crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let db = tmp.path().join("idx");
    let (db_s, p) = (db.to_str().unwrap(), photos.to_str().unwrap());
    dolg(&["index", "build", "--db", db_s, "--weights", weights.to_str().unwrap(), "--scales", "1.0", "--batch", "4", p]);
    let device = dolg::kernels::device("cpu").unwrap();
    let want = expected(&photos);
    {
        let c = Collection::open(&db, OpenMode::Read, &device).unwrap();
        assert_meta(&c, &want);
        for (exprs, keeps) in METADATA_FILTERS {
            assert_eq!(kept(&c, exprs), sorted(keeps), "{exprs:?}");
        }
    }
    // The CLI's --where, and a bad expression named with its token.
    let out = dolg(&[
        "search",
        "--db",
        db_s,
        "--json",
        "--where",
        "near 48.8584,2.2945 5km",
        "--where",
        "taken < 2024-06-10",
        photos.join("old/scan.jpg").to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = json["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["paris/eiffel.jpg"]);
    let bad = Command::new(BIN).args(["search", "--db", db_s, "--where", "taken >= 2024-13-01", p]).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("'2024-13-01' is not a date"), "{err}");

    // Compaction and a sync that renames a photo keep every entry's metadata.
    dolg(&["index", "compact", "--db", db_s]);
    std::fs::rename(photos.join("rio/cristo.jpg"), photos.join("rio/corcovado.jpg")).unwrap();
    dolg(&["index", "sync", "--db", db_s, p]);
    let c = Collection::open(&db, OpenMode::Read, &device).unwrap();
    let renamed: Vec<(&str, PhotoMeta)> = want.into_iter().map(|(n, m)| (if n == "rio/cristo.jpg" { "rio/corcovado.jpg" } else { n }, m)).collect();
    assert_meta(&c, &renamed);
    assert_eq!(kept(&c, &["camera ~ nikon*", "near -22.95,-43.21 10 km"]), ["rio/corcovado.jpg"]);
    // An upload's size comes from its header and orientation.
    let turned = PhotoMeta::of_file(&std::fs::read(photos.join("turned.jpg")).unwrap(), None);
    assert_eq!((turned.width, turned.height, turned.taken), (Some(400), Some(640), Some(1_717_286_399)));
}

/// Metadata never fails a photo: EXIF blocks with random bytes changed, or cut short, are read
/// without a panic (what they still say is kept, the rest left empty).
#[test]
fn damaged_exif_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    metadata_photos(tmp.path());
    let good = std::fs::read(tmp.path().join("paris/eiffel.jpg")).unwrap();
    // The APP1 segment: its length is in bytes 4..6, counting itself.
    let app1_end = 4 + u16::from_be_bytes([good[4], good[5]]) as usize;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for round in 0..3000 {
        let mut bytes = good.clone();
        if round % 5 == 4 {
            bytes.truncate(6 + next(app1_end));
        } else {
            for _ in 0..1 + next(4) {
                let at = 12 + next(app1_end - 12);
                bytes[at] = next(256) as u8;
            }
        }
        let m = PhotoMeta::of_file(&bytes, None);
        assert_eq!(m.filesize, Some(bytes.len() as u64));
    }
}
