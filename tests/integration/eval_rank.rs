//! Ranking: the streaming evaluator must give exactly the positions of the full ranking.

use dolg::eval::rank::dot;
use dolg::eval::{full_ranking, stream_positions, Database, EvalError, GroupsGt, PositionSource, QueryGnd, RanksMatrix, RevisitedGnd};

/// Small deterministic generator (SplitMix64), so that tests need no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Rows with entries in {-2..2}/4 (exact products: many exactly tied scores), some rows
/// duplicated, then L2-normalised as in the real pipeline (duplicates stay tied).
fn tied_rows(rng: &mut Rng, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n * dim);
    for i in 0..n {
        if i > 0 && rng.below(4) == 0 {
            let src = rng.below(i);
            let row: Vec<f32> = v[src * dim..(src + 1) * dim].to_vec();
            v.extend(row);
        } else {
            v.extend((0..dim).map(|_| (rng.below(5) as f32 - 2.0) / 4.0));
        }
    }
    v
}

fn normalise(v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x /= n);
        }
    }
}

fn random_relevant(rng: &mut Rng, n_q: usize, n_db: usize) -> Vec<Vec<usize>> {
    (0..n_q)
        .map(|_| (0..rng.below(40)).map(|_| rng.below(n_db)).collect()) // duplicates on purpose
        .collect()
}

#[test]
fn streaming_equals_full_ranking_with_ties() {
    let mut rng = Rng(7);
    for &(n_db, dim, n_q, normalised) in &[(500, 8, 7, false), (1000, 3, 5, false), (777, 16, 9, true), (64, 1, 3, false)] {
        let mut db = tied_rows(&mut rng, n_db, dim);
        let mut queries = tied_rows(&mut rng, n_q, dim);
        // Some queries equal to database rows: exact score ties at the top.
        queries[..dim].copy_from_slice(&db[3 * dim..4 * dim]);
        if normalised {
            normalise(&mut db, dim);
            normalise(&mut queries, dim);
        }
        // Split the database in several slices, one of them empty.
        let cut1 = n_db / 3;
        let cut2 = n_db / 2;
        let parts = [&db[..cut1 * dim], &db[cut1 * dim..cut1 * dim], &db[cut1 * dim..cut2 * dim], &db[cut2 * dim..]];
        let split = Database::new(dim, parts).expect("db");
        let whole = Database::single(dim, &db).expect("db");
        assert_eq!(split.n_rows(), n_db);

        let full = full_ranking(&whole, &queries).expect("rank");
        assert_eq!(full, full_ranking(&split, &queries).expect("rank"));
        // The order really is: score descending, ties by lower index.
        let mut n_ties = 0;
        for (qi, col) in full.iter().enumerate() {
            let q = &queries[qi * dim..(qi + 1) * dim];
            for w in col.windows(2) {
                let (sa, sb) = (dot(&db[w[0] * dim..][..dim], q), dot(&db[w[1] * dim..][..dim], q));
                assert!(sa > sb || (sa == sb && w[0] < w[1]));
                n_ties += usize::from(sa == sb);
            }
        }
        assert!(n_ties > n_db / 2, "the test data must contain many ties ({n_ties})");

        let ranks = RanksMatrix::from_columns(full, n_db).expect("perm");
        let mut relevant = random_relevant(&mut rng, n_q, n_db);
        relevant[0].extend([3, 0, n_db - 1]);
        for block_rows in [1, 7, 64, 4096] {
            let streamed = stream_positions(&split, &queries, &relevant, block_rows).expect("stream");
            for (q, rel) in relevant.iter().enumerate() {
                let want = ranks.positions(q, rel).expect("full positions");
                let got = streamed.positions(q, rel).expect("streamed positions");
                assert_eq!(got, want, "n_db {n_db}, query {q}, block_rows {block_rows}");
            }
        }
    }
}

#[test]
fn tie_break_by_lower_index() {
    let db = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.6, 0.8, 1.0, 0.0];
    let q = [1.0f32, 0.0];
    let d = Database::single(2, &db).expect("db");
    assert_eq!(full_ranking(&d, &q).expect("rank"), vec![vec![0, 2, 4, 3, 1]]);
    let s = stream_positions(&d, &q, &[vec![4, 1, 2]], 2).expect("stream");
    assert_eq!(s.relevant(0), [1, 2, 4]);
    assert_eq!(s.positions_of(0), [4, 1, 2]);
    assert_eq!(s.positions(0, &[4, 2, 1]).expect("pos"), vec![2, 1, 4]);
    assert!(matches!(s.positions(0, &[0]), Err(EvalError::NotRelevant { query: 0, index: 0 })));
}

