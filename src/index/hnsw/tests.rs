use super::file::TRAILER_LEN;
use super::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn uni(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn gauss(&mut self) -> f32 {
        // sum of 4 uniforms, variance 4/3 -> rescale to ~N(0,1)
        (self.uni() + self.uni() + self.uni() + self.uni()) * 0.866
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` clustered unit vectors: `n_centres` random centres + N(0, 0.02^2) noise per dim.
fn clustered(n: usize, dim: usize, n_centres: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng(seed | 1);
    let mut centres = vec![0f32; n_centres * dim];
    for c in centres.chunks_mut(dim) {
        c.iter_mut().for_each(|x| *x = r.uni());
        normalize(c);
    }
    let mut out = vec![0f32; n * dim];
    for row in out.chunks_mut(dim) {
        let c = (r.next() % n_centres as u64) as usize;
        for (x, cx) in row.iter_mut().zip(&centres[c * dim..(c + 1) * dim]) {
            *x = cx + 0.02 * r.gauss();
        }
        normalize(row);
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const DIM: usize = 512;

#[test]
fn add_search_remove_roundtrip() {
    let data = clustered(2000, DIM, 50, 1);
    let mut idx = HnswIndex::new(DIM, 10).unwrap(); // small hint: forces capacity growth
    for (i, row) in data.chunks(DIM).enumerate() {
        idx.add(1000 + i as u64, row).unwrap();
    }
    assert_eq!(idx.len(), 2000);
    let q = &data[5 * DIM..6 * DIM];
    let res = idx.search(q, 10).unwrap();
    assert_eq!(res.len(), 10);
    assert_eq!(res[0].0, 1005);
    assert!((res[0].1 - 1.0).abs() < 1e-4, "self score {}", res[0].1);
    // scores are inner products, best first
    for w in res.windows(2) {
        assert!(w[0].1 >= w[1].1);
    }
    for &(id, s) in &res {
        let r = (id - 1000) as usize;
        assert!((dot(q, &data[r * DIM..(r + 1) * DIM]) - s).abs() < 1e-4);
    }
    // duplicate id rejected, index unchanged
    assert!(matches!(idx.add(1005, q), Err(HnswError::DuplicateId { id: 1005 })));
    assert_eq!(idx.len(), 2000);
    // remove excludes from search
    idx.remove(1005).unwrap();
    assert_eq!(idx.len(), 1999);
    assert!(!idx.contains(1005));
    assert!(idx.search(q, 10).unwrap().iter().all(|&(id, _)| id != 1005));
    assert!(matches!(idx.remove(1005), Err(HnswError::NotFound { id: 1005 })));
    // and the id can be reused
    idx.add(1005, q).unwrap();
    assert_eq!(idx.search(q, 1).unwrap()[0].0, 1005);
    // bad input
    assert!(matches!(idx.add(1, &[0.0; 3]), Err(HnswError::DimMismatch { expected: 512, got: 3 })));
    assert!(matches!(idx.search(&[0.0; 3], 1), Err(HnswError::DimMismatch { .. })));
    let mut nan = q.to_vec();
    nan[7] = f32::NAN;
    assert!(matches!(idx.add(99_999, &nan), Err(HnswError::NonFinite { .. })));
    assert!(idx.search(q, 0).unwrap().is_empty());
    assert!(HnswIndex::new(DIM, 0).unwrap().search(q, 5).unwrap().is_empty());
}

#[test]
fn add_batch_and_errors() {
    let data = clustered(3000, DIM, 60, 2);
    let ids: Vec<u64> = (0..3000u64).map(|i| i * 7 + 3).collect();
    let mut idx = HnswIndex::new(DIM, 100).unwrap();
    idx.add_batch(&ids, &data).unwrap();
    assert_eq!(idx.len(), 3000);
    for i in [0usize, 1234, 2999] {
        let r = idx.search(&data[i * DIM..(i + 1) * DIM], 1).unwrap();
        assert_eq!(r[0].0, ids[i]);
    }
    // shape error
    assert!(matches!(idx.add_batch(&[1, 2], &data[..DIM]), Err(HnswError::BatchShape { .. })));
    // a batch with an id already present adds nothing
    let extra: Vec<f32> = clustered(2, DIM, 2, 3);
    assert!(matches!(idx.add_batch(&[1, ids[5]], &extra), Err(HnswError::DuplicateId { .. })));
    assert_eq!(idx.len(), 3000);
    // a duplicate inside the batch adds nothing
    assert!(matches!(idx.add_batch(&[1, 1], &extra), Err(HnswError::DuplicateId { id: 1 })));
    assert_eq!(idx.len(), 3000);
    // A filtered walk returns only ids the predicate accepts: here half of them, k of each.
    let even = |id: u64| id.is_multiple_of(2);
    for i in [0usize, 1234, 2999] {
        let r = idx.search_where(&data[i * DIM..(i + 1) * DIM], 10, even).unwrap();
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|&(id, _)| even(id)), "{r:?}");
        assert_eq!(r[0].0 == ids[i], even(ids[i]));
    }
}

#[test]
fn recall_at_defaults_on_20k_clustered() {
    let n = 20_000;
    let all = clustered(n + 100, DIM, 200, 4);
    let (base, queries) = all.split_at(n * DIM);
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut idx = HnswIndex::new(DIM, n).unwrap();
    idx.add_batch(&ids, base).unwrap();
    let mut hits = 0;
    for q in queries.chunks(DIM) {
        let mut exact: Vec<(f32, u64)> = base.chunks(DIM).enumerate().map(|(i, r)| (dot(q, r), i as u64)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<u64> = exact[..10].iter().map(|x| x.1).collect();
        let got = idx.search(q, 10).unwrap();
        hits += got.iter().filter(|(id, _)| truth.contains(id)).count();
    }
    let recall = hits as f64 / 1000.0;
    eprintln!("recall@10 = {recall}");
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[test]
fn save_load_roundtrip_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("descriptors.hnsw");
    let data = clustered(3000, DIM, 60, 5);
    let ids: Vec<u64> = (0..3000u64).map(|i| i + 10).collect();
    let mut idx = HnswIndex::new(DIM, 3000).unwrap();
    idx.add_batch(&ids, &data).unwrap();
    idx.remove(10).unwrap();
    idx.set_ef_search(100);
    idx.save(&path, 42).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");

    let (mut loaded, tag) = HnswIndex::load(&path, DIM).unwrap();
    assert_eq!(tag, 42);
    assert_eq!(loaded.len(), 2999);
    assert_eq!(loaded.ef_search, 100);
    assert!(!loaded.contains(10));
    for i in [1usize, 500, 2999] {
        let q = &data[i * DIM..(i + 1) * DIM];
        assert_eq!(idx.search(q, 10).unwrap(), loaded.search(q, 10).unwrap());
    }
    // loaded index stays writable
    loaded.add(10, &data[..DIM]).unwrap();
    loaded.add(1_000_000, &data[DIM..2 * DIM]).unwrap();
    assert_eq!(loaded.len(), 3001);

    // wrong dim
    assert!(matches!(HnswIndex::load(&path, 256), Err(HnswError::Corrupt { .. })));
    // missing file
    assert!(matches!(HnswIndex::load(&dir.path().join("nope"), DIM), Err(HnswError::Io { .. })));

    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.hnsw");
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("truncated to 10 bytes".into(), good[..10].to_vec()),
        ("truncated to half".into(), good[..good.len() / 2].to_vec()),
        ("last byte missing".into(), good[..good.len() - 1].to_vec()),
        ("trailer removed (plain usearch image)".into(), good[..good.len() - TRAILER_LEN].to_vec()),
        ("extra byte".into(), [good.as_slice(), &[0u8]].concat()),
    ];
    // Every trailer field is under the checksum too: dim (12), ef (16), length (20), tag (28).
    let t = good.len() - TRAILER_LEN;
    for off in [0usize, 17, 64, good.len() / 3, good.len() / 2, t - 1, t + 12, t + 16, t + 20, t + 28, good.len() - 1] {
        let mut c = good.clone();
        c[off] ^= 0x01;
        cases.push((format!("bit flip at {off}"), c));
    }
    // A version-1 file (its own 64-bit hash, no tag) is refused by version, before any checksum.
    let mut v1 = good.clone();
    v1[t + 8..t + 12].copy_from_slice(&1u32.to_le_bytes());
    match HnswIndex::load(&path_with(&bad, &v1), DIM) {
        Err(HnswError::Corrupt { msg, .. }) => assert!(msg.contains("version 1"), "{msg}"),
        other => panic!("version 1: expected Corrupt, got {other:?}"),
    }
    let mut r = Rng(77);
    cases.push(("garbage".into(), (0..good.len()).map(|_| r.next() as u8).collect()));
    for (label, bytes) in cases {
        std::fs::write(&bad, &bytes).unwrap();
        match HnswIndex::load(&bad, DIM) {
            Err(HnswError::Corrupt { path, .. }) => assert_eq!(path, bad, "{label}"),
            other => panic!("{label}: expected Corrupt, got {other:?}"),
        }
    }
}

fn path_with(path: &std::path::Path, bytes: &[u8]) -> std::path::PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn every_added_vector_is_findable() {
    let n = 4000;
    let data = clustered(n, DIM, 80, 8);
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut idx = HnswIndex::new(DIM, n).unwrap();
    idx.add_batch(&ids, &data).unwrap();
    let stranded: Vec<usize> = (0..n).filter(|&i| idx.search(&data[i * DIM..(i + 1) * DIM], 1).unwrap()[0].0 != i as u64).collect();
    assert!(stranded.is_empty(), "unreachable after add_batch: {stranded:?}");
}

#[test]
fn many_concurrent_searchers_do_not_fail() {
    let data = clustered(2000, DIM, 40, 6);
    let ids: Vec<u64> = (0..2000).collect();
    let mut idx = HnswIndex::new(DIM, 2000).unwrap();
    idx.add_batch(&ids, &data).unwrap();
    let n_threads = idx.contexts * 3; // more callers than usearch thread contexts
    std::thread::scope(|s| {
        for t in 0..n_threads {
            let (idx, data) = (&idx, &data);
            s.spawn(move || {
                for j in 0..50 {
                    let i = (t * 50 + j) % 2000;
                    let r = idx.search(&data[i * DIM..(i + 1) * DIM], 5).unwrap();
                    assert_eq!(r[0].0, i as u64);
                }
            });
        }
    });
}
