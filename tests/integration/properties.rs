//! Properties of the model pieces that hold whatever the weights: orthogonal fusion, the fusion
//! ablations, GeM pooling, and unit-norm descriptors. Inputs are small pseudo-random tensors
//! (fixed seeds); every expectation is computed independently here in f64.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use dolg::descriptors::{combine_scales, l2_normalize};
use dolg::model::fusion::{fuse_local, orthogonal_component, Fusion};
use dolg::model::gem::{gap, GeM};

/// xorshift64* → uniform f32 in [lo, hi).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

fn t2(data: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, shape), &Device::flex())
}
fn t4(data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, shape), &Device::flex())
}
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
fn norm32(a: &[f32]) -> f64 {
    a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

/// Channel vector at (b, ·, i) of a [B, C, HW] row-major buffer, in f64.
fn column(buf: &[f32], c: usize, hw: usize, b: usize, i: usize) -> Vec<f64> {
    (0..c).map(|k| f64::from(buf[(b * c + k) * hw + i])).collect()
}

const SHAPES: [(usize, usize, usize, usize); 3] = [(1, 8, 3, 5), (2, 64, 4, 4), (3, 1024, 2, 3)];

#[test]
fn orthogonal_component_is_orthogonal_to_fg_and_the_rest_is_parallel() {
    let mut rng = Rng(0x1234_5678);
    for (b, c, h, w) in SHAPES {
        let hw = h * w;
        // fl has a large component along fg (offset), so the projection is far from trivial.
        let fg = rng.vec(b * c, -1.0, 1.0);
        let mut fl = rng.vec(b * c * hw, -1.0, 1.0);
        for bi in 0..b {
            for k in 0..c {
                for i in 0..hw {
                    fl[(bi * c + k) * hw + i] += 2.0 * fg[bi * c + k] * (i as f32 + 1.0) / hw as f32;
                }
            }
        }
        let orth = host(orthogonal_component(t2(fg.clone(), [b, c]), t4(fl.clone(), [b, c, h, w])));
        assert_eq!(orth.len(), fl.len());
        for bi in 0..b {
            let g: Vec<f64> = fg[bi * c..(bi + 1) * c].iter().map(|&v| f64::from(v)).collect();
            for i in 0..hw {
                let o = column(&orth, c, hw, bi, i);
                let l = column(&fl, c, hw, bi, i);
                // orth ⊥ fg
                let d = dot(&g, &o).abs();
                assert!(d <= 1e-4 * norm(&g) * norm(&o), "shape {:?} b{bi} pos {i}: |fg·orth| = {d:e}", (b, c, h, w));
                // fl − orth ∥ fg: the residual after removing its own fg component is tiny.
                let p: Vec<f64> = l.iter().zip(&o).map(|(x, y)| x - y).collect();
                let along = dot(&p, &g) / dot(&g, &g);
                let off: Vec<f64> = p.iter().zip(&g).map(|(x, y)| x - along * y).collect();
                assert!(norm(&off) <= 1e-4 * norm(&p), "projection not parallel to fg: {:e} vs {:e}", norm(&off), norm(&p));
                // And it is the projection of fl: coefficient (fg·fl)/|fg|².
                let want = dot(&g, &l) / dot(&g, &g);
                assert!((along - want).abs() <= 1e-4 * want.abs().max(1.0), "coefficient {along} vs {want}");
            }
        }
    }
}

#[test]
fn orthogonal_component_hand_worked() {
    // fg = (1, 0); fl at two positions: (3, 4) and (−2, 5) → orth (0, 4) and (0, 5).
    // fg = (1, 1); fl = (2, 0) → proj (1, 1), orth (1, −1).
    let fg = t2(vec![1.0, 0.0, 1.0, 1.0], [2, 2]);
    // [B=2, C=2, H=1, W=2]: batch 0 channel 0 = [3, −2], channel 1 = [4, 5]; batch 1 = [2, 2], [0, 0].
    let fl = t4(vec![3.0, -2.0, 4.0, 5.0, 2.0, 2.0, 0.0, 0.0], [2, 2, 1, 2]);
    let got = host(orthogonal_component(fg.clone(), fl.clone()));
    let want = [0.0, 0.0, 4.0, 5.0, 1.0, 1.0, -1.0, -1.0];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?}");
    }
    // fo = GAP(orth): batch 0 → (0, 4.5), batch 1 → (1, −1).
    let fo = host(fuse_local(Fusion::Orthogonal, fg, fl));
    for (g, w) in fo.iter().zip([0.0, 4.5, 1.0, -1.0]) {
        assert!((g - w).abs() < 1e-6, "{fo:?}");
    }
}

