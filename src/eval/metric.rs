//! Revisited Oxford/Paris metrics, ported from `compute_ap` / `compute_map` of
//! cirtorch (`cirtorch/utils/evaluate.py`) and revisitop.
//!
//! Everything works from *positions*: the 0-based places of a query's positives and ignored
//! ("junk") items in the full ranking of the database. The loop order and f64 arithmetic follow
//! the reference so that results are bit-identical to it.

use serde_json::{json, Map, Value};

use super::{EvalError, Result};

/// The `k` of mP@k, as in the reference (`kappas=[1, 5, 10]`).
pub const KAPPAS: [usize; 3] = [1, 5, 10];

/// AP and P@k of one query (fractions in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryScore {
    /// Average precision.
    pub ap: f64,
    /// Precision at k for each k in [`KAPPAS`].
    pub pr: [f64; 3],
}

/// `compute_ap` of the reference: trapezoid rule over the precision-recall curve.
///
/// `ranks`: ascending 0-based ranks of the found positives *after junk removal*;
/// `n_positives`: number of ground-truth positives (the recall step is `1 / n_positives`).
pub fn compute_ap(ranks: &[usize], n_positives: usize) -> f64 {
    let recall_step = 1.0 / n_positives as f64;
    let mut ap = 0.0;
    for (j, &rank) in ranks.iter().enumerate() {
        let precision_0 = if rank == 0 { 1.0 } else { j as f64 / rank as f64 };
        let precision_1 = (j + 1) as f64 / (rank + 1) as f64;
        ap += (precision_0 + precision_1) * recall_step / 2.0;
    }
    ap
}

/// Scores one query from the 0-based positions (in the full ranking) of its positives and of
/// its ignored items. Positions may come in any order and are treated as sets, as the
/// reference's `np.in1d` does. Returns `None` when there is no positive: the reference gives
/// NaN and leaves such a query out of the means.
pub fn score_query(positives: &[usize], junk: &[usize]) -> Option<QueryScore> {
    if positives.is_empty() {
        return None;
    }
    let mut pos = sorted_unique(positives);
    let junk = sorted_unique(junk);

    // Shift each positive up by the number of junk items ranked before it, which is the same as
    // deleting junk from the ranked list (reference loop, including `>` so that an item that is
    // both positive and junk keeps its place).
    let mut k = 0;
    let mut ij = 0;
    for p in pos.iter_mut() {
        while ij < junk.len() && *p > junk[ij] {
            k += 1;
            ij += 1;
        }
        *p -= k;
    }

    let ap = compute_ap(&pos, pos.len());

    // Precision at k, revisitop style: with 1-based positions p, kq = min(max(p), k).
    let last = pos[pos.len() - 1] + 1;
    let mut pr = [0.0; 3];
    for (out, &kappa) in pr.iter_mut().zip(KAPPAS.iter()) {
        let kq = last.min(kappa);
        let hits = pos.iter().take_while(|&&p| p < kq).count();
        *out = hits as f64 / kq as f64;
    }
    Some(QueryScore { ap, pr })
}

fn sorted_unique(v: &[usize]) -> Vec<usize> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Anything that knows where database items land in each query's full ranking.
pub trait PositionSource {
    /// Number of queries it can answer for.
    fn n_queries(&self) -> usize;
    /// 0-based positions in query `query`'s full ranking of each database index in `items`,
    /// in the same order.
    fn positions(&self, query: usize, items: &[usize]) -> Result<Vec<usize>>;
}

/// A full ranking per query, with the layout of the reference's `ranks` argument:
/// `ranks[i][q]` is the database index at rank `i` for query `q`.
#[derive(Debug, Clone)]
pub struct RanksMatrix {
    n_db: usize,
    /// One full ranking (a permutation of `0..n_db`) per query.
    columns: Vec<Vec<usize>>,
}

impl RanksMatrix {
    /// From the reference layout stored row-major, i.e. a C-order `[n_db, n_queries]` array such
    /// as the fixtures' `.npy` files: element `(i, q)` is `data[i * n_queries + q]`.
    pub fn from_row_major(data: &[usize], n_db: usize, n_queries: usize) -> Result<Self> {
        let expected = n_db.saturating_mul(n_queries);
        if data.len() != expected {
            return Err(EvalError::CountMismatch { what: "ranks matrix values (n_db * n_queries)", expected, found: data.len() });
        }
        let columns = (0..n_queries).map(|q| (0..n_db).map(|i| data[i * n_queries + q]).collect()).collect();
        Self::from_columns(columns, n_db)
    }

