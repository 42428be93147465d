//! DELG ([`dolg::model::delg`]) against the authors' extraction on the random-weight fixture
//! `../shared/fixtures/delg-r50-random`, made by `tools/holdout/make_delg_fixture.py --seed 1`
//! with the official `tools/extractor.py::delg_extract`. Tolerances are the fixture README's:
//! global rows cosine ≥ 0.99999 and max |Δ| ≤ 1e-5; the identical kept set of (scale, row, col),
//! in order up to swaps of neighbours whose scores differ by < 1e-5 (relative); scores relative
//! ≤ 1e-4, descriptors ≤ 1e-5, locations ≤ 1e-3 px; halvings and thresholds exact, counts before
//! NMS exact up to `uncertain_positions_at_used_threshold`; attention logits ≤ 0.02 where the
//! attention exceeds 1e-3 (the local feature map: see `check_detail`). NMS and the threshold loop also have hand-worked cases here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use burn::tensor::Device;
use dolg::checkpoint::{Checkpoint, CheckpointError};
use dolg::decode::{decode_file, DecodeLimits};
use dolg::model::delg::{nms, select_by_attention, Delg, DelgOutput};
use dolg::model::ModelError;
use dolg::preprocess::{multiscale_inputs, FloatImage, Normalization};

fn fixture() -> PathBuf {
    shared_dir().join("fixtures/delg-r50-random")
}

fn expected(fx: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fx.join("expected.json")).unwrap()).unwrap()
}

fn read_npy_i32(path: &Path) -> Vec<i32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<i32>().unwrap()
}

fn image(fx: &Path, name: &str) -> FloatImage {
    FloatImage::from(&decode_file(&fx.join(format!("input_{name}.png")), &DecodeLimits::default()).unwrap())
}

fn check_global(what: &str, got: &[f32], want: &[f32]) {
    let (c, m) = (cosine(got, want), max_abs_diff(got, want));
    eprintln!("{what}: cosine {c:.9}, max abs diff {m:.2e}");
    assert!(c >= 0.99999 && m <= 1e-5, "{what}: cosine {c:.8}, max abs diff {m:.2e}");
}

/// Inverse of torch's softplus (β 1, threshold 20), in f64.
fn logit(a: f32) -> f64 {
    let a = f64::from(a);
    if a > 20.0 {
        a
    } else {
        a.exp_m1().ln()
    }
}