#[test]
fn fusion_ablations_follow_their_definitions() {
    let mut rng = Rng(99);
    for (b, c, h, w) in SHAPES {
        let hw = h * w;
        let fg = rng.vec(b * c, -1.0, 1.0);
        let fl = rng.vec(b * c * hw, -1.0, 1.0);
        // GAP(fl) in f64.
        let gap_fl: Vec<f64> = (0..b * c).map(|bc| fl[bc * hw..(bc + 1) * hw].iter().map(|&v| f64::from(v)).sum::<f64>() / hw as f64).collect();
        let run = |f| host(fuse_local(f, t2(fg.clone(), [b, c]), t4(fl.clone(), [b, c, h, w])));

        let concat = run(Fusion::Concat);
        let hadamard = run(Fusion::Hadamard);
        let orth = run(Fusion::Orthogonal);
        assert_eq!(concat.len(), b * c);
        for i in 0..b * c {
            assert!((f64::from(concat[i]) - gap_fl[i]).abs() < 1e-5, "concat[{i}]");
            assert!((f64::from(hadamard[i]) - f64::from(fg[i]) * gap_fl[i]).abs() < 1e-5, "hadamard[{i}]");
        }
        // Orthogonal: GAP is linear, so fo = GAP(fl) − (fg·GAP(fl))/|fg|² fg, and fo ⊥ fg.
        for bi in 0..b {
            let g: Vec<f64> = fg[bi * c..(bi + 1) * c].iter().map(|&v| f64::from(v)).collect();
            let m = &gap_fl[bi * c..(bi + 1) * c];
            let k = dot(&g, m) / dot(&g, &g);
            for j in 0..c {
                let want = m[j] - k * g[j];
                assert!((f64::from(orth[bi * c + j]) - want).abs() < 1e-5, "orth fo b{bi} c{j}: {} vs {want}", orth[bi * c + j]);
            }
            let o: Vec<f64> = orth[bi * c..(bi + 1) * c].iter().map(|&v| f64::from(v)).collect();
            assert!(dot(&g, &o).abs() <= 1e-4 * norm(&g) * norm(&o));
        }
    }
}

fn gem(p: f32) -> GeM {
    GeM { p: Param::from_tensor(Tensor::from_data(TensorData::new(vec![p], [1]), &Device::flex())) }
}

/// mean_hw(clamp(x, 1e-6)^p)^(1/p) per (b, c), in f64.
fn gem_reference(x: &[f32], bc: usize, hw: usize, p: f64) -> Vec<f64> {
    (0..bc)
        .map(|i| {
            let m = x[i * hw..(i + 1) * hw].iter().map(|&v| f64::from(v).max(1e-6).powf(p)).sum::<f64>() / hw as f64;
            m.powf(1.0 / p)
        })
        .collect()
}

#[test]
fn gem_with_p_one_is_average_pooling() {
    let mut rng = Rng(7);
    let (b, c, h, w) = (2, 16, 5, 7);
    let x = rng.vec(b * c * h * w, 0.01, 5.0);
    let got = host(gem(1.0).forward(t4(x.clone(), [b, c, h, w])));
    let avg = host(gap(t4(x.clone(), [b, c, h, w])));
    let mean_ref = gem_reference(&x, b * c, h * w, 1.0);
    for i in 0..b * c {
        assert!((got[i] - avg[i]).abs() <= 1e-5 * avg[i].abs().max(1.0), "GeM(p=1) {} vs GAP {}", got[i], avg[i]);
        assert!((f64::from(avg[i]) - mean_ref[i]).abs() < 1e-5, "GAP vs f64 mean");
    }
}

