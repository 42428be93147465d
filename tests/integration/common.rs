//! Shared test helpers: locating `../shared` and reading `.npy` fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout, for tests that read its fixtures and data. Every such test is
/// marked `#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]`: build.rs
/// sets `dolg_shared` when the directory exists or when `CI=true`, so on a fresh clone without it
/// those tests are reported as ignored (never as passed), and under CI they run and fail here.
///
/// Panics, naming the path, if the directory is missing: the test was compiled to run, so it must
/// not pass without checking anything.
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if !dir.is_dir() {
        let why = if std::env::var("CI").is_ok_and(|v| v == "true") {
            "CI=true, where fixture tests must run"
        } else {
            "it was there when the tests were built; `touch build.rs` to have cargo report these tests as ignored"
        };
        panic!("../shared (test fixtures and data) is missing at {}: {why}", dir.display());
    }
    dir
}

/// Read any float32 `.npy` as (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}

/// max |a − b| / max |b|: the fixture's relative error for intermediates.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max);
    max_abs_diff(a, b) / scale
}

/// The name libtest gives the test `name` of the module whose `module_path!()` is `module`, for
/// re-running this test binary as a child with `--exact`: `integration::dedup` + `f` is
/// `dedup::f` (libtest leaves out the crate's own name).
pub fn this_test(module: &str, name: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}

/// Insert an APP1 segment (FF E1, big-endian length counting itself, "Exif\0\0", the block)
/// right after the JPEG's SOI marker (FF D8), where cameras put it.
pub fn jpeg_with_exif(jpeg: &[u8], exif: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((2 + 6 + exif.len()) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Degrees, minutes and seconds, each a fraction (numerator, denominator).
pub type Dms = [(u32, u32); 3];

/// What a test photo's EXIF block records (written with kamadak-exif's writer).
#[derive(Default)]
pub struct ExifFields {
    /// `DateTimeOriginal`, as cameras write it (`2024:06:01 09:30:00`).
    pub original: Option<&'static str>,
    /// `DateTime` of IFD0 (the fallback when there is no `DateTimeOriginal`).
    pub datetime: Option<&'static str>,
    pub make: Option<&'static str>,
    pub model: Option<&'static str>,
    /// Latitude and longitude as degrees, minutes, seconds (each a fraction num/den) and their
    /// references (`N`/`S`, `E`/`W`).
    pub gps: Option<(Dms, &'static str, Dms, &'static str)>,
    pub orientation: Option<u16>,
}

impl ExifFields {
    /// The EXIF block (a TIFF structure, little-endian).
    pub fn block(&self) -> Vec<u8> {
        use exif::{Field, In, Rational, Tag, Value};
        let ascii = |tag: Tag, s: &str| Field { tag, ifd_num: In::PRIMARY, value: Value::Ascii(vec![s.as_bytes().to_vec()]) };
        let dms = |tag: Tag, v: [(u32, u32); 3]| Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Rational(v.iter().map(|&(num, denom)| Rational { num, denom }).collect()),
        };
        let mut fields = Vec::new();
        fields.extend(self.original.map(|d| ascii(Tag::DateTimeOriginal, d)));
        fields.extend(self.datetime.map(|d| ascii(Tag::DateTime, d)));
        fields.extend(self.make.map(|m| ascii(Tag::Make, m)));
        fields.extend(self.model.map(|m| ascii(Tag::Model, m)));
        if let Some((lat, lat_ref, lon, lon_ref)) = self.gps {
            fields.extend([ascii(Tag::GPSLatitudeRef, lat_ref), dms(Tag::GPSLatitude, lat), ascii(Tag::GPSLongitudeRef, lon_ref), dms(Tag::GPSLongitude, lon)]);
        }
        fields.extend(self.orientation.map(|o| Field { tag: Tag::Orientation, ifd_num: In::PRIMARY, value: Value::Short(vec![o]) }));
        let mut writer = exif::experimental::Writer::new();
        fields.iter().for_each(|f| writer.push_field(f));
        let mut out = std::io::Cursor::new(Vec::new());
        writer.write(&mut out, true).unwrap();
        out.into_inner()
    }
}

/// A photo collection whose files record metadata, for filter tests: (name under `dir`, EXIF
/// written into it, modification time as seconds since 1970 UTC) for six photos copied from
/// `examples/landmarks/images`. The expected metadata of each is worked out by hand in
/// `tests/integration/metadata.rs`.
pub fn metadata_photos(dir: &Path) -> Vec<&'static str> {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let photos: Vec<(&str, &str, ExifFields, u64)> = vec![
        (
            "paris/eiffel.jpg",
            "wxbs-kremlin_1.jpg",
            ExifFields {
                original: Some("2024:06:01 09:30:00"),
                make: Some("Apple"),
                model: Some("iPhone 12"),
                gps: Some(([(48, 1), (51, 1), (3024, 100)], "N", [(2, 1), (17, 1), (402, 10)], "E")),
                ..Default::default()
            },
            1_800_000_000,
        ),
        (
            "paris/notre-dame.jpg",
            "distractor_01.jpg",
            ExifFields {
                original: Some("2024:06:15 18:00:00"),
                make: Some("Canon"),
                model: Some("Canon EOS 5D Mark IV"),
                gps: Some(([(48, 1), (51, 1), (108, 10)], "N", [(2, 1), (20, 1), (5964, 100)], "E")),
                ..Default::default()
            },
            1_800_000_000,
        ),
        (
            "rio/cristo.jpg",
            "wxbs-berlin_1.jpg",
            ExifFields {
                original: Some("2023:12:31 23:59:59"),
                make: Some("NIKON CORPORATION"),
                model: Some("NIKON D750"),
                gps: Some(([(22, 1), (57, 1), (684, 100)], "S", [(43, 1), (12, 1), (378, 10)], "W")),
                ..Default::default()
            },
            1_800_000_000,
        ),
        ("old/scan.jpg", "lg-building_1.jpg", ExifFields::default(), 1_577_836_800),
        ("turned.jpg", "wxbs-kremlin_2.jpg", ExifFields { datetime: Some("2024:06:01 23:59:59"), orientation: Some(6), ..Default::default() }, 1_800_000_000),
        (
            "gopro.jpg",
            "wxbs-church_1.jpg",
            ExifFields { make: Some("GoPro"), gps: Some(([(0, 1), (0, 1), (0, 1)], "N", [(0, 1), (0, 1), (0, 1)], "E")), ..Default::default() },
            1_656_676_800,
        ),
    ];
    for (name, source, exif, mtime) in &photos {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let jpeg = std::fs::read(images.join(source)).unwrap();
        let bytes = if exif.original.is_none() && exif.datetime.is_none() && exif.make.is_none() { jpeg } else { jpeg_with_exif(&jpeg, &exif.block()) };
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(*mtime)).unwrap();
    }
    photos.iter().map(|p| p.0).collect()
}