fn check_image(delg: &Delg, fx: &Path, name: &str, info: &serde_json::Value, out: &DelgOutput) {
    let (_, want) = read_npy_f32(&fx.join(format!("{name}_global.npy")));
    check_global(&format!("{name} global"), &out.global, &want);
    let (shape, rows) = read_npy_f32(&fx.join(format!("{name}_global_scales.npy")));
    assert_eq!(shape, vec![delg.params.scales.len(), delg.global_dim()]);
    for ((row, got), s) in rows.chunks(shape[1]).zip(&out.global_per_scale).zip(&delg.params.scales) {
        check_global(&format!("{name} global at {s}"), got, row);
    }

    for (got, want) in out.per_scale.iter().zip(info["per_scale"].as_array().unwrap()) {
        let what = format!("{name} scale {}", got.scale);
        assert_eq!(got.scale, want["scale"].as_f64().unwrap(), "{what}");
        let f3_hw: Vec<usize> = want["f3_hw"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(got.f3_hw.to_vec(), f3_hw, "{what}: f3 size");
        assert_eq!(u64::from(got.halvings), want["halvings"].as_u64().unwrap(), "{what}: halvings");
        assert_eq!(f64::from(got.threshold), want["threshold_used"].as_f64().unwrap(), "{what}: threshold");
        let (n, slack) = (want["selected_before_nms"].as_u64().unwrap(), want["uncertain_positions_at_used_threshold"].as_u64().unwrap());
        assert!((got.selected as u64).abs_diff(n) <= slack, "{what}: {} selected before NMS, fixture {n} (± {slack})", got.selected);
    }

    let l = &out.local;
    assert!(l.is_consistent() && l.dim == delg.local_dim());
    let (_, scores) = read_npy_f32(&fx.join(format!("{name}_scores.npy")));
    let (_, scales) = read_npy_f32(&fx.join(format!("{name}_feature_scales.npy")));
    let (_, locations) = read_npy_f32(&fx.join(format!("{name}_locations.npy")));
    let (_, descriptors) = read_npy_f32(&fx.join(format!("{name}_descriptors.npy")));
    let rowcol = read_npy_i32(&fx.join(format!("{name}_feature_rowcol.npy")));
    assert_eq!(l.len(), scores.len(), "{name}: number of local features");
    // A feature's identity: its scale and position on that scale's stride-16 map.
    let ours: HashMap<(u32, i32, i32), usize> = (0..l.len())
        .map(|i| {
            let s = l.scales[i];
            let [r, c] = l.locations[i].map(|v| (v * s / 16.0).round() as i32);
            ((s.to_bits(), r, c), i)
        })
        .collect();
    assert_eq!(ours.len(), l.len(), "{name}: duplicate features");
    let (mut swaps, mut worst) = (0, [0f64; 3]);
    for k in 0..scores.len() {
        let id = (scales[k].to_bits(), rowcol[2 * k], rowcol[2 * k + 1]);
        let m = *ours.get(&id).unwrap_or_else(|| panic!("{name}: fixture feature {k} {id:?} is not in our kept set"));
        if m != k {
            let close = (f64::from(scores[k]) - f64::from(scores[m])).abs() / f64::from(scores[k]);
            // Two neighbours may trade places when their scores are closer than the two errors
            // allowed below (1e-4 relative each): a float32 summation order apart from PyTorch's.
            assert!(m.abs_diff(k) == 1 && close < 2e-4, "{name}: fixture feature {k} is our {m} (scores {} vs {})", scores[k], scores[m]);
            swaps += 1;
        }
        let rel = (f64::from(l.scores[m]) - f64::from(scores[k])).abs() / f64::from(scores[k]);
        let desc = max_abs_diff(l.descriptor(m), &descriptors[k * l.dim..(k + 1) * l.dim]);
        let loc = max_abs_diff(&l.locations[m], &locations[2 * k..2 * k + 2]);
        worst = [worst[0].max(rel), worst[1].max(desc), worst[2].max(loc)];
    }
    eprintln!(
        "{name}: {} local features, {swaps} neighbour swaps; max score rel {:.2e}, descriptor abs {:.2e}, location {:.2e} px",
        l.len(),
        worst[0],
        worst[1],
        worst[2]
    );
    assert!(worst[0] <= 1e-4 && worst[1] <= 1e-5 && worst[2] <= 1e-3, "{name}: score/descriptor/location errors {worst:?}");
}

/// The attention maps at every scale, and the local feature map and `f3` at scale 1.0.
fn check_detail(delg: &Delg, fx: &Path, name: &str, img: &FloatImage, out: &DelgOutput) {
    for sel in &out.per_scale {
        let (shape, want) = read_npy_f32(&fx.join(format!("{name}_att_s{:?}.npy", sel.scale)));
        assert_eq!(shape, vec![1, 1, sel.f3_hw[0], sel.f3_hw[1]], "{name} attention at {}", sel.scale);
        let m = sel.attention.iter().zip(&want).filter(|(_, w)| **w > 1e-3).map(|(g, w)| (logit(*g) - logit(*w)).abs()).fold(0.0, f64::max);
        eprintln!("{name} attention at {}: max logit diff {m:.2e}", sel.scale);
        assert!(m <= 0.02, "{name} attention at {}: max logit diff {m:.2e}", sel.scale);
    }
    let input = multiscale_inputs(img, &[1.0], &Normalization::DOLG).unwrap().remove(0);
    let s = delg.forward_scale(&input);
    let (shape, want) = read_npy_f32(&fx.join(format!("{name}_s1.0_localfeat.npy")));
    assert_eq!(shape, vec![1, delg.local_dim(), s.height, s.width]);
    // The README asks for abs ≤ 1e-5 on this map, but its values reach ~200 and the attention
    // that scales them is only reproducible to ~1e-3 (its own float64 recomputation differs by
    // 2.3e-3): the raw map is checked relatively, its normalised columns (the
    // descriptors) at 1e-5 where the attention exceeds 1e-3.
    let r = rel_err(&s.local_feature, &want);
    let (hw, dim) = (s.height * s.width, delg.local_dim());
    let (_, att) = read_npy_f32(&fx.join(format!("{name}_att_s1.0.npy")));
    let unit = |m: &[f32], i: usize| -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|c| m[c * hw + i]).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    // Where the attention underflows (down to 1e-38) the map is denormal and its direction lost.
    let m = (0..hw).filter(|&i| att[i] > 1e-3).map(|i| max_abs_diff(&unit(&s.local_feature, i), &unit(&want, i))).fold(0.0, f64::max);
    eprintln!("{name} local feature map at 1.0: relative error {r:.2e}, normalised max abs diff {m:.2e}");
    assert!(r <= 1e-4 && m <= 1e-5, "{name} local feature map: relative error {r:.2e}, normalised max abs diff {m:.2e}");
    let (_, f3_mean) = read_npy_f32(&fx.join(format!("{name}_s1.0_f3_mean.npy")));
    let got = s.f3.mean_dim(3).mean_dim(2).into_data().try_into_vec::<f32>().unwrap();
    let r = rel_err(&got, &f3_mean);
    eprintln!("{name} f3 mean: relative error {r:.2e}");
    assert!(r <= 1e-4, "f3 mean: relative error {r:.2e}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn delg_extraction_matches_the_authors() {
    let fx = fixture();
    let exp = expected(&fx);
    let delg = Delg::load(&Checkpoint::open(&fx.join("delg_r50_random.pyth.gz")).unwrap(), &Device::flex()).unwrap();
    assert_eq!(delg.name(), "DELG-R50");
    let scales: Vec<f64> = exp["scale_list"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(delg.params.scales, scales);
    let global: Vec<f64> = exp["global_scales"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(delg.params.global_scales, global);
    let detail = exp["detail"]["image"].as_str().unwrap();
    for (name, info) in exp["images"].as_object().unwrap() {
        let img = image(&fx, name);
        let t = std::time::Instant::now();
        let out = delg.extract(&img).unwrap();
        eprintln!("{name} ({}x{}): extracted in {:.2} s on {} threads", img.width, img.height, t.elapsed().as_secs_f64(), rayon::current_num_threads());
        check_image(&delg, &fx, name, info, &out);
        if name == detail {
            check_detail(&delg, &fx, name, &img, &out);
        }
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn nms_matches_the_synthetic_reference() {
    let case = &expected(&fixture())["nms_synthetic"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
    let boxes: Vec<[f32; 4]> = case["boxes_ymin_xmin_ymax_xmax"].as_array().unwrap().iter().map(|b| [0, 1, 2, 3].map(|i| f(&b[i]))).collect();
    let scores: Vec<f32> = case["scores"].as_array().unwrap().iter().map(f).collect();
    let count = case["count"].as_u64().unwrap() as usize;
    let want: Vec<usize> = case["keep_full"].as_array().unwrap()[..count].iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(nms(&boxes, &scores, f(&case["overlap"]), case["top_k"].as_u64().unwrap() as usize), want);
}

#[test]
fn nms_keeps_an_iou_equal_to_the_threshold_and_cuts_to_top_k_first() {
    // IoU(a, b) = 2450 / 2500, which is float32(0.98) exactly: kept. IoU(a, c) = 2500 / 2525: dropped.
    let boxes = [[0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 49.0, 50.0], [0.0, 0.0, 50.0, 50.5], [100.0, 100.0, 150.0, 150.0]];
    let scores = [0.9, 0.8, 0.85, 0.1];
    assert_eq!(nms(&boxes, &scores, 0.98, 4), vec![0, 1, 3]);
    // The cut comes before suppression: d is gone although c, above it, was suppressed.
    assert_eq!(nms(&boxes, &scores, 0.98, 3), vec![0, 1]);
    assert_eq!(nms(&boxes, &scores, 0.97, 4), vec![0, 3]);
    assert_eq!(nms(&[], &[], 0.98, 10), Vec::<usize>::new());
}

#[test]
fn attention_selection_halves_until_enough_or_exhausted() {
    // The last threshold tried: 260 / 2^11 (0.126953125); halved once more it would fall below 0.1.
    const LAST: f32 = 260.0 / 2048.0;
    // One position above every threshold: the loop runs down to 260 / 2^11 and keeps it (the
    // authors' code raises on a one-element selection that does not end the loop, quirk 2).
    assert_eq!(select_by_attention(&[300.0, 0.0, 0.0], 260.0, 1000), (vec![0], 11, LAST));
    // A single position passing only the last threshold.
    assert_eq!(select_by_attention(&[0.12, 0.13, 0.0], 260.0, 1000), (vec![1], 11, LAST));
    // Strict >: 1000 positions at exactly 260 pass only once halved to 130, which ends the loop.
    let mut att = vec![260.0; 1000];
    att.push(129.0);
    let (sel, halvings, t) = select_by_attention(&att, 260.0, 1000);
    assert_eq!((sel.len(), halvings, t), (1000, 1, 130.0));
    assert_eq!(select_by_attention(&[0.0; 4], 260.0, 1000), (vec![], 11, LAST));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn loading_names_missing_and_unknown_keys_and_rejects_dolg() {
    let fx = fixture();
    let ck = Checkpoint::open(&fx.join("delg_r50_random.pyth.gz")).unwrap();
    let device = Device::flex();
    let without = Checkpoint::from_tensors("no-conv2-bias", ck.named_tensors(|k| (k != "localmodel.conv2.bias").then(|| k.to_owned())).unwrap());
    let err = Delg::load(&without, &device).unwrap_err();
    assert!(matches!(&err, ModelError::Checkpoint(CheckpointError::Missing { key, .. }) if key == "localmodel.conv2.bias"), "{err}");
    let mut tensors = ck.named_tensors(|k| Some(k.to_owned())).unwrap();
    tensors.push(dolg::checkpoint::NamedTensor { name: "localmodel.extra".into(), shape: vec![1], data: vec![0.0] });
    let err = Delg::load(&Checkpoint::from_tensors("extra", tensors), &device).unwrap_err();
    assert!(matches!(&err, ModelError::Checkpoint(CheckpointError::Unexpected { keys, .. }) if keys.len() == 1 && keys[0].0 == "localmodel.extra"), "{err}");
    let dolg_ck = Checkpoint::open(&shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")).unwrap();
    assert!(!Delg::is_delg(&dolg_ck));
    assert!(matches!(Delg::load(&dolg_ck, &device), Err(ModelError::UnknownArch { .. })));
}