#[test]
fn gem_matches_its_formula_and_approaches_max_for_large_p() {
    let mut rng = Rng(11);
    let (b, c, h, w) = (2, 8, 4, 4);
    let hw = h * w;
    // Include values at and below zero: GeM clamps them to 1e-6 first.
    let mut x = rng.vec(b * c * hw, 0.1, 4.0);
    x[0] = 0.0;
    x[5] = -3.0;
    let xt = || t4(x.clone(), [b, c, h, w]);
    for p in [2.75f32, 3.0] {
        let got = host(gem(p).forward(xt()));
        let want = gem_reference(&x, b * c, hw, f64::from(p));
        for i in 0..b * c {
            assert!((f64::from(got[i]) - want[i]).abs() <= 1e-5 * want[i], "p={p} [{i}]: {} vs {}", got[i], want[i]);
        }
    }
    // p = 50: max·n^(−1/p) ≤ GeM ≤ max (n = 16 positions), and close to the f64 formula.
    let got = host(gem(50.0).forward(xt()));
    let want = gem_reference(&x, b * c, hw, 50.0);
    let avg = host(gap(xt()));
    for i in 0..b * c {
        let max = x[i * hw..(i + 1) * hw].iter().copied().fold(f32::MIN, f32::max);
        let lo = f64::from(max) * (hw as f64).powf(-1.0 / 50.0);
        let g = f64::from(got[i]);
        assert!(g <= f64::from(max) * (1.0 + 1e-5) && g >= lo * (1.0 - 1e-5), "[{i}] GeM50 {g} not in [{lo}, {max}]");
        assert!((g - want[i]).abs() <= 1e-4 * want[i], "[{i}] GeM50 {g} vs f64 {}", want[i]);
        assert!(g > f64::from(avg[i]), "GeM with large p must exceed the mean");
    }
}

