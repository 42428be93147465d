//! Checkpoint loading beyond the happy path, on the random-weight fixture
//! `../shared/fixtures/dolg-r50-random` (variant A `dolg_r50_random_noaspp.pyth.gz`, variant B
//! `dolg_r50_random_aspp.pyth.gz`):
//! * a safetensors copy written with `write_safetensors` reproduces the fixture descriptor;
//! * edited safetensors files fail with the precise `CheckpointError` (missing key + expected
//!   shape, shape mismatch, unexpected keys), while the ignored keys (`desc_cls.*`,
//!   `num_batches_tracked`) are accepted;
//! * an `--arch` override that does not fit the file fails naming the first absent key;
//! * the architecture is detected from the keys (variant A: no multi-atrous, variant B: official);
//! * damaged files of every kind are errors that name the file, never panics.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use burn::tensor::Device;
use dolg::checkpoint::{write_safetensors, Checkpoint, CheckpointError, Format, NamedTensor};
use dolg::descriptors::Extractor;
use dolg::model::{Arch, AsppKind, BackboneKind, BatchNorm, Dolg, DolgConfig, Fusion, ModelError, Pooling, RetrievalModel};
use dolg::preprocess::{Normalization, DEFAULT_SCALES};

const R50: BackboneKind = BackboneKind::ResNet([3, 4, 6, 3]);

fn fixture() -> PathBuf {
    shared_dir().join("fixtures/dolg-r50-random")
}

fn variant_a(fx: &Path) -> PathBuf {
    fx.join("dolg_r50_random_noaspp.pyth.gz")
}

/// Every tensor of variant A except the BatchNorm step counters, read once per test binary.
fn variant_a_tensors(fx: &Path) -> &'static [NamedTensor] {
    static CELL: OnceLock<Vec<NamedTensor>> = OnceLock::new();
    CELL.get_or_init(|| {
        let ck = Checkpoint::open(&variant_a(fx)).unwrap();
        assert_eq!(ck.format(), Format::TorchLegacy);
        ck.named_tensors(|k| Some(k.to_owned())).unwrap()
    })
}

fn write_st(path: &Path, tensors: &[NamedTensor]) {
    write_safetensors(path, tensors, BTreeMap::from([("format".to_owned(), "pt".to_owned())])).unwrap();
}

/// Load with the defaults the CLI uses (orthogonal fusion, BN folded, CPU).
fn load(path: &Path, arch: Option<Arch>) -> Result<(Dolg, DolgConfig), ModelError> {
    let ck = Checkpoint::open(path)?;
    Dolg::load(&ck, arch, Fusion::Orthogonal, BatchNorm::Fold, &Device::flex())
}

