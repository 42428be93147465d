//! [`Filter`]: which entries a search may return, as a conjunction of conditions written in a
//! small language (never raw SQL or code): `FIELD OP VALUE`, one condition per expression.
//!
//! | expression             | keeps an entry whose …                                           |
//! |------------------------|------------------------------------------------------------------|
//! | `folder = trips/japan` | folder is `trips/japan` or lies below it                         |
//! | `folder != trips`      | folder is neither `trips` nor below it                           |
//! | `name = a/b.jpg`       | name is exactly `a/b.jpg`                                        |
//! | `name != a/b.jpg`      | name is not `a/b.jpg`                                            |
//! | `name ~ IMG_*.jpg`     | file name matches the glob (a glob with `/` matches the whole name) |
//! | `name !~ *.png`        | does not match                                                   |
//! | `taken >= 2024-06-01`  | photo was taken on 1 June 2024 or later                          |
//! | `taken = 2024-06`      | … in June 2024 (`=` on a year, month, day or minute: all of it)  |
//! | `taken < 2024-06-01 12:30` | … before 12:30 that day (`T` may join date and time)         |
//! | `camera = apple iphone 12` | camera (make and model) is exactly that, ignoring case       |
//! | `camera ~ *iphone*`    | camera matches the glob, ignoring case (`*` crosses `/` here)    |
//! | `near 48.86,2.35 5km`  | photo's GPS position is within 5 km (or `500m`) of that point    |
//! | `width >= 1000`        | upright width in pixels (also `height`)                          |
//! | `pixels >= 12M`        | width x height (`k`, `M` suffixes)                               |
//! | `filesize < 2MB`       | file size (`B`, `kB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`)          |
//!
//! Names are an entry's name in the collection (its path relative to the root, `/`-separated;
//! see [`super::Collection`]). A value may be quoted (`'…'` or `"…"`) to keep spaces at its ends.
//! Globs are those of `globset` (`*`, `?`, `[ab]`, `{a,b}`, `**`), case-sensitive as names are.
//! `taken`, `width`, `height`, `pixels` and `filesize` take `=`, `!=`, `<`, `<=`, `>`, `>=`; a
//! value stands for a span (a date for its whole day, a number for itself), and `<=`/`>` include
//! or exclude all of it. The metadata fields are those stored when the photo was indexed
//! ([`crate::metadata::PhotoMeta`]); an entry without the field (an imported vector, a photo with
//! no GPS position) passes no condition on it, negated or not, as SQL's NULL does.
//!
//! Filtering happens before ranking, so a filter that keeps few entries still gets `k` results
//! when `k` of them exist (exact search masks the rows; HNSW searches with the predicate and falls
//! back to exact search over the kept rows when the graph walk finds too few).

use std::fmt;
use std::str::FromStr;

use globset::{GlobBuilder, GlobMatcher};

use crate::metadata::PhotoMeta;

/// A bad filter expression, naming the token at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter '{expr}': {reason}")]
pub struct FilterError {
    /// The whole expression as given.
    pub expr: String,
    /// What is wrong with it, e.g. an unknown field or operator, or a bad glob.
    pub reason: String,
}

/// The fields a condition can test.
const FIELDS: &str = "folder, name, taken, camera, near, width, height, pixels, filesize";

/// The metadata fields that compare as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numeric {
    Taken,
    Width,
    Height,
    Pixels,
    FileSize,
}

impl Numeric {
    fn value(self, m: &PhotoMeta) -> Option<i64> {
        match self {
            Numeric::Taken => m.taken,
            Numeric::Width => m.width.map(i64::from),
            Numeric::Height => m.height.map(i64::from),
            Numeric::Pixels => m.width.zip(m.height).map(|(w, h)| i64::from(w) * i64::from(h)),
            Numeric::FileSize => m.filesize.map(|b| b as i64),
        }
    }

    /// The same value in SQL over [`crate::index::postgres`]'s columns.
    #[cfg(feature = "postgres")]
    fn column(self) -> &'static str {
        match self {
            Numeric::Taken => "taken",
            Numeric::Width => "width",
            Numeric::Height => "height",
            Numeric::Pixels => "(width::bigint * height)",
            Numeric::FileSize => "filesize",
        }
    }
}

