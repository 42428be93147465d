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
//!
//! Names are an entry's name in the collection (its path relative to the root, `/`-separated;
//! see [`super::Collection`]). A value may be quoted (`'…'` or `"…"`) to keep spaces at its ends.
//! Globs are those of `globset` (`*`, `?`, `[ab]`, `{a,b}`, `**`), case-sensitive as names are.
//!
//! Filtering happens before ranking, so a filter that keeps few entries still gets `k` results
//! when `k` of them exist (exact search masks the rows; HNSW searches with the predicate and falls
//! back to exact search over the kept rows when the graph walk finds too few).

use std::fmt;
use std::str::FromStr;

use globset::{GlobBuilder, GlobMatcher};

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
const FIELDS: &str = "folder, name";

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
}

impl Condition {
    fn keeps(&self, name: &str) -> bool {
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
        }
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

    /// Whether the entry named `name` passes.
    pub fn keeps(&self, name: &str) -> bool {
        self.conditions.iter().all(|c| c.keeps(name))
    }

    /// The same filter as SQL over a PostgreSQL collection's `name` and `folder` columns
    /// ([`crate::index::postgres`]), values passed as parameters, never spliced into the text.
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
                        (format!("{subject} ~ {}", param(glob_regex(glob.glob().glob()))), *negate)
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

/// A globset glob (with `literal_separator`, as [`Filter`] builds them) as an anchored PostgreSQL
/// regular expression (ARE) matching the same names. Written by hand: globset only emits Rust
/// regex syntax, whose flags and classes PostgreSQL does not read.
#[cfg(feature = "postgres")]
fn glob_regex(glob: &str) -> String {
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
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
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

    /// One condition, `FIELD OP VALUE`.
    fn from_str(expr: &str) -> Result<Self, FilterError> {
        let err = |reason: String| FilterError { expr: expr.to_owned(), reason };
        let s = expr.trim();
        let field_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let (field, rest) = s.split_at(field_end);
        if field.is_empty() {
            return Err(err(format!("expected a field ({FIELDS}) at the start")));
        }
        if !["folder", "name"].contains(&field) {
            return Err(err(format!("unknown field '{field}' (filters know {FIELDS})")));
        }
        let rest = rest.trim_start();
        let op = ["!=", "!~", "=", "~"].into_iter().find(|op| rest.starts_with(op));
        let Some(op) = op else {
            let token = rest.split_whitespace().next().unwrap_or("");
            return Err(err(if token.is_empty() {
                format!("'{field}' needs an operator and a value (=, !=, ~ or !~)")
            } else {
                format!("unknown operator '{token}' after '{field}' (use =, !=, ~ or !~)")
            }));
        };
        let value = unquote(rest[op.len()..].trim()).map_err(|r| err(r.into()))?;
        let negate = op.starts_with('!');
        let condition = match (field, op) {
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
            _ => unreachable!("fields are checked above"),
        };
        if value.is_empty() && !matches!(condition, Condition::Folder { .. }) {
            return Err(err(format!("'{field} {op}' needs a value")));
        }
        Ok(Self { exprs: vec![s.to_owned()], conditions: vec![condition] })
    }
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
        names.iter().map(|n| f.keeps(n)).collect()
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
        assert_eq!(["b/c/x.png", "b/y.png", "x.png"].map(|n| f.keeps(n)), [true, false, false]);
        assert_eq!(f.to_string(), "folder = b and name ~ x*");
        assert!(Filter::default().keeps("anything") && Filter::default().is_empty());
        assert_eq!(Filter::parse::<&str>(&[]).unwrap(), Filter::default());
    }

    #[test]
    fn bad_expressions_name_the_token() {
        let reason = |e: &str| e.parse::<Filter>().unwrap_err().to_string();
        assert_eq!(reason("taken >= 2024-06-01"), "filter 'taken >= 2024-06-01': unknown field 'taken' (filters know folder, name)");
        assert_eq!(reason("folder > a"), "filter 'folder > a': unknown operator '>' after 'folder' (use =, !=, ~ or !~)");
        assert_eq!(reason("folder"), "filter 'folder': 'folder' needs an operator and a value (=, !=, ~ or !~)");
        assert_eq!(reason("= a"), "filter '= a': expected a field (folder, name) at the start");
        assert_eq!(reason("folder ~ a*"), "filter 'folder ~ a*': '~' does not apply to folder (use = or !=: a folder matches itself and what lies below it)");
        assert_eq!(reason("name ~ [a"), "filter 'name ~ [a': bad glob '[a': unclosed character class; missing ']'");
        assert_eq!(reason("name = 'a"), "filter 'name = 'a': unterminated quote in the value");
        assert_eq!(reason("name ="), "filter 'name =': 'name =' needs a value");
    }
}
