//! Grouped-image ground truth (e.g. `landmarks-dev/groups.csv`).
//!
//! CSV with header `image,group`; an empty group marks a distractor. Protocol:
//! every grouped image is a query, its positives are the *other* images of its group, and the
//! database is every image in the file. The query itself is in the database but is ignored in
//! its own ranking (treated exactly like a junk image), which is the same as ranking it against
//! all other images.
//!
//! A group with a single image is accepted: its query has no positive, so it is skipped like a
//! Revisited query without positives (AP `None`, left out of the means, and counted by
//! [`super::ProtocolResult::n_skipped`]). [`GroupsGt::singleton_groups`] names such groups so
//! that callers can warn; this is usually a typo in a group name.

use std::collections::HashMap;
use std::path::Path;

use super::metric::{score_query, PositionSource, ProtocolResult};
use super::{EvalError, Result};

/// Parsed groups file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsGt {
    /// Image file names in file order; position = database index.
    pub images: Vec<String>,
    /// Group of each image, `None` for a distractor.
    pub group: Vec<Option<String>>,
    /// Group id of each image (index into `members`).
    group_id: Vec<Option<usize>>,
    /// Image indices of each group, ascending; groups in order of first appearance.
    members: Vec<Vec<usize>>,
    group_names: Vec<String>,
}