#[derive(Debug, Clone)]
enum Condition {
    /// In `folder` or below it (`folder` without leading or trailing `/`; empty = everything).
    Folder {
        folder: String,
        negate: bool,
    },
    Name {
        name: String,
        negate: bool,
    },
    /// `on_file_name`: the glob has no `/`, so it is matched against the last component only.
    Glob {
        glob: GlobMatcher,
        on_file_name: bool,
        negate: bool,
    },
    /// `lo <= value < hi` (an absent end is open).
    Range {
        field: Numeric,
        lo: Option<i64>,
        hi: Option<i64>,
        negate: bool,
    },
    /// Camera equal to `camera` (lowercase), ignoring case.
    Camera {
        camera: String,
        negate: bool,
    },
    /// Camera matching a case-insensitive glob whose `*` crosses `/`.
    CameraGlob {
        glob: GlobMatcher,
        negate: bool,
    },
    /// GPS position within `km` of `at` (`[lat, lon]`).
    Near {
        at: [f64; 2],
        km: f64,
    },
}

impl Condition {
    fn keeps(&self, name: &str, meta: Option<&PhotoMeta>) -> bool {
        match self {
            Condition::Folder { folder, negate } => {
                let parent = crate::index::folder_of(name);
                let inside = folder.is_empty() || parent == folder || parent.strip_prefix(folder.as_str()).is_some_and(|rest| rest.starts_with('/'));
                inside != *negate
            }
            Condition::Name { name: n, negate } => (name == n) != *negate,
            Condition::Glob { glob, on_file_name, negate } => {
                let subject = if *on_file_name { name.rsplit_once('/').map_or(name, |(_, f)| f) } else { name };
                glob.is_match(subject) != *negate
            }
            Condition::Range { field, lo, hi, negate } => match meta.and_then(|m| field.value(m)) {
                Some(v) => (lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v < hi)) != *negate,
                None => false,
            },
            Condition::Camera { camera, negate } => meta.and_then(|m| m.camera.as_ref()).is_some_and(|c| (c.to_lowercase() == *camera) != *negate),
            Condition::CameraGlob { glob, negate } => meta.and_then(|m| m.camera.as_ref()).is_some_and(|c| glob.is_match(c) != *negate),
            Condition::Near { at, km } => meta.and_then(|m| m.gps).is_some_and(|p| crate::metadata::distance_km(*at, p) <= *km),
        }
    }

    fn uses_metadata(&self) -> bool {
        !matches!(self, Condition::Folder { .. } | Condition::Name { .. } | Condition::Glob { .. })
    }
}

/// Conditions an entry must all meet (an empty filter keeps everything). Parse each expression
/// with [`Filter::parse`] or `str::parse`, combine with [`Filter::and`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The expressions as given, for display and comparison.
    exprs: Vec<String>,
    conditions: Vec<Condition>,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.exprs == other.exprs
    }
}

impl Filter {
    /// Every expression must hold.
    pub fn parse<S: AsRef<str>>(exprs: &[S]) -> Result<Self, FilterError> {
        exprs.iter().try_fold(Self::default(), |f, e| Ok(f.and(e.as_ref().parse()?)))
    }

    /// Entries both filters keep.
    pub fn and(mut self, other: Filter) -> Self {
        self.exprs.extend(other.exprs);
        self.conditions.extend(other.conditions);
        self
    }

    /// True when it keeps every entry.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The expressions, as given.
    pub fn exprs(&self) -> &[String] {
        &self.exprs
    }

    /// Whether the entry named `name`, of metadata `meta` (if it has any), passes.
    pub fn keeps(&self, name: &str, meta: Option<&PhotoMeta>) -> bool {
        self.conditions.iter().all(|c| c.keeps(name, meta))
    }

    /// Whether a condition tests stored photo metadata (not just the name).
    pub fn uses_metadata(&self) -> bool {
        self.conditions.iter().any(Condition::uses_metadata)
    }