#[test]
fn normalised_vectors_have_unit_norm_and_zero_stays_finite() {
    let mut rng = Rng(2024);
    for scale in [1e-8f32, 1e-3, 1.0, 1e3, 1e8] {
        for d in [1usize, 3, 512, 2048] {
            let mut v = rng.vec(d, -scale, scale);
            let orig = v.clone();
            l2_normalize(&mut v);
            let n = norm32(&v);
            assert!((n - 1.0).abs() <= 1e-6, "scale {scale} dim {d}: norm {n}");
            // Direction unchanged: v = orig / |orig|.
            let on = norm32(&orig);
            for (a, o) in v.iter().zip(&orig) {
                assert!((f64::from(*a) - f64::from(*o) / on).abs() <= 1e-6);
            }
        }
    }
    let mut z = vec![0f32; 512];
    l2_normalize(&mut z);
    assert!(z.iter().all(|v| *v == 0.0), "zero vector stays zero (eps 1e-12), no NaN");

    // combine_scales: unit norm, the normalised mean of the inputs.
    for k in [1usize, 2, 5] {
        let per: Vec<Vec<f32>> = (0..k)
            .map(|_| {
                let mut v = rng.vec(512, -1.0, 1.0);
                l2_normalize(&mut v);
                v
            })
            .collect();
        let c = combine_scales(&per);
        assert!((norm32(&c) - 1.0).abs() <= 1e-6, "k={k}");
        let mean: Vec<f64> = (0..512).map(|j| per.iter().map(|v| f64::from(v[j])).sum::<f64>() / k as f64).collect();
        let mn = norm(&mean);
        for j in 0..512 {
            assert!((f64::from(c[j]) - mean[j] / mn).abs() <= 1e-6);
        }
        if k == 1 {
            assert!(crate::common::max_abs_diff(&c, &per[0]) <= 1e-7, "one scale: combine is the identity");
        }
    }
    // Opposite unit vectors cancel: the result is the zero vector, finite.
    let mut u = rng.vec(512, -1.0, 1.0);
    l2_normalize(&mut u);
    let neg: Vec<f32> = u.iter().map(|v| -v).collect();
    let c = combine_scales(&[u, neg]);
    assert!(c.iter().all(|v| v.is_finite() && *v == 0.0));
    let c = combine_scales(&[vec![0.0; 8], vec![0.0; 8]]);
    assert!(c.iter().all(|v| v.is_finite() && *v == 0.0));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn real_model_descriptors_have_unit_norm() {
    let shared = crate::common::shared_dir();
    let fx = shared.join("fixtures/dolg-r50-random");
    let device = Device::flex();
    let ck = dolg::checkpoint::Checkpoint::open(&fx.join("dolg_r50_random_noaspp.pyth.gz")).unwrap();
    let (model, config) = dolg::model::Dolg::load(&ck, None, Fusion::Orthogonal, dolg::model::BatchNorm::Fold, &device).unwrap();
    let model = dolg::model::RetrievalModel::Dolg(model, config);
    let ex = dolg::descriptors::Extractor::new(model, device, dolg::preprocess::DEFAULT_SCALES.to_vec());
    let d = ex.describe_file(&fx.join("input_lab.png"), None).unwrap();
    assert_eq!(d.per_scale.len(), 5);
    for (i, v) in d.per_scale.iter().enumerate() {
        assert_eq!(v.len(), 512);
        assert!(v.iter().all(|x| x.is_finite()));
        let n = norm32(v);
        assert!((n - 1.0).abs() <= 1e-6, "scale {i}: norm {n}");
    }
    let n = norm32(&d.descriptor);
    assert!((n - 1.0).abs() <= 1e-6, "final: norm {n}");
    // The raw network output is not unit-norm by itself, so the normalisation is doing the work.
    let inputs = ex.prepare(&fx.join("input_lab.png"), None).unwrap();
    let raw = ex.raw(&inputs.inputs[3]);
    assert!((norm32(&raw) - 1.0).abs() > 1e-3, "raw norm {}", norm32(&raw));
    // ... and its direction is the per-scale descriptor's.
    assert!(crate::common::cosine(&raw, &d.per_scale[3]) > 0.999999);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn describe_many_stops_when_asked_and_keeps_per_image_crops() {
    let shared = crate::common::shared_dir();
    let fx = shared.join("fixtures/dolg-r50-random");
    let device = Device::flex();
    let ck = dolg::checkpoint::Checkpoint::open(&fx.join("dolg_r50_random_noaspp.pyth.gz")).unwrap();
    let model = dolg::model::RetrievalModel::dolg(&ck, None, Fusion::Orthogonal, &device).unwrap();
    let ex = dolg::descriptors::Extractor::new(model, device, vec![0.25]);
    let paths: Vec<std::path::PathBuf> = ["input_lab.png", "input_church.png", "input_kremlin.png", "input_building.png"].iter().map(|n| fx.join(n)).collect();
    let mut seen = Vec::new();
    let r = ex.describe_many_cropped(&paths, &|_| None, |i, _, _| {
        seen.push(i);
        if i == 1 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    assert_eq!(seen, [0, 1]);
    assert_eq!(r.len(), 2);
    // A crop for one image only changes that image's descriptor.
    let crop = dolg::preprocess::CropBox([0.0, 0.0, 60.0, 60.0]);
    let full = ex.describe_many(&paths[..2], None, |_, _, _| {});
    let cropped = ex.describe_many_cropped(&paths[..2], &|i| (i == 1).then_some(crop), |_, _, _| std::ops::ControlFlow::Continue(()));
    assert_eq!(full[0].as_ref().unwrap(), cropped[0].as_ref().unwrap());
    assert_ne!(full[1].as_ref().unwrap(), cropped[1].as_ref().unwrap());
    assert_eq!(cropped[1].as_ref().unwrap(), &ex.describe_file(&paths[1], Some(crop)).unwrap().descriptor);
}