    /// From one ranked list per query, e.g. the output of [`super::rank::full_ranking`].
    /// Every list must be a permutation of `0..n_db`, so that every item has a position.
    pub fn from_columns(columns: Vec<Vec<usize>>, n_db: usize) -> Result<Self> {
        let mut seen = vec![false; n_db];
        for (query, col) in columns.iter().enumerate() {
            if col.len() != n_db {
                return Err(EvalError::CountMismatch { what: "length of a ranked list (database size)", expected: n_db, found: col.len() });
            }
            seen.iter_mut().for_each(|s| *s = false);
            for &index in col {
                let problem = match seen.get_mut(index) {
                    None => "is out of range",
                    Some(true) => "appears twice",
                    Some(s) => {
                        *s = true;
                        continue;
                    }
                };
                return Err(EvalError::NotAPermutation { query, n_db, index, problem });
            }
        }
        Ok(Self { n_db, columns })
    }

    /// Number of database items each ranked list covers.
    pub fn n_db(&self) -> usize {
        self.n_db
    }

    /// The ranked database indices of query `q`, best first.
    pub fn column(&self, q: usize) -> &[usize] {
        &self.columns[q]
    }
}

impl PositionSource for RanksMatrix {
    fn n_queries(&self) -> usize {
        self.columns.len()
    }

    fn positions(&self, query: usize, items: &[usize]) -> Result<Vec<usize>> {
        let col = self.columns.get(query).ok_or(EvalError::IndexOutOfRange { what: "query", query, index: query, len: self.columns.len() })?;
        // Inverse permutation; O(n_db) per call, which is negligible next to ranking.
        let mut inverse = vec![0usize; self.n_db];
        for (rank, &index) in col.iter().enumerate() {
            inverse[index] = rank;
        }
        items.iter().map(|&index| inverse.get(index).copied().ok_or(EvalError::IndexOutOfRange { what: "database", query, index, len: self.n_db })).collect()
    }
}

/// Revisited evaluation protocols (Radenović et al., CVPR 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// positives = easy; ignored = junk ∪ hard.
    Easy,
    /// positives = easy ∪ hard; ignored = junk.
    Medium,
    /// positives = hard; ignored = junk ∪ easy.
    Hard,
}

impl Protocol {
    /// The three protocols in order: Easy, Medium, Hard.
    pub const ALL: [Protocol; 3] = [Protocol::Easy, Protocol::Medium, Protocol::Hard];

    /// Lower-case name used as JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Easy => "easy",
            Protocol::Medium => "medium",
            Protocol::Hard => "hard",
        }
    }

    /// Splits a query's easy/hard/junk items into `(positives, ignored)` under this protocol.
    pub fn split<T: Copy>(self, easy: &[T], hard: &[T], junk: &[T]) -> (Vec<T>, Vec<T>) {
        match self {
            Protocol::Easy => (easy.to_vec(), [junk, hard].concat()),
            Protocol::Medium => ([easy, hard].concat(), junk.to_vec()),
            Protocol::Hard => (hard.to_vec(), [junk, easy].concat()),
        }
    }
}

/// Positions in the full ranking of one query's easy, hard and junk items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisitedPositions {
    /// 0-based positions of the easy items.
    pub easy: Vec<usize>,
    /// 0-based positions of the hard items.
    pub hard: Vec<usize>,
    /// 0-based positions of the junk items.
    pub junk: Vec<usize>,
}

/// Scores of one protocol (or of a groups benchmark), as fractions.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolResult {
    /// Mean AP over the queries that have positives (NaN if there are none).
    pub map: f64,
    /// Mean precision at k = 1, 5, 10 over the same queries.
    pub mp: [f64; 3],
    /// Number of queries that have at least one positive (the denominator of the means).
    pub n_queries: usize,
    /// Per-query AP, `None` for a skipped query.
    pub aps: Vec<Option<f64>>,
    /// Per-query P@k, `None` for a skipped query.
    pub prs: Vec<Option<[f64; 3]>>,
}

impl ProtocolResult {
    /// Averages per-query scores the way the reference does (sum in query order, then divide).
    pub(crate) fn from_scores(scores: &[Option<QueryScore>]) -> Self {
        let mut map = 0.0;
        let mut mp = [0.0; 3];
        let mut n = 0usize;
        for s in scores.iter().flatten() {
            map += s.ap;
            for (acc, p) in mp.iter_mut().zip(s.pr) {
                *acc += p;
            }
            n += 1;
        }
        let denom = n as f64;
        Self {
            map: map / denom,
            mp: mp.map(|x| x / denom),
            n_queries: n,
            aps: scores.iter().map(|s| s.map(|s| s.ap)).collect(),
            prs: scores.iter().map(|s| s.map(|s| s.pr)).collect(),
        }
    }