    /// The same filter as SQL over a PostgreSQL collection's `name`, `folder` and metadata columns
    /// ([`crate::index::postgres`]), values passed as (text) parameters, never spliced into the
    /// text. A NULL column makes its condition NULL, negated or not: the entry is left out, as
    /// [`Filter::keeps`] leaves out an entry without that field.
    /// `None` when it keeps everything.
    #[cfg(feature = "postgres")]
    pub fn sql(&self) -> Option<crate::index::postgres::SqlWhere> {
        use crate::index::postgres::SqlWhere;
        if self.is_empty() {
            return None;
        }
        let mut params: Vec<String> = Vec::new();
        let mut param = |v: String| {
            params.push(v);
            format!("${}", SqlWhere::FIRST_PARAM + params.len() - 1)
        };
        let parts: Vec<String> = self
            .conditions
            .iter()
            .map(|c| {
                let (cond, negate) = match c {
                    Condition::Folder { folder, negate } if folder.is_empty() => ("TRUE".to_owned(), *negate),
                    Condition::Folder { folder, negate } => {
                        let like = format!("{}/%", folder.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                        (format!("(folder = {} OR folder LIKE {})", param(folder.clone()), param(like)), *negate)
                    }
                    Condition::Name { name, negate } => (format!("name = {}", param(name.clone())), *negate),
                    Condition::Glob { glob, on_file_name, negate } => {
                        let subject = if *on_file_name { "regexp_replace(name, '^.*/', '')" } else { "name" };
                        (format!("{subject} ~ {}", param(glob_regex(glob.glob().glob(), true))), *negate)
                    }
                    Condition::Range { field, lo, hi, negate } => {
                        let col = field.column();
                        let mut ends = Vec::new();
                        if let Some(lo) = lo {
                            ends.push(format!("{col} >= {}::text::bigint", param(lo.to_string())));
                        }
                        if let Some(hi) = hi {
                            ends.push(format!("{col} < {}::text::bigint", param(hi.to_string())));
                        }
                        (format!("({})", ends.join(" AND ")), *negate)
                    }
                    Condition::Camera { camera, negate } => (format!("lower(camera) = {}", param(camera.clone())), *negate),
                    Condition::CameraGlob { glob, negate } => (format!("camera ~* {}", param(glob_regex(glob.glob().glob(), false))), *negate),
                    Condition::Near { at, km } => {
                        let (lat, lon, km) = (param(at[0].to_string()), param(at[1].to_string()), param(km.to_string()));
                        let (lat, lon, km) = (format!("{lat}::text::float8"), format!("{lon}::text::float8"), format!("{km}::text::float8"));
                        // crate::metadata::distance_km, term by term.
                        let h = format!(
                            "power(sin((radians(lat) - radians({lat})) / 2), 2) + cos(radians({lat})) * cos(radians(lat)) * power(sin(radians(lon - {lon}) / 2), 2)"
                        );
                        (format!("2 * {} * asin(least(sqrt({h}), 1)) <= {km}", crate::metadata::EARTH_RADIUS_KM), false)
                    }
                };
                if negate {
                    format!("NOT ({cond})")
                } else {
                    cond
                }
            })
            .collect();
        Some(SqlWhere { clause: format!("({})", parts.join(" AND ")), params })
    }
}

/// A globset glob as an anchored PostgreSQL regular expression (ARE) matching the same strings:
/// with `separator` (`literal_separator`, as name globs are built), `*` and `?` stay within one
/// `/`-separated component. Written by hand: globset only emits Rust regex syntax, whose flags and
/// classes PostgreSQL does not read.
#[cfg(feature = "postgres")]
fn glob_regex(glob: &str, separator: bool) -> String {
    let (any, one) = if separator { ("[^/]*", "[^/]") } else { (".*", ".") };
    let chars: Vec<char> = glob.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    let mut in_braces = false;
    let literal = |c: char, re: &mut String| {
        if "\\.^$|?*+()[]{}".contains(c) {
            re.push('\\');
        }
        re.push(c);
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                literal(chars[i + 1], &mut re);
                i += 1;
            }
            '*' if !separator => re.push_str(any),
            '*' if chars.get(i + 1) == Some(&'*') => {
                let starts = i == 0 || chars[i - 1] == '/';
                let ends = i + 2 == chars.len() || chars[i + 2] == '/';
                match (starts, ends, i + 2 == chars.len()) {
                    // `**/x` at the start, `a/**/b` in the middle: any number of folders, none included.
                    (true, true, false) if i == 0 => {
                        re.push_str("(?:/?|.*/)");
                        i += 1;
                    }
                    (true, true, false) => {
                        re.push_str("(?:.*/)?");
                        i += 1;
                    }
                    // `a/**` and `**`: everything below.
                    (true, true, true) => re.push_str(".*"),
                    _ => re.push_str("[^/]*[^/]*"),
                }
                i += 1;
            }
            '*' => re.push_str(any),
            '?' => re.push_str(one),
            '[' => {
                let mut j = i + 1;
                let mut class = String::from("[");
                if matches!(chars.get(j), Some('!' | '^')) {
                    class.push('^');
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    class.push_str("\\]");
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' || chars[j] == '[' {
                        class.push('\\');
                    }
                    class.push(chars[j]);
                    j += 1;
                }
                class.push(']');
                re.push_str(&class);
                i = j;
            }
            '{' => {
                in_braces = true;
                re.push_str("(?:");
            }
            ',' if in_braces => re.push('|'),
            '}' if in_braces => {
                in_braces = false;
                re.push(')');
            }
            c => literal(c, &mut re),
        }
        i += 1;
    }
    re.push('$');
    re
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exprs.join(" and "))
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    /// One condition, `FIELD OP VALUE` (or `near LAT,LON RADIUS`).
    fn from_str(expr: &str) -> Result<Self, FilterError> {
        let err = |reason: String| FilterError { expr: expr.to_owned(), reason };
        let s = expr.trim();
        let field_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let (field, rest) = s.split_at(field_end);
        if field.is_empty() {
            return Err(err(format!("expected a field ({FIELDS}) at the start")));
        }
        let numeric = match field {
            "taken" => Some(Numeric::Taken),
            "width" => Some(Numeric::Width),
            "height" => Some(Numeric::Height),
            "pixels" => Some(Numeric::Pixels),
            "filesize" => Some(Numeric::FileSize),
            "folder" | "name" | "camera" | "near" => None,
            _ => return Err(err(format!("unknown field '{field}' (filters know {FIELDS})"))),
        };
        let rest = rest.trim_start();
        if field == "near" {
            let condition = parse_near(rest).map_err(err)?;
            return Ok(Self { exprs: vec![s.to_owned()], conditions: vec![condition] });
        }
        let ops: &[&str] = if numeric.is_some() { &["!=", "<=", ">=", "=", "<", ">"] } else { &["!=", "!~", "=", "~"] };
        let op = ops.iter().copied().find(|op| rest.starts_with(op));
        let Some(op) = op else {
            let token = rest.split_whitespace().next().unwrap_or("");
            let known = if numeric.is_some() { "=, !=, <, <=, > or >=" } else { "=, !=, ~ or !~" };
            return Err(err(if token.is_empty() {
                format!("'{field}' needs an operator and a value ({known})")
            } else {
                format!("unknown operator '{token}' after '{field}' (use {known})")
            }));
        };
        let value = unquote(rest[op.len()..].trim()).map_err(|r| err(r.into()))?;
        if value.is_empty() && field != "folder" {
            return Err(err(format!("'{field} {op}' needs a value")));
        }
        let negate = op.starts_with('!');
        let condition = match (field, op) {
            (_, _) if numeric.is_some() => {
                let field = numeric.expect("checked");
                let (start, end) = parse_span(field, value).map_err(err)?;
                let (lo, hi, negate) = match op {
                    "=" | "!=" => (Some(start), Some(end), negate),
                    "<" => (None, Some(start), false),
                    "<=" => (None, Some(end), false),
                    ">" => (Some(end), None, false),
                    _ => (Some(start), None, false),
                };
                Condition::Range { field, lo, hi, negate }
            }
            ("folder", "=" | "!=") => {
                let folder = value.trim_matches('/');
                Condition::Folder { folder: if folder == "." { String::new() } else { folder.to_owned() }, negate }
            }
            ("folder", _) => return Err(err(format!("'{op}' does not apply to folder (use = or !=: a folder matches itself and what lies below it)"))),
            ("name", "=" | "!=") => Condition::Name { name: value.to_owned(), negate },
            ("name", _) => {
                let glob = GlobBuilder::new(value).literal_separator(true).build().map_err(|e| err(format!("bad glob '{value}': {}", e.kind())))?;
                Condition::Glob { glob: glob.compile_matcher(), on_file_name: !value.contains('/'), negate }
            }
            ("camera", "=" | "!=") => Condition::Camera { camera: value.to_lowercase(), negate },
            ("camera", _) => {
                let glob = GlobBuilder::new(value).case_insensitive(true).build().map_err(|e| err(format!("bad glob '{value}': {}", e.kind())))?;
                Condition::CameraGlob { glob: glob.compile_matcher(), negate }
            }
            _ => unreachable!("fields are checked above"),
        };
        Ok(Self { exprs: vec![s.to_owned()], conditions: vec![condition] })
    }
}