fn checkpoint_err(r: Result<(Dolg, DolgConfig), ModelError>) -> CheckpointError {
    match r {
        Err(ModelError::Checkpoint(e)) => e,
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(_) => panic!("expected a checkpoint error, but the model loaded"),
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn safetensors_copy_reproduces_the_fixture_descriptor() {
    let fx = fixture();
    let tensors = variant_a_tensors(&fx);
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("a.safetensors");
    write_st(&st, tensors);

    let ck = Checkpoint::open(&st).unwrap();
    assert_eq!(ck.format(), Format::Safetensors);
    assert_eq!(ck.keys().count(), tensors.len());
    assert!(!ck.keys().any(|k| k.ends_with("num_batches_tracked")));
    // The written values are the legacy checkpoint's, bit for bit.
    let p = ck.read_f32("pool_g.p").unwrap();
    assert_eq!(p, vec![2.75], "GeM exponent stored in the fixture");

    let device = Device::flex();
    let (model, config) = Dolg::load(&ck, None, Fusion::Orthogonal, BatchNorm::Fold, &device).unwrap();
    assert_eq!(config.backbone, R50);
    assert_eq!(config.aspp, None);
    assert_eq!(config.out_dim, 512);
    let ex = Extractor::new(RetrievalModel::Dolg(model, config), device, DEFAULT_SCALES.to_vec());
    assert_eq!(ex.norm, Normalization::DOLG, "the R50 DOLG weights take BGR input");
    let got = ex.describe_file(&fx.join("input_lab.png"), None).unwrap();
    let (shape, want) = read_npy_f32(&fx.join("noaspp/lab_desc.npy"));
    assert_eq!(shape, vec![512]);
    let (c, m) = (cosine(&got.descriptor, &want), max_abs_diff(&got.descriptor, &want));
    eprintln!("safetensors lab: cosine {c:.9}, max abs diff {m:.2e}");
    assert!(c >= 0.99999 && m <= 1e-5, "cosine {c}, max abs diff {m:.2e}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn missing_key_is_reported_with_its_expected_shape() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    // (key removed, shape the model expects for it: from the ResNet-50 / DOLG layout)
    for (key, expected) in [
        ("globalmodel.s3.b2.f.b.weight", vec![256, 256, 3, 3]),
        ("globalmodel.s4.b1.bn.running_var", vec![2048]),
        ("localmodel.conv2.bias", vec![1]),
        ("pool_g.p", vec![]), // see below: not an error
        ("fc.weight", vec![512, 2048]),
    ] {
        let tensors: Vec<NamedTensor> = variant_a_tensors(&fx).iter().filter(|t| t.name != key).cloned().collect();
        let path = dir.path().join(format!("missing-{key}.safetensors"));
        write_st(&path, &tensors);
        let r = load(&path, None);
        if key == "pool_g.p" {
            // Without `pool_g.p` the checkpoint is read as the GAP ablation (documented detection rule);
            // the load succeeds and says so.
            let (_, cfg) = r.unwrap_or_else(|e| panic!("without pool_g.p: {e}"));
            assert_eq!(cfg.pooling, Pooling::Gap);
            continue;
        }
        let e = checkpoint_err(r);
        let msg = e.to_string();
        match e {
            CheckpointError::Missing { path: p, key: k, expected: x } => {
                assert_eq!(k, key);
                assert_eq!(x, expected, "{key}");
                assert_eq!(p, path);
            }
            other => panic!("{key}: expected Missing, got {other}"),
        }
        assert!(msg.contains(key) && msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{expected:?}")), "message should give the expected shape: {msg}");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn wrong_shape_is_reported_with_both_shapes() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    // (key, new shape with the same number of elements, shape the model expects)
    for (key, found, expected) in [
        ("fc_t.bias", vec![32, 32], vec![1024]),
        ("globalmodel.stem.conv.weight", vec![64, 3, 49, 1], vec![64, 3, 7, 7]),
        ("localmodel.conv1.weight", vec![1024, 1024], vec![1024, 1024, 1, 1]),
        // fc.weight sets the descriptor width (out_dim = its first dimension), so only its
        // input width is checked: [256, 4096] is read as a 256-d head whose input should be 2048.
        ("fc.weight", vec![256, 4096], vec![256, 2048]),
    ] {
        let tensors: Vec<NamedTensor> = variant_a_tensors(&fx)
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if t.name == key {
                    assert_eq!(t.shape.iter().product::<usize>(), found.iter().product::<usize>());
                    t.shape = found.clone();
                }
                t
            })
            .collect();
        let path = dir.path().join(format!("shape-{key}.safetensors"));
        write_st(&path, &tensors);
        let e = checkpoint_err(load(&path, None));
        let msg = e.to_string();
        match e {
            CheckpointError::ShapeMismatch { key: k, expected: x, found: f, .. } => {
                assert_eq!((k.as_str(), &x, &f), (key, &expected, &found));
            }
            other => panic!("{key}: expected ShapeMismatch, got {other}"),
        }
        assert!(msg.contains(key) && msg.contains(&format!("{found:?}")) && msg.contains(&format!("{expected:?}")), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

/// `fc_t.weight` stored transposed ([2048, 1024] instead of [1024, 2048]): its input width fits
/// no backbone, and the error must name `fc_t.weight` itself, not a tensor sized from it.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn transposed_fc_t_weight_is_reported_on_fc_t() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let tensors: Vec<NamedTensor> = variant_a_tensors(&fx)
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.name == "fc_t.weight" {
                t.shape = vec![2048, 1024];
            }
            t
        })
        .collect();
    let path = dir.path().join("fc_t-transposed.safetensors");
    write_st(&path, &tensors);
    match checkpoint_err(load(&path, None)) {
        CheckpointError::ShapeMismatch { key, expected, found, .. } => {
            assert_eq!((key.as_str(), expected, found), ("fc_t.weight", vec![1024, 2048], vec![2048, 1024]));
        }
        other => panic!("expected a shape error on fc_t.weight, got {other}"),
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn unexpected_keys_are_listed_and_ignored_keys_accepted() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let base = variant_a_tensors(&fx);
    // The base list already carries the training head (desc_cls.weight [10, 512], desc_cls.t [1]).
    assert!(base.iter().any(|t| t.name == "desc_cls.weight" && t.shape == [10, 512]));

    let mut extra = base.to_vec();
    extra.push(NamedTensor { name: "foo.bar".into(), shape: vec![3], data: vec![1.0, 2.0, 3.0] });
    extra.push(NamedTensor { name: "localmodel.extra.weight".into(), shape: vec![2, 2], data: vec![0.0; 4] });
    let path = dir.path().join("extra.safetensors");
    write_st(&path, &extra);
    let e = checkpoint_err(load(&path, None));
    let msg = e.to_string();
    match e {
        CheckpointError::Unexpected { keys, .. } => {
            assert_eq!(keys, vec![("foo.bar".to_owned(), vec![3]), ("localmodel.extra.weight".to_owned(), vec![2, 2])]);
        }
        other => panic!("expected Unexpected, got {other}"),
    }
    assert!(msg.contains("2 unexpected key(s)") && msg.contains("'foo.bar' [3]"), "{msg}");

    // Ignored keys: an extra desc_cls tensor plus int64 num_batches_tracked scalars, exactly as
    // PyTorch stores them (written with the safetensors crate, since write_safetensors is f32-only).
    let mut bytes: Vec<(String, Vec<u8>, safetensors::Dtype, Vec<usize>)> =
        base.iter().map(|t| (t.name.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), safetensors::Dtype::F32, t.shape.clone())).collect();
    bytes.push(("desc_cls.bias".into(), [0f32; 10].iter().flat_map(|v| v.to_le_bytes()).collect(), safetensors::Dtype::F32, vec![10]));
    for k in ["globalmodel.stem.bn.num_batches_tracked", "localmodel.bn.num_batches_tracked"] {
        bytes.push((k.into(), 1000i64.to_le_bytes().to_vec(), safetensors::Dtype::I64, vec![]));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        bytes.iter().map(|(n, b, d, s)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let path = dir.path().join("ignored.safetensors");
    safetensors::serialize_to_file(views, None::<HashMap<String, String>>, &path).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert!(ck.contains("globalmodel.stem.bn.num_batches_tracked"));
    // The non-float counter is refused if someone asks for it...
    assert!(matches!(ck.read_f32("localmodel.bn.num_batches_tracked"), Err(CheckpointError::Dtype { .. })));
    // ...but the model never does, and finish() does not count it as unexpected.
    let (_, cfg) = Dolg::load(&ck, None, Fusion::Orthogonal, BatchNorm::Fold, &Device::flex()).unwrap_or_else(|e| panic!("ignored keys: {e}"));
    assert_eq!(cfg.out_dim, 512);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn arch_override_that_does_not_fit_names_the_absent_key() {
    let fx = fixture();
    let a = variant_a(&fx);
    // ResNet-101 has 23 blocks in stage 3; the R50 file stops at b6.
    match checkpoint_err(load(&a, Some(Arch::R101))) {
        CheckpointError::Missing { key, expected, path } => {
            assert!(key.starts_with("globalmodel.s3.b7."), "{key}");
            assert_eq!(key, "globalmodel.s3.b7.f.a.weight");
            assert_eq!(expected, vec![256, 1024, 1, 1]);
            assert_eq!(path, a);
        }
        other => panic!("R101 override: expected Missing, got {other}"),
    }
    // The multi-atrous variant needs localmodel.aspp.*, which variant A lacks.
    let e = checkpoint_err(load(&a, Some(Arch::R50Ma)));
    let msg = e.to_string();
    match e {
        CheckpointError::Missing { key, .. } => assert!(key.starts_with("localmodel.aspp."), "{key}"),
        other => panic!("R50Ma override: expected Missing, got {other}"),
    }
    assert!(msg.contains("localmodel.aspp.") && msg.contains(&a.display().to_string()), "{msg}");
    // The matching override loads.
    let (_, cfg) = load(&a, Some(Arch::R50)).unwrap();
    assert_eq!((cfg.backbone, cfg.aspp), (R50, None));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn architecture_is_detected_from_the_keys() {
    let fx = fixture();
    let a = Checkpoint::open(&variant_a(&fx)).unwrap();
    let cfg_a = DolgConfig::detect(&a).unwrap();
    assert_eq!(cfg_a.backbone, R50);
    assert_eq!(cfg_a.fg_dim, 1024);
    assert_eq!(cfg_a.aspp, None);
    assert!(cfg_a.local);
    assert_eq!(cfg_a.pooling, Pooling::Gem);
    assert_eq!(cfg_a.out_dim, 512);
    assert_eq!(cfg_a.name(), "DOLG-R50");

    let b = Checkpoint::open(&fx.join("dolg_r50_random_aspp.pyth.gz")).unwrap();
    assert_eq!(b.format(), Format::TorchLegacy);
    // The fixture README: variant B has exactly 12 extra keys localmodel.aspp.*.
    assert_eq!(b.keys().filter(|k| k.starts_with("localmodel.aspp.")).count(), 12);
    assert_eq!(b.keys().count(), a.keys().count() + 12);
    let cfg_b = DolgConfig::detect(&b).unwrap();
    assert_eq!(cfg_b.backbone, R50);
    assert_eq!(cfg_b.aspp, Some(AsppKind::Official));
    assert_eq!(cfg_b.name(), "DOLG-R50+MA");
    // Dolg::load agrees with detect and consumes every key.
    let (model, cfg) = Dolg::load(&b, None, Fusion::Orthogonal, BatchNorm::Fold, &Device::flex()).unwrap();
    assert_eq!(cfg.aspp, Some(AsppKind::Official));
    let aspp = model.localmodel.as_ref().unwrap().aspp.as_ref().expect("multi-atrous module loaded");
    assert_eq!(aspp.aspp.len(), 4);
    assert!(aspp.im_pool.is_some());
}

/// Tiny deterministic PRNG (xorshift64*) for garbage bytes.
fn garbage(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn damaged_files_are_errors_naming_the_file_never_panics() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The legacy checkpoint as torch.save wrote it (the fixture is only gzip-compressed).
    let gz_bytes = std::fs::read(variant_a(&fx)).unwrap();
    let mut legacy = Vec::new();
    flate2::read::GzDecoder::new(&gz_bytes[..]).read_to_end(&mut legacy).unwrap();
    assert_eq!(&legacy[..4], &[0x80, 0x02, 0x8a, 0x0a], "legacy torch.save magic");
    // Positive control: the complete decompressed file opens as the legacy format and loads.
    let full = d.join("full.pyth");
    std::fs::write(&full, &legacy).unwrap();
    let ck = Checkpoint::open(&full).unwrap();
    assert_eq!(ck.format(), Format::TorchLegacy);
    Dolg::load(&ck, None, Fusion::Orthogonal, BatchNorm::Fold, &Device::flex()).unwrap();

    let mut st_bytes = {
        let path = d.join("good.safetensors");
        write_st(&path, &variant_a_tensors(&fx)[..20]);
        std::fs::read(path).unwrap()
    };
    st_bytes.truncate(st_bytes.len() / 2);

    let mut pickle_garbage = vec![0x80];
    pickle_garbage.extend(garbage(4096, 3));
    let mut zip_garbage = b"PK\x03\x04".to_vec();
    zip_garbage.extend(garbage(4096, 4));
    let mut gzip_magic_garbage = vec![0x1f, 0x8b];
    gzip_magic_garbage.extend(garbage(4096, 5));
    let mut fake_st_header = 50u64.to_le_bytes().to_vec(); // header length 50, then not JSON
    fake_st_header.extend(b"{ this is not json at all, sorry }                ");

    let mut random = garbage(65536, 1);
    random[0] = 0x42; // keep it from starting with a recognised magic by chance

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("legacy_first_1MB.pyth", legacy[..1 << 20].to_vec()),
        ("legacy_first_100B.pyth", legacy[..100].to_vec()),
        ("legacy_all_but_last_byte.pyth", legacy[..legacy.len() - 1].to_vec()),
        ("empty.pyth", Vec::new()),
        ("text.pyth", b"model_state = {'fc.weight': [1, 2, 3]}\nnot a checkpoint\n".repeat(20)),
        ("random.bin", random),
        ("pickle_magic_then_garbage.pyth", pickle_garbage),
        ("zip_magic_then_garbage.pyth", zip_garbage),
        ("truncated.safetensors", st_bytes),
        ("bad_header.safetensors", fake_st_header),
        ("garbage.pyth.gz", gzip(&garbage(100_000, 2))),
        ("gzip_magic_then_garbage.gz", gzip_magic_garbage),
        ("truncated_gzip.pyth.gz", gz_bytes[..1 << 20].to_vec()),
        ("gzip_of_empty.gz", gzip(b"")),
    ];
    let mut failures = Vec::new();
    for (name, bytes) in cases {
        let path = d.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let ck = Checkpoint::open(&path).map_err(|e| format!("open: {e}"))?;
            Dolg::load(&ck, None, Fusion::Orthogonal, BatchNorm::Fold, &Device::flex()).map(|_| ()).map_err(|e| format!("load: {e}"))
        }));
        match outcome {
            Err(_) => failures.push(format!("{name}: PANICKED")),
            Ok(Ok(())) => failures.push(format!("{name}: loaded successfully")),
            Ok(Err(msg)) => {
                eprintln!("{name}: {msg}");
                if !msg.contains(&path.display().to_string()) {
                    failures.push(format!("{name}: error does not name the file: {msg}"));
                }
            }
        }
    }
    // A missing file is an Io error naming it.
    let missing = d.join("does-not-exist.pyth");
    match Checkpoint::open(&missing) {
        Err(e @ CheckpointError::Io { .. }) => assert!(e.to_string().contains(&missing.display().to_string())),
        other => failures.push(format!("missing file: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