    /// Scores each query given `(positive positions, ignored positions)` and averages.
    pub fn from_positions<'a, I>(queries: I) -> Self
    where
        I: IntoIterator<Item = (&'a [usize], &'a [usize])>,
    {
        let scores: Vec<_> = queries.into_iter().map(|(p, j)| score_query(p, j)).collect();
        Self::from_scores(&scores)
    }

    /// Number of queries without positives, left out of the means.
    pub fn n_skipped(&self) -> usize {
        self.aps.len() - self.n_queries
    }

    /// `{"map": .., "mp": {"1": .., "5": .., "10": ..}, "n_queries": ..}` with values ×100 at full
    /// precision; with `per_query`, also `"aps"` (×100, `null` for skipped queries).
    /// Non-finite values (mAP of an empty benchmark) become `null`.
    pub fn to_json(&self, per_query: bool) -> Value {
        let mut mp = Map::new();
        for (k, v) in KAPPAS.iter().zip(self.mp) {
            mp.insert(k.to_string(), json!(v * 100.0));
        }
        let mut obj = Map::new();
        obj.insert("map".into(), json!(self.map * 100.0));
        obj.insert("mp".into(), Value::Object(mp));
        obj.insert("n_queries".into(), json!(self.n_queries));
        if per_query {
            let aps = self.aps.iter().map(|ap| json!(ap.map(|a| a * 100.0))).collect();
            obj.insert("aps".into(), Value::Array(aps));
        }
        Value::Object(obj)
    }

    /// Human summary for a single-protocol benchmark, e.g.
    /// `>> landmarks-dev: mAP: 61.35, mP@k[1, 5, 10]: [72.46 30.72 19.13]`.
    pub fn table(&self, dataset: &str) -> String {
        let mut s = format!(">> {dataset}: mAP: {}, mP@k{KAPPAS:?}: {}\n", pct(self.map), pct_list(&self.mp));
        if self.n_skipped() > 0 {
            s += &format!(">> {dataset}: {} of {} queries have no positive and were skipped\n", self.n_skipped(), self.aps.len());
        }
        s
    }
}

/// Easy, Medium and Hard results of one Revisited dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisitedResult {
    /// Scores under the Easy protocol.
    pub easy: ProtocolResult,
    /// Scores under the Medium protocol.
    pub medium: ProtocolResult,
    /// Scores under the Hard protocol.
    pub hard: ProtocolResult,
}

impl RevisitedResult {
    /// Scores every query under the three protocols.
    pub fn from_positions(queries: &[RevisitedPositions]) -> Self {
        let run = |protocol: Protocol| {
            let scores: Vec<_> = queries
                .iter()
                .map(|q| {
                    let (pos, junk) = protocol.split(&q.easy, &q.hard, &q.junk);
                    score_query(&pos, &junk)
                })
                .collect();
            ProtocolResult::from_scores(&scores)
        };
        Self { easy: run(Protocol::Easy), medium: run(Protocol::Medium), hard: run(Protocol::Hard) }
    }

    /// The scores of one protocol.
    pub fn get(&self, protocol: Protocol) -> &ProtocolResult {
        match protocol {
            Protocol::Easy => &self.easy,
            Protocol::Medium => &self.medium,
            Protocol::Hard => &self.hard,
        }
    }

    /// `{"easy": {...}, "medium": {...}, "hard": {...}}`, each as [`ProtocolResult::to_json`].
    pub fn to_json(&self, per_query: bool) -> Value {
        let obj = Protocol::ALL.iter().map(|&p| (p.name().to_string(), self.get(p).to_json(per_query))).collect();
        Value::Object(obj)
    }

    /// The reference's printout (×100, 2 decimals), plus a note on skipped queries:
    ///
    /// ```text
    /// >> roxford5k: mAP E: 84.81, M: 64.67, H: 38.47
    /// >> roxford5k: mP@k[1, 5, 10] E: [97.06 92.06 86.49], M: [..], H: [..]
    /// ```
    pub fn table(&self, dataset: &str) -> String {
        let (e, m, h) = (&self.easy, &self.medium, &self.hard);
        let mut s = format!(
            ">> {dataset}: mAP E: {}, M: {}, H: {}\n>> {dataset}: mP@k{KAPPAS:?} E: {}, M: {}, H: {}\n",
            pct(e.map),
            pct(m.map),
            pct(h.map),
            pct_list(&e.mp),
            pct_list(&m.mp),
            pct_list(&h.mp),
        );
        if e.n_skipped() + m.n_skipped() + h.n_skipped() > 0 {
            s += &format!(">> {dataset}: queries without positives (skipped) E: {}, M: {}, H: {}\n", e.n_skipped(), m.n_skipped(), h.n_skipped());
        }
        s
    }
}