/// The span `[start, end)` a value of `field` stands for: a date or time for all of it (a year, a
/// month, a day, a minute or a second), a number for itself.
fn parse_span(field: Numeric, value: &str) -> Result<(i64, i64), String> {
    if field == Numeric::Taken {
        return parse_time_span(value);
    }
    let (digits, unit) = value.split_at(value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len()));
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(format!("'{value}' is not a number"));
    }
    let scale: f64 = match (field, unit.to_ascii_lowercase().as_str()) {
        (_, "") => 1.0,
        (Numeric::Width | Numeric::Height | Numeric::Pixels, "px") => 1.0,
        (Numeric::Pixels, "k") => 1e3,
        (Numeric::Pixels, "m" | "mp") => 1e6,
        (Numeric::FileSize, "b") => 1.0,
        (Numeric::FileSize, "kb") => 1e3,
        (Numeric::FileSize, "mb") => 1e6,
        (Numeric::FileSize, "gb") => 1e9,
        (Numeric::FileSize, "kib") => 1024.0,
        (Numeric::FileSize, "mib") => 1024.0 * 1024.0,
        (Numeric::FileSize, "gib") => 1024.0 * 1024.0 * 1024.0,
        _ => {
            let units = match field {
                Numeric::Pixels => "none, px, k or M",
                Numeric::FileSize => "none, B, kB, MB, GB, KiB, MiB or GiB",
                _ => "none or px",
            };
            return Err(format!("unknown unit '{unit}' in '{value}' (use {units})"));
        }
    };
    let number: f64 = digits.parse().map_err(|_| format!("'{value}' is not a number"))?;
    let v = number * scale;
    // `12.2M` is 12,200,000 although 12.2 × 10⁶ is not quite, in binary.
    let v = if (v - v.round()).abs() < 1e-6 { v.round() } else { v };
    if !(0.0..=9.0e18).contains(&v) {
        return Err(format!("'{value}' is out of range"));
    }
    // The integers v stands for: itself when whole; none for a fraction, so that `< 10.4`
    // keeps 10, `> 10.6` keeps 11 and `= 10.5` keeps nothing.
    Ok((v.ceil() as i64, v.floor() as i64 + 1))
}