#[test]
fn bad_inputs_are_errors() {
    let db = [1.0f32, 0.0, 0.0, 1.0];
    assert!(matches!(Database::single(3, &db), Err(EvalError::Shape { len: 4, dim: 3, .. })));
    assert!(matches!(Database::single(0, &db), Err(EvalError::Shape { dim: 0, .. })));
    let d = Database::single(2, &db).expect("db");
    assert!(matches!(full_ranking(&d, &[1.0]), Err(EvalError::Shape { .. })));
    assert!(matches!(stream_positions(&d, &[1.0, 0.0], &[vec![2]], 16), Err(EvalError::IndexOutOfRange { index: 2, len: 2, .. })));
    assert!(matches!(stream_positions(&d, &[1.0, 0.0], &[], 16), Err(EvalError::CountMismatch { expected: 1, found: 0, .. })));
    let nan_db = [1.0f32, 0.0, f32::NAN, 1.0];
    let d = Database::single(2, &nan_db).expect("db");
    assert!(matches!(full_ranking(&d, &[1.0, 0.0]), Err(EvalError::NanScore { query: 0, db_index: 1 })));
    assert!(matches!(stream_positions(&d, &[1.0, 0.0], &[vec![0]], 16), Err(EvalError::NanScore { query: 0, db_index: 1 })));
    assert!(matches!(RanksMatrix::from_columns(vec![vec![0, 0]], 2), Err(EvalError::NotAPermutation { query: 0, index: 0, .. })));
    assert!(matches!(RanksMatrix::from_columns(vec![vec![0, 2]], 2), Err(EvalError::NotAPermutation { index: 2, .. })));
    assert!(matches!(RanksMatrix::from_row_major(&[0, 1, 1], 2, 2), Err(EvalError::CountMismatch { .. })));
}

/// Same results through both position sources, for Revisited-style and groups ground truth,
/// with appended distractors.
#[test]
fn evaluation_agrees_end_to_end() {
    let mut rng = Rng(42);
    let (dim, n_db, n_distr, n_q) = (12, 300, 700, 6);
    let mut db = tied_rows(&mut rng, n_db, dim);
    let mut distractors = tied_rows(&mut rng, n_distr, dim);
    let mut queries = tied_rows(&mut rng, n_q, dim);
    normalise(&mut db, dim);
    normalise(&mut distractors, dim);
    normalise(&mut queries, dim);

    let mut pick = |k: usize, used: &mut Vec<usize>| -> Vec<usize> {
        let mut v = Vec::new();
        while v.len() < k {
            let i = rng.below(n_db);
            if !used.contains(&i) {
                used.push(i);
                v.push(i);
            }
        }
        v.sort_unstable();
        v
    };
    let gnd: Vec<QueryGnd> = (0..n_q)
        .map(|q| {
            let mut used = Vec::new();
            QueryGnd { bbx: [0.0, 0.0, 1.0, 1.0], easy: pick(if q == 0 { 0 } else { 5 }, &mut used), hard: pick(4, &mut used), junk: pick(6, &mut used) }
        })
        .collect();
    let gt = RevisitedGnd { imlist: (0..n_db).map(|i| format!("db{i}")).collect(), qimlist: (0..n_q).map(|i| format!("q{i}")).collect(), gnd };

    let all: Vec<f32> = [db.as_slice(), &distractors].concat();
    let full = full_ranking(&Database::single(dim, &all).expect("db"), &queries).expect("rank");
    let ranks = RanksMatrix::from_columns(full, n_db + n_distr).expect("perm");
    let split = Database::new(dim, [db.as_slice(), &distractors]).expect("db");
    let streamed = stream_positions(&split, &queries, &gt.relevant(), 50).expect("stream");
    let a = gt.evaluate(&ranks).expect("eval full");
    let b = gt.evaluate(&streamed).expect("eval streamed");
    assert_eq!(a, b);
    assert_eq!((a.easy.n_queries, a.medium.n_queries), (n_q - 1, n_q));

    // Groups: all images are the database, grouped ones are the queries.
    let n_img = 120;
    let images: Vec<String> = (0..n_img).map(|i| format!("im{i}")).collect();
    let group: Vec<Option<String>> = (0..n_img).map(|i| (i % 5 != 0).then(|| format!("g{}", i % 17))).collect();
    let g = GroupsGt::from_parts(images, group);
    let desc = &db[..n_img * dim];
    let qdesc: Vec<f32> = g.queries().iter().flat_map(|&i| desc[i * dim..(i + 1) * dim].to_vec()).collect();
    let d = Database::single(dim, desc).expect("db");
    let ranks = RanksMatrix::from_columns(full_ranking(&d, &qdesc).expect("rank"), n_img).expect("perm");
    let streamed = stream_positions(&d, &qdesc, &g.relevant(), 16).expect("stream");
    let a = g.evaluate(&ranks).expect("eval");
    assert_eq!(a, g.evaluate(&streamed).expect("eval"));
    assert_eq!(a.n_queries, g.queries().len());
}