/// `np.around(x * 100, decimals=2)`: scale, round half to even, unscale. Reproduces the
/// reference's printed digits, which can differ from `format!("{:.2}")` on exact ties.
pub(crate) fn around_percent(x: f64) -> f64 {
    (x * 100.0 * 100.0).round_ties_even() / 100.0
}

/// A fraction printed as the reference prints it, always with 2 decimals.
pub fn pct(x: f64) -> String {
    format!("{:.2}", around_percent(x))
}

fn pct_list(xs: &[f64]) -> String {
    let parts: Vec<String> = xs.iter().map(|&x| pct(x)).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_ranking_is_one() {
        let s = score_query(&[0, 1, 2], &[]).unwrap();
        assert_eq!(s.ap, 1.0);
        // kq = min(3, k): P@1 = 1/1, P@5 = 3/3, P@10 = 3/3.
        assert_eq!(s.pr, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn positives_last() {
        // 2 positives at positions 8 and 9 of a 10-item ranking.
        // j=0, r=8: P0 = 0/8 = 0,  P1 = 1/9;  j=1, r=9: P0 = 1/9, P1 = 2/10.
        // AP = 1/2 * [(0 + 1/9)/2 + (1/9 + 1/5)/2] = (1/9 + 1/9 + 1/5)/4 = (10/45 + 9/45)/4 = 19/180.
        let s = score_query(&[9, 8], &[]).unwrap();
        assert!((s.ap - 19.0 / 180.0).abs() < 1e-15, "{}", s.ap);
        // 1-based positions 9, 10: kq = k for k <= 10 ; P@1 = P@5 = 0, P@10 = 2/10.
        assert_eq!(s.pr, [0.0, 0.0, 0.2]);
    }

    #[test]
    fn junk_is_removed() {
        // Ranking: J P J J P N ... -> without junk: P P N ..., i.e. a perfect ranking.
        let s = score_query(&[1, 4], &[0, 2, 3]).unwrap();
        assert_eq!(s.ap, 1.0);
        assert_eq!(s.pr, [1.0, 1.0, 1.0]);
        // Ranking: N J P -> adjusted rank 1: AP = (1/1 * (0/1 + 1/2)/2) = 0.25.
        let s = score_query(&[2], &[1]).unwrap();
        assert_eq!(s.ap, 0.25);
        // kq = min(2, k): P@1 = 0/1, P@5 = P@10 = 1/2.
        assert_eq!(s.pr, [0.0, 0.5, 0.5]);
    }

    #[test]
    fn no_positive_is_skipped() {
        assert_eq!(score_query(&[], &[0, 1]), None);
        let r = ProtocolResult::from_scores(&[None, score_query(&[0], &[]), score_query(&[1], &[])]);
        assert_eq!(r.n_queries, 2);
        assert_eq!(r.n_skipped(), 1);
        assert_eq!(r.aps, vec![None, Some(1.0), Some(0.25)]);
        assert_eq!(r.map, 0.625);
        let j = r.to_json(true);
        assert_eq!(j["aps"][0], Value::Null);
        assert_eq!(j["map"], json!(62.5));
        assert_eq!(j["mp"]["1"], json!(50.0));
        assert_eq!(j["n_queries"], json!(2));
    }

    #[test]
    fn protocols_split() {
        let (p, j) = Protocol::Easy.split(&[1], &[2], &[3]);
        assert_eq!((p, j), (vec![1], vec![3, 2]));
        let (p, j) = Protocol::Medium.split(&[1], &[2], &[3]);
        assert_eq!((p, j), (vec![1, 2], vec![3]));
        let (p, j) = Protocol::Hard.split(&[1], &[2], &[3]);
        assert_eq!((p, j), (vec![2], vec![3, 1]));
    }

    #[test]
    fn numpy_rounding() {
        assert_eq!(pct(0.848_1), "84.81");
        assert_eq!(pct(1.0), "100.00");
        assert_eq!(pct(0.0), "0.00");
        // A tie after scaling (0.00125 * 100 * 100 is exactly 12.5 in f64): numpy's rint rounds it
        // to 12, i.e. 0.12 (not 0.13).
        assert_eq!(pct(0.00125), "0.12");
        assert_eq!(pct(0.00135), "0.14");
    }
}