/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` or `YYYY-MM-DD HH:MM:SS` (`T` may
/// replace the space) as the span of seconds it names.
fn parse_time_span(value: &str) -> Result<(i64, i64), String> {
    use chrono::{Months, NaiveDate, NaiveDateTime, TimeDelta};
    let bad = || format!("'{value}' is not a date (use YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS)");
    let v = value.replacen('T', " ", 1);
    let secs = |d: NaiveDateTime| d.and_utc().timestamp();
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists");
    let numbers: Vec<&str> = v.split(['-', ' ', ':']).collect();
    if numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) || numbers[0].len() != 4 {
        return Err(bad());
    }
    let span = match numbers.len() {
        1 | 2 => {
            let year: i32 = numbers[0].parse().map_err(|_| bad())?;
            let month: u32 = numbers.get(1).map_or(Ok(1), |m| m.parse()).map_err(|_| bad())?;
            let start = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
            let end = start.checked_add_months(Months::new(if numbers.len() == 1 { 12 } else { 1 })).ok_or_else(bad)?;
            (secs(day(start)), secs(day(end)))
        }
        3 => {
            let d = NaiveDate::parse_from_str(&v, "%Y-%m-%d").map_err(|_| bad())?;
            (secs(day(d)), secs(day(d)) + 86_400)
        }
        5 => {
            let t = NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M").map_err(|_| bad())?;
            (secs(t), secs(t + TimeDelta::minutes(1)))
        }
        6 => {
            let t = NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S").map_err(|_| bad())?;
            (secs(t), secs(t) + 1)
        }
        _ => return Err(bad()),
    };
    Ok(span)
}

/// `LAT,LON RADIUS` after `near`, the radius in `km` or `m`.
fn parse_near(rest: &str) -> Result<Condition, String> {
    let usage = "use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km";
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    // The radius is the last token, or the last two when the unit stands apart ("5 km").
    let split = match tokens.last() {
        Some(&("km" | "m")) => tokens.len().saturating_sub(2),
        _ => tokens.len().saturating_sub(1),
    };
    let (coords, radius) = (tokens[..split].concat(), tokens[split..].concat());
    if coords.is_empty() || radius.is_empty() {
        return Err(format!("'near' needs a point and a radius ({usage})"));
    }
    let Some((lat, lon)) = coords.split_once(',') else { return Err(format!("'{coords}' is not LAT,LON ({usage})")) };
    let degree = |t: &str, limit: f64, what: &str| -> Result<f64, String> {
        let x: f64 = t.parse().map_err(|_| format!("{what} '{t}' is not a number ({usage})"))?;
        if x.abs() > limit || !x.is_finite() {
            return Err(format!("{what} '{t}' is out of range (-{limit} to {limit})"));
        }
        Ok(x)
    };
    let at = [degree(lat, 90.0, "latitude")?, degree(lon, 180.0, "longitude")?];
    let (number, scale) = if let Some(n) = radius.strip_suffix("km") {
        (n, 1.0)
    } else if let Some(n) = radius.strip_suffix('m') {
        (n, 1e-3)
    } else {
        return Err(format!("radius '{radius}' needs a unit, km or m ({usage})"));
    };
    let km = number.parse::<f64>().ok().filter(|r| r.is_finite() && *r >= 0.0).ok_or_else(|| format!("radius '{radius}' is not a distance ({usage})"))? * scale;
    Ok(Condition::Near { at, km })
}

/// `'x'` or `"x"` → `x`; an unquoted value as is.
fn unquote(v: &str) -> Result<&str, &'static str> {
    match v.chars().next() {
        Some(q @ ('\'' | '"')) => v.strip_prefix(q).and_then(|v| v.strip_suffix(q)).ok_or("unterminated quote in the value"),
        _ => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(expr: &str, names: &[&str]) -> Vec<bool> {
        let f: Filter = expr.parse().unwrap();
        names.iter().map(|n| f.keeps(n, None)).collect()
    }

    #[test]
    fn folders_match_themselves_and_what_lies_below() {
        let names = ["trips/japan/a.jpg", "trips/japan/kyoto/b.jpg", "trips/japanese/c.jpg", "trips/d.jpg", "e.jpg", "/abs/trips/japan/f.jpg"];
        assert_eq!(keeps("folder = trips/japan", &names), [true, true, false, false, false, false]);
        assert_eq!(keeps("folder=/trips/japan/", &names), [true, true, false, false, false, false]);
        assert_eq!(keeps("folder != trips/japan", &names), [false, false, true, true, true, true]);
        assert_eq!(keeps("folder = trips", &names), [true, true, true, true, false, false]);
        assert_eq!(keeps("folder = .", &names), [true; 6]);
        // An absolute name (a photo outside the root) is matched without its leading '/'.
        assert_eq!(keeps("folder = abs/trips", &names), [false, false, false, false, false, true]);
    }

    #[test]
    fn names_and_globs() {
        let names = ["a/IMG_1.jpg", "IMG_2.JPG", "b/c/x.png", "b/y.png"];
        assert_eq!(keeps("name = a/IMG_1.jpg", &names), [true, false, false, false]);
        assert_eq!(keeps("name != a/IMG_1.jpg", &names), [false, true, true, true]);
        // Without '/', the glob is matched against the file name, as in .gitignore.
        assert_eq!(keeps("name ~ IMG_*", &names), [true, true, false, false]);
        assert_eq!(keeps("name ~ *.jpg", &names), [true, false, false, false]);
        assert_eq!(keeps("name !~ *.png", &names), [true, true, false, false]);
        // With '/', against the whole name; '*' stays within one component.
        assert_eq!(keeps("name ~ b/*.png", &names), [false, false, false, true]);
        assert_eq!(keeps("name ~ b/**/*.png", &names), [false, false, true, true]);
        assert_eq!(keeps("name ~ '{a,b}/*'", &names), [true, false, false, true]);
        assert_eq!(keeps("name = 'b/y.png'", &names), [false, false, false, true]);
    }

    #[test]
    fn conditions_combine_with_and() {
        let f = Filter::parse(&["folder = b", "name ~ x*"]).unwrap();
        assert_eq!(["b/c/x.png", "b/y.png", "x.png"].map(|n| f.keeps(n, None)), [true, false, false]);
        assert_eq!(f.to_string(), "folder = b and name ~ x*");
        assert!(Filter::default().keeps("anything", None) && Filter::default().is_empty());
        assert_eq!(Filter::parse::<&str>(&[]).unwrap(), Filter::default());
    }

    #[test]
    fn bad_expressions_name_the_token() {
        let reason = |e: &str| e.parse::<Filter>().unwrap_err().to_string();
        assert_eq!(reason("date >= 2024-06-01"), format!("filter 'date >= 2024-06-01': unknown field 'date' (filters know {FIELDS})"));
        assert_eq!(reason("folder > a"), "filter 'folder > a': unknown operator '>' after 'folder' (use =, !=, ~ or !~)");
        assert_eq!(reason("folder"), "filter 'folder': 'folder' needs an operator and a value (=, !=, ~ or !~)");
        assert_eq!(reason("= a"), format!("filter '= a': expected a field ({FIELDS}) at the start"));
        assert_eq!(reason("folder ~ a*"), "filter 'folder ~ a*': '~' does not apply to folder (use = or !=: a folder matches itself and what lies below it)");
        assert_eq!(reason("name ~ [a"), "filter 'name ~ [a': bad glob '[a': unclosed character class; missing ']'");
        assert_eq!(reason("name = 'a"), "filter 'name = 'a': unterminated quote in the value");
        assert_eq!(reason("name ="), "filter 'name =': 'name =' needs a value");
    }

    fn meta(taken: &str, camera: Option<&str>, gps: Option<[f64; 2]>, size: (u32, u32), filesize: u64) -> PhotoMeta {
        let t = chrono::NaiveDateTime::parse_from_str(taken, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp();
        PhotoMeta { taken: Some(t), camera: camera.map(str::to_owned), gps, width: Some(size.0), height: Some(size.1), filesize: Some(filesize) }
    }

    #[test]
    fn dates_stand_for_their_whole_span() {
        let at = |t: &str| meta(t, None, None, (1, 1), 1);
        let photos = [at("2024-05-31 23:59:59"), at("2024-06-01 00:00:00"), at("2024-06-01 12:30:59"), at("2024-06-30 23:59:59"), at("2024-07-01 00:00:00")];
        let keeps = |expr: &str| photos.iter().map(|m| expr.parse::<Filter>().unwrap().keeps("x.jpg", Some(m))).collect::<Vec<_>>();
        assert_eq!(keeps("taken = 2024-06"), [false, true, true, true, false]);
        assert_eq!(keeps("taken = 2024"), [true; 5]);
        assert_eq!(keeps("taken != 2024-06-01"), [true, false, false, true, true]);
        assert_eq!(keeps("taken >= 2024-06-01"), [false, true, true, true, true]);
        assert_eq!(keeps("taken > 2024-06-01"), [false, false, false, true, true]);
        assert_eq!(keeps("taken <= 2024-06-01"), [true, true, true, false, false]);
        assert_eq!(keeps("taken < 2024-06-01"), [true, false, false, false, false]);
        assert_eq!(keeps("taken = 2024-06-01 12:30"), [false, false, true, false, false]);
        assert_eq!(keeps("taken = 2024-06-01T12:30:59"), [false, false, true, false, false]);
        assert_eq!(keeps("taken < '2024-06-01 12:30:59'"), [true, true, false, false, false]);
        // December's span ends at the next year.
        assert_eq!(parse_time_span("2023-12").unwrap().1, parse_time_span("2024").unwrap().0);
    }

    #[test]
    fn sizes_cameras_and_places() {
        let photos = [
            meta("2024-01-01 00:00:00", Some("Apple iPhone 12"), Some([48.8584, 2.2945]), (4032, 3024), 2_500_000),
            meta("2024-01-01 00:00:00", Some("Canon EOS R5"), Some([48.8530, 2.3499]), (8192, 5464), 12_000_000),
            meta("2024-01-01 00:00:00", None, None, (640, 480), 1024),
        ];
        let keeps = |expr: &str| photos.iter().map(|m| expr.parse::<Filter>().unwrap().keeps("x.jpg", Some(m))).collect::<Vec<_>>();
        assert_eq!(keeps("width >= 4032"), [true, true, false]);
        assert_eq!(keeps("height = 480px"), [false, false, true]);
        assert_eq!(keeps("pixels >= 12M"), [true, true, false]);
        assert_eq!(keeps("pixels < 12.2mp"), [true, false, true]);
        assert_eq!(keeps("filesize > 1KiB"), [true, true, false]);
        assert_eq!(keeps("filesize = 1024"), [false, false, true]);
        assert_eq!(keeps("filesize <= 2.5MB"), [true, false, true]);
        // A fraction stands for no whole number: the bounds fall on either side of it.
        assert_eq!(keeps("width < 640.4"), [false, false, true]);
        assert_eq!(keeps("width > 639.6"), [true, true, true]);
        assert_eq!(keeps("width >= 4031.5"), [true, true, false]);
        assert_eq!(keeps("width = 640.5"), [false, false, false]);
        assert_eq!(keeps("width != 640.5"), [true, true, true]);
        assert_eq!(parse_span(Numeric::Pixels, "12.2M").unwrap(), (12_200_000, 12_200_001));
        assert_eq!(keeps("camera = APPLE iphone 12"), [true, false, false]);
        // A photo without a camera passes neither the condition nor its negation.
        assert_eq!(keeps("camera != apple iphone 12"), [false, true, false]);
        assert_eq!(keeps("camera ~ canon*"), [false, true, false]);
        assert_eq!(keeps("camera !~ *iphone*"), [false, true, false]);
        // 4.1 km apart.
        assert_eq!(keeps("near 48.8584,2.2945 4km"), [true, false, false]);
        assert_eq!(keeps("near 48.8584,2.2945 4200m"), [true, true, false]);
        assert_eq!(keeps("near 48.8584, 2.2945 5 km"), [true, true, false]);
        // No metadata at all (an imported vector): only name conditions can keep it.
        assert!(!"width >= 0".parse::<Filter>().unwrap().keeps("x.jpg", None));
        assert!(Filter::parse(&["name ~ x*"]).unwrap().keeps("x.jpg", None));
        assert!(Filter::parse(&["near 0,0 1km"]).unwrap().uses_metadata() && !Filter::parse(&["folder = a"]).unwrap().uses_metadata());
    }

    #[test]
    fn bad_metadata_expressions_name_the_token() {
        let reason = |e: &str| e.parse::<Filter>().unwrap_err().reason;
        let date = "(use YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS)";
        assert_eq!(reason("taken >= 2024-13-01"), format!("'2024-13-01' is not a date {date}"));
        assert_eq!(reason("taken >= yesterday"), format!("'yesterday' is not a date {date}"));
        assert_eq!(reason("taken >= 24-01-01"), format!("'24-01-01' is not a date {date}"));
        assert_eq!(reason("taken ~ 2024"), "unknown operator '~' after 'taken' (use =, !=, <, <=, > or >=)");
        assert_eq!(reason("taken >="), "'taken >=' needs a value");
        assert_eq!(reason("width > wide"), "'wide' is not a number");
        assert_eq!(reason("width > 10MB"), "unknown unit 'MB' in '10MB' (use none or px)");
        assert_eq!(reason("filesize > 10 parsecs"), "unknown unit 'parsecs' in '10 parsecs' (use none, B, kB, MB, GB, KiB, MiB or GiB)");
        assert_eq!(reason("camera > canon"), "unknown operator '>' after 'camera' (use =, !=, ~ or !~)");
        assert_eq!(reason("near 48.86,2.35"), "'near' needs a point and a radius (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
        assert_eq!(reason("near 48.86,2.35 5"), "radius '5' needs a unit, km or m (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
        assert_eq!(reason("near 48.86 5km"), "'48.86' is not LAT,LON (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
        assert_eq!(reason("near 98,2 5km"), "latitude '98' is out of range (-90 to 90)");
        assert_eq!(reason("near 48,east 5km"), "longitude 'east' is not a number (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
        assert_eq!(reason("near 48,2 -5km"), "radius '-5km' is not a distance (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
        assert_eq!(reason("near"), "'near' needs a point and a radius (use near LAT,LON RADIUS, e.g. near 48.86,2.35 5km)");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn camera_globs_cross_slashes_in_sql() {
        assert_eq!(glob_regex("*eos*/?", false), "^.*eos.*/.$");
        assert_eq!(glob_regex("*eos*/?", true), "^[^/]*eos[^/]*/[^/]$");
    }
}