impl GroupsGt {
    /// Reads and parses a groups CSV file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses CSV text; `path` is only used in error messages.
    ///
    /// Accepts a UTF-8 BOM, CRLF line ends, blank lines, surrounding spaces and RFC 4180 quoted
    /// fields (on one line). Errors: bad header, a row without exactly two fields, an empty image
    /// name, a duplicate image.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let syntax = |line: usize, reason: String| EvalError::GroupsSyntax { path: path.to_path_buf(), line, reason };
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).enumerate();

        let header = lines.next().map(|(_, l)| l).unwrap_or("");
        let header_ok = matches!(split_fields(header).as_deref(), Ok([a, b]) if a == "image" && b == "group");
        if !header_ok {
            return Err(EvalError::GroupsHeader { path: path.to_path_buf(), line: 1, found: header.to_string() });
        }

        let mut images = Vec::new();
        let mut group = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, raw) in lines {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_fields(raw).map_err(|r| syntax(line, r.to_string()))?;
            let [image, grp]: [String; 2] =
                fields.try_into().map_err(|f: Vec<String>| syntax(line, format!("expected 2 fields (image,group), found {}", f.len())))?;
            if image.is_empty() {
                return Err(syntax(line, "empty image name".to_string()));
            }
            if let Some(&first) = first_line.get(&image) {
                return Err(EvalError::DuplicateImage { path: path.to_path_buf(), line, image, first_line: first });
            }
            first_line.insert(image.clone(), line);
            images.push(image);
            group.push((!grp.is_empty()).then_some(grp));
        }
        Ok(Self::from_parts(images, group))
    }

    /// Builds the ground truth from already-parsed columns (image names must be unique).
    pub fn from_parts(images: Vec<String>, group: Vec<Option<String>>) -> Self {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut group_names = Vec::new();
        let group_id = group
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let g = g.as_deref()?;
                let id = *ids.entry(g).or_insert_with(|| {
                    members.push(Vec::new());
                    group_names.push(g.to_string());
                    members.len() - 1
                });
                members[id].push(i);
                Some(id)
            })
            .collect();
        Self { images, group, group_id, members, group_names }
    }

    /// Number of images (the database size).
    pub fn n_images(&self) -> usize {
        self.images.len()
    }

    /// Group names in order of first appearance.
    pub fn group_names(&self) -> &[String] {
        &self.group_names
    }

    /// Number of distinct groups.
    pub fn n_groups(&self) -> usize {
        self.group_names.len()
    }

    /// Number of distractors: images with an empty group, never queries nor positives.
    pub fn n_distractors(&self) -> usize {
        self.group.iter().filter(|g| g.is_none()).count()
    }

    /// Image indices of the queries (every grouped image), in file order. Query `q` of a
    /// [`PositionSource`] is image `queries()[q]`.
    pub fn queries(&self) -> Vec<usize> {
        (0..self.images.len()).filter(|&i| self.group_id[i].is_some()).collect()
    }

    /// The other images of `image`'s group (empty for a distractor or a singleton group).
    pub fn positives(&self, image: usize) -> Vec<usize> {
        match self.group_id.get(image).copied().flatten() {
            Some(id) => self.members[id].iter().copied().filter(|&i| i != image).collect(),
            None => Vec::new(),
        }
    }

    /// Groups with one image only; their query has no positive and is skipped.
    pub fn singleton_groups(&self) -> Vec<&str> {
        self.members.iter().zip(&self.group_names).filter(|(m, _)| m.len() == 1).map(|(_, n)| n.as_str()).collect()
    }

    /// Per query, the sorted image indices whose positions are needed: its positives and
    /// itself (ignored). The input of [`super::rank::stream_positions`].
    pub fn relevant(&self) -> Vec<Vec<usize>> {
        self.queries().into_iter().map(|q| self.group_id[q].map(|id| self.members[id].clone()).unwrap_or_default()).collect()
    }

    /// mAP / mP@k of descriptors `rows` ([n_images, dim] row-major, file order): every grouped
    /// image is a query against all images, ranked by dot product without a full score matrix.
    pub fn evaluate_descriptors(&self, rows: &[f32], dim: usize) -> Result<ProtocolResult> {
        let queries: Vec<f32> = self.queries().iter().flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied()).collect();
        let database = super::Database::single(dim, rows)?;
        self.evaluate(&super::stream_positions(&database, &queries, &self.relevant(), super::DEFAULT_BLOCK_ROWS)?)
    }

    /// [`GroupsGt::evaluate_descriptors`] with α-DBA (`dba`: k, α) applied to the database and
    /// `rerank` (α-QE, SuperGlobal) to every query's ranking. Queries keep their own
    /// descriptor; each query is left out of its own ranking (and so of its expansion).
    pub fn evaluate_reranked(&self, rows: &[f32], dim: usize, dba: Option<(usize, f32)>, rerank: &crate::rerank::Rerank) -> Result<ProtocolResult> {
        self.evaluate(&super::RanksMatrix::from_columns(self.reranked_columns(rows, dim, dba, rerank), self.images.len())?)
    }

    /// Every query's full ranking (in [`GroupsGt::queries`] order) after DBA and `rerank`.
    fn reranked_columns(&self, rows: &[f32], dim: usize, dba: Option<(usize, f32)>, rerank: &crate::rerank::Rerank) -> Vec<Vec<usize>> {
        self.scored_columns(rows, dim, dba, rerank).into_iter().map(super::rank::unscored).collect()
    }

    /// Every query's full ranking after DBA and `rerank`, as `reranked_columns` gives it, with each row's score.
    pub fn scored_columns(&self, rows: &[f32], dim: usize, dba: Option<(usize, f32)>, rerank: &crate::rerank::Rerank) -> Vec<Vec<(usize, f32)>> {
        let db = dba.map_or_else(|| rows.to_vec(), |(k, alpha)| crate::rerank::dba(rows, dim, k, alpha));
        let queries = self.queries();
        let q: Vec<f32> = queries.iter().flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied()).collect();
        let exclude: Vec<Option<usize>> = queries.iter().map(|&i| Some(i)).collect();
        super::rank::scored_ranking(&db, dim, &q, &exclude, rerank)
    }

    /// [`GroupsGt::evaluate_reranked`] followed by spatial verification (`rerank.spatial`) of
    /// each query's top K against `locals` (one per image, file order; `None`: no features, 0
    /// inliers): the second stage of DELG-style retrieval.
    pub fn evaluate_spatial(
        &self,
        rows: &[f32],
        dim: usize,
        dba: Option<(usize, f32)>,
        rerank: &crate::rerank::Rerank,
        locals: &[Option<crate::model::LocalFeatures>],
    ) -> Result<ProtocolResult> {
        let Some(sp) = rerank.spatial else { return self.evaluate_reranked(rows, dim, dba, rerank) };
        let scored = self.scored_columns(rows, dim, dba, &crate::rerank::Rerank { spatial: None, ..*rerank });
        let empty = crate::model::LocalFeatures::empty(locals.iter().flatten().next().map_or(0, |f| f.dim));
        let mut columns = Vec::with_capacity(scored.len());
        for (col, qi) in scored.into_iter().zip(self.queries()) {
            let query = locals[qi].as_ref().unwrap_or(&empty);
            let k = sp.k.min(col.len());
            let candidates: Vec<&crate::model::LocalFeatures> = col[..k].iter().map(|&(r, _)| locals[r].as_ref().unwrap_or(&empty)).collect();
            let global: Vec<f32> = col[..k].iter().map(|&(_, s)| s).collect();
            let (order, _) = crate::spatial::verify_and_order(query, &candidates, &global, &sp.params)?;
            let mut rows: Vec<usize> = order.into_iter().map(|j| col[j].0).collect();
            rows.extend(col[k..].iter().map(|&(r, _)| r));
            columns.push(rows);
        }
        self.evaluate(&super::RanksMatrix::from_columns(columns, self.images.len())?)
    }

    /// mAP / mP@k of a ranking of all images (database in file order) for every query
    /// (in [`GroupsGt::queries`] order).
    pub fn evaluate(&self, src: &(impl PositionSource + ?Sized)) -> Result<ProtocolResult> {
        let queries = self.queries();
        if src.n_queries() != queries.len() {
            return Err(EvalError::CountMismatch { what: "queries in the ranking vs. grouped images", expected: queries.len(), found: src.n_queries() });
        }
        let scores = queries
            .iter()
            .enumerate()
            .map(|(q, &image)| {
                let pos = src.positions(q, &self.positives(image))?;
                let own = src.positions(q, &[image])?;
                Ok(score_query(&pos, &own))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ProtocolResult::from_scores(&scores))
    }
}

/// Splits one CSV record. Unquoted fields are trimmed; quoted ones are kept verbatim (`""` is
/// an escaped quote).
fn split_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        // Start of a field.
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let field = if chars.next_if_eq(&'"').is_some() {
            let mut f = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.next_if_eq(&'"').is_some() => f.push('"'),
                    Some('"') => break,
                    Some(c) => f.push(c),
                }
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            if !matches!(chars.peek(), None | Some(',')) {
                return Err("unexpected text after a quoted field");
            }
            f
        } else {
            let mut f = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '"' {
                    return Err("quote inside an unquoted field");
                }
                f.push(c);
            }
            f.trim_end().to_string()
        };
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(split_fields("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_fields(" a , ").unwrap(), ["a", ""]);
        assert_eq!(split_fields("\"a,b\",\"x\"\"y\"").unwrap(), ["a,b", "x\"y"]);
        assert_eq!(split_fields("a").unwrap(), ["a"]);
        assert_eq!(split_fields("").unwrap(), [""]);
        assert!(split_fields("\"a").is_err());
        assert!(split_fields("\"a\"b,c").is_err());
        assert!(split_fields("a\"b,c").is_err());
    }
}