/// Filters over [`metadata_photos`] with the photos each keeps, worked out by hand from the EXIF
/// and modification times written there (Eiffel Tower to Notre-Dame: 4.1 km; file sizes: the
/// source's plus under 1 kB of EXIF).
pub const METADATA_FILTERS: &[(&[&str], &[&str])] = &[
    (&["taken >= 2024-06-01"], &["paris/eiffel.jpg", "paris/notre-dame.jpg", "turned.jpg"]),
    (&["taken = 2024-06-01"], &["paris/eiffel.jpg", "turned.jpg"]),
    (&["taken = 2024-06"], &["paris/eiffel.jpg", "paris/notre-dame.jpg", "turned.jpg"]),
    (&["taken < 2024"], &["rio/cristo.jpg", "old/scan.jpg", "gopro.jpg"]),
    (&["taken <= 2023-12-31"], &["rio/cristo.jpg", "old/scan.jpg", "gopro.jpg"]),
    (&["taken > 2023-12-31 23:59"], &["paris/eiffel.jpg", "paris/notre-dame.jpg", "turned.jpg"]),
    (&["taken = 2023-12-31T23:59:59"], &["rio/cristo.jpg"]),
    (&["taken != 2024"], &["rio/cristo.jpg", "old/scan.jpg", "gopro.jpg"]),
    (&["taken = 2020-01-01 00:00"], &["old/scan.jpg"]),
    (&["camera = apple iphone 12"], &["paris/eiffel.jpg"]),
    (&["camera ~ nikon*"], &["rio/cristo.jpg"]),
    (&["camera ~ *EOS*"], &["paris/notre-dame.jpg"]),
    (&["camera != gopro"], &["paris/eiffel.jpg", "paris/notre-dame.jpg", "rio/cristo.jpg"]),
    (&["near 48.8584,2.2945 5km"], &["paris/eiffel.jpg", "paris/notre-dame.jpg"]),
    (&["near 48.8584, 2.2945 500m"], &["paris/eiffel.jpg"]),
    (&["near -22.95,-43.21 10 km"], &["rio/cristo.jpg"]),
    (&["height > 600"], &["turned.jpg"]),
    (&["width <= 512"], &["turned.jpg", "paris/notre-dame.jpg"]),
    (&["pixels >= 300k"], &["rio/cristo.jpg"]),
    (&["filesize < 100kB"], &["turned.jpg", "paris/notre-dame.jpg", "gopro.jpg"]),
    (&["filesize >= 120KiB"], &["rio/cristo.jpg"]),
    (&["folder = paris", "taken = 2024-06-15"], &["paris/notre-dame.jpg"]),
    (&["taken >= 2024", "name !~ eiffel*", "width = 512"], &["paris/notre-dame.jpg"]),
];
