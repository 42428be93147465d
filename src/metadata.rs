//! What a photo file says about itself, stored with its entry at indexing time so that searches
//! can filter on it ([`crate::collection::Filter`]): when it was taken, the camera, where, its
//! pixel size and its file size.
//!
//! * **Taken**: the EXIF `DateTimeOriginal` (else `DateTimeDigitized`, else `DateTime`) as the
//!   camera's wall clock recorded it, with no time zone (a photo taken at 09:00 in Tokyo is 09:00,
//!   as photo managers show it), else the file's modification time in UTC. Kept as seconds since
//!   1970-01-01 00:00:00 of that calendar time.
//! * **Camera**: EXIF `Make` and `Model` as one string (`Apple iPhone 12`); the make is not repeated
//!   when the model already starts with its first word (`Canon EOS 5D`, not `Canon Canon EOS 5D`;
//!   `NIKON D750`, not `NIKON CORPORATION NIKON D750`).
//! * **GPS**: EXIF `GPSLatitude`/`GPSLongitude` with their N/S and E/W references, in degrees.
//!   Positions out of range, and exactly 0,0 (what cameras without a fix write), are dropped.
//! * **Width, height**: of the upright photo (after its EXIF orientation), as it was described.
//! * **File size**: in bytes.
//!
//! EXIF is read from JPEG, TIFF, PNG and WebP with `kamadak-exif`. Metadata never fails a photo:
//! an unreadable or absent block just leaves those fields empty.

use std::time::SystemTime;

use exif::{In, Tag, Value};
use serde::{Deserialize, Serialize};

/// The metadata of one photo (see the module documentation for what each field holds). A field
/// is `None` when the file does not say; a filter on that field then keeps nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhotoMeta {
    /// Seconds since 1970-01-01 00:00:00 of the recorded calendar time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<i64>,
    /// Make and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// `[latitude, longitude]` in degrees (north and east positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<[f64; 2]>,
    /// Upright width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Upright height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// File size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesize: Option<u64>,
}

impl PhotoMeta {
    /// The metadata of a photo file's `bytes` whose upright size is not known yet (an upload):
    /// the size is read from the image header and its EXIF orientation.
    pub fn of_file(bytes: &[u8], modified: Option<SystemTime>) -> Self {
        Self::read(bytes, upright_size(bytes), modified)
    }

    /// The metadata of a photo file's `bytes`, described at `size` (upright width, height),
    /// whose file was last modified at `modified`.
    pub fn read(bytes: &[u8], size: Option<(u32, u32)>, modified: Option<SystemTime>) -> Self {
        let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)).ok();
        let field = |tag: Tag| exif.as_ref().and_then(|e| e.get_field(tag, In::PRIMARY)).map(|f| &f.value);
        let text = |tag: Tag| match field(tag) {
            Some(Value::Ascii(parts)) => {
                parts.first().map(|p| String::from_utf8_lossy(p).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned()).filter(|s| !s.is_empty())
            }
            _ => None,
        };
        let recorded = [Tag::DateTimeOriginal, Tag::DateTimeDigitized, Tag::DateTime].into_iter().find_map(|t| match field(t) {
            Some(Value::Ascii(parts)) => parts.first().and_then(|p| exif::DateTime::from_ascii(p).ok()).and_then(|d| {
                let date = chrono::NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())?;
                Some(date.and_hms_opt(d.hour.into(), d.minute.into(), d.second.into())?.and_utc().timestamp())
            }),
            _ => None,
        });
        let taken = recorded.or_else(|| modified.map(|m| chrono::DateTime::<chrono::Utc>::from(m).timestamp()));
        let camera = match (text(Tag::Make), text(Tag::Model)) {
            (Some(make), Some(model)) if !model.to_lowercase().starts_with(&make.split_whitespace().next().unwrap_or("").to_lowercase()) => {
                Some(format!("{make} {model}"))
            }
            (_, Some(model)) => Some(model),
            (make, None) => make,
        };
        let degrees = |tag: Tag, reference: Tag, negative: &str| -> Option<f64> {
            let Some(Value::Rational(r)) = field(tag) else { return None };
            let [d, m, s] = r.get(..3)?.try_into().ok()?;
            let v = [d, m, s].iter().zip([1.0, 60.0, 3600.0]).map(|(x, div)| x.to_f64() / div).sum::<f64>();
            let sign = if text(reference).is_some_and(|r| r.eq_ignore_ascii_case(negative)) { -1.0 } else { 1.0 };
            v.is_finite().then_some(sign * v)
        };
        let gps = match (degrees(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S"), degrees(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W")) {
            (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 && (lat, lon) != (0.0, 0.0) => Some([lat, lon]),
            _ => None,
        };
        Self { taken, camera, gps, width: size.map(|s| s.0), height: size.map(|s| s.1), filesize: Some(bytes.len() as u64) }
    }

    /// `taken` as `YYYY-MM-DD HH:MM:SS`.
    pub fn taken_text(&self) -> Option<String> {
        self.taken.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
    }
}

/// Width and height of the photo turned upright, from its header (no pixels decoded).
fn upright_size(bytes: &[u8]) -> Option<(u32, u32)> {
    use image::metadata::Orientation as O;
    use image::ImageDecoder;
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().ok()?.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    let turned = matches!(decoder.orientation(), Ok(O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH));
    Some(if turned { (h, w) } else { (w, h) })
}

/// Great-circle distance in km between two `[lat, lon]` points in degrees (haversine on the
/// mean Earth radius, 6371.0088 km). PostgreSQL collections compute the same formula in SQL.
pub fn distance_km(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (p1, p2) = (a[0].to_radians(), b[0].to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((b[1] - a[1]).to_radians() / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The mean Earth radius (IUGG), in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_hand_worked_values() {
        // Paris (Notre-Dame) to London (St Paul's): 343.358 km, worked with Python's math module.
        let d = distance_km([48.8530, 2.3499], [51.5138, -0.0984]);
        assert!((d - 343.358).abs() < 1e-3, "{d}");
        // A quarter of the equator.
        assert!((distance_km([0.0, 0.0], [0.0, 90.0]) - EARTH_RADIUS_KM * std::f64::consts::FRAC_PI_2).abs() < 1e-9);
        // Antipodes: the clamp keeps asin's argument at most 1 (near 1, asin amplifies rounding).
        assert!((distance_km([10.0, 20.0], [-10.0, -160.0]) - EARTH_RADIUS_KM * std::f64::consts::PI).abs() < 1e-3);
    }

    #[test]
    fn a_file_without_exif_keeps_its_size_and_modification_time() {
        let m = PhotoMeta::read(b"not an image", Some((30, 20)), Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_717_200_000)));
        assert_eq!(m, PhotoMeta { taken: Some(1_717_200_000), camera: None, gps: None, width: Some(30), height: Some(20), filesize: Some(12) });
        assert_eq!(m.taken_text().unwrap(), "2024-06-01 00:00:00");
    }
}
