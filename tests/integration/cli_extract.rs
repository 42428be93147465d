//! The `dolg` binary end to end: `extract` on good and hostile inputs, its outputs (.npy, names
//! file, JSON summary, exit status), `--scales`, `--crop`, `convert`, and the help texts
//! (resuming and `--shard` are tested in extract_resume.rs).
//! Descriptors are checked against the authors' fixture outputs (variant A).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");

struct Paths {
    fixture: PathBuf,
    weights: PathBuf,
    bad: PathBuf,
    lab: PathBuf,
}

fn paths() -> Paths {
    let shared = shared_dir();
    let fixture = shared.join("fixtures/dolg-r50-random");
    Paths { weights: fixture.join("dolg_r50_random_noaspp.pyth.gz"), lab: fixture.join("input_lab.png"), bad: shared.join("data/bad-inputs"), fixture }
}

fn dolg(args: &[&std::ffi::OsStr]) -> Output {
    let t = std::time::Instant::now();
    let out = Command::new(BIN).args(args).env_remove("RUST_LOG").output().expect("run dolg");
    eprintln!("dolg {:?}: {:?} in {:.1?}", args, out.status.code(), t.elapsed());
    out
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Rows of a float32 [N, D] .npy.
fn rows(npy: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(npy).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(f.dtype().descr(), "'<f4'", "descriptors are little-endian float32");
    let shape: Vec<usize> = f.shape().iter().map(|&s| s as usize).collect();
    assert_eq!(shape.len(), 2);
    let data = f.into_vec::<f32>().unwrap();
    data.chunks(shape[1].max(1)).map(<[f32]>::to_vec).take(shape[0]).collect()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect()
}

fn assert_desc(what: &str, got: &[f32], want: &[f32]) {
    let (c, m) = (cosine(got, want), max_abs_diff(got, want));
    eprintln!("{what}: cosine {c:.9}, max abs diff {m:.2e}");
    assert!(c >= 0.99999 && m <= 1e-5, "{what}: cosine {c}, max abs diff {m:.2e}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn extract_good_and_bad_inputs_json_npy_and_names() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d.npy");
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--json", &p.lab, &p.bad]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&o.stdout)));

    // Inputs: the lab image, then the 9 image files of bad-inputs (README.md is not an image
    // extension), sorted. Decodable: grey, rgba and truncated.jpg (the JPEG decoder recovers
    // the first 40% and fills the rest), plus lab = 4. Failing: bomb and huge_dims (TooLarge),
    // corrupt_stream (Corrupt), empty (Empty), not_an_image (UnknownFormat), tiny_1x1 (too small
    // for scale 0.3535) = 6.
    let bad = |n: &str| p.bad.join(n).display().to_string();
    let expected_inputs: Vec<String> = std::iter::once(p.lab.display().to_string())
        .chain(
            [
                "bomb_60000x60000.png",
                "corrupt_stream.png",
                "empty.jpg",
                "grey.png",
                "huge_dims.jpg",
                "not_an_image.png",
                "rgba.png",
                "tiny_1x1.png",
                "truncated.jpg",
            ]
            .map(bad),
        )
        .collect();
    assert_eq!(summary["images"], 10);
    assert_eq!(summary["extracted"], 4, "{summary:#}");
    assert_eq!(summary["dim"], 512);
    assert_eq!(summary["model"], "DOLG-R50");
    assert_eq!(summary["output"], out.display().to_string());
    assert_eq!(summary["names"], tmp.path().join("d.names.txt").display().to_string());
    let scales: Vec<f64> = summary["scales"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    #[allow(clippy::approx_constant)] // the authors' literal scales, not 1/sqrt(2) and sqrt(2)
    let authors = vec![0.3535, 0.5, 0.7071, 1.0, 1.4142];
    assert_eq!(scales, authors);

    let failed = summary["failed"].as_array().unwrap();
    let failed_paths: Vec<&str> = failed.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let want_failed: Vec<String> =
        ["bomb_60000x60000.png", "corrupt_stream.png", "empty.jpg", "huge_dims.jpg", "not_an_image.png", "tiny_1x1.png"].map(bad).to_vec();
    assert_eq!(failed_paths, want_failed, "failed entries in input order");
    for f in failed {
        let (path, err) = (f["path"].as_str().unwrap(), f["error"].as_str().unwrap());
        assert!(err.contains(path), "error should name the file: {err}");
        // The same message is on stderr as a warning.
        assert!(stderr.contains(&format!("warning: skipped: {err}")), "stderr lacks the warning for {path}");
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        let expect = match name {
            "bomb_60000x60000.png" => "60000x60000",
            "huge_dims.jpg" => "65500x65500",
            "empty.jpg" => "empty file",
            "not_an_image.png" => "not a recognised image",
            "corrupt_stream.png" => "corrupt",
            "tiny_1x1.png" => "too small for scale 0.3535",
            other => panic!("unexpected failure {other}"),
        };
        assert!(err.contains(expect), "{name}: {err}");
    }

    // d.npy: float32 [4, 512], rows in input order, matching the names file line by line.
    let names = lines(&tmp.path().join("d.names.txt"));
    let want_names: Vec<String> = expected_inputs.iter().filter(|n| !want_failed.contains(n)).cloned().collect();
    assert_eq!(names, want_names);
    assert_eq!(names[0], p.lab.display().to_string(), "the file argument came first");
    let r = rows(&out);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|v| v.len() == 512));
    for (n, v) in names.iter().zip(&r) {
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{n}: norm {norm}");
    }
    let (_, lab) = read_npy_f32(&p.fixture.join("noaspp/lab_desc.npy"));
    assert_desc("cli lab row", &r[0], &lab);
    // The other rows are other images: not the lab descriptor, and not each other.
    for i in 1..4 {
        assert!(cosine(&r[i], &lab) < 0.999, "row {i} looks like the lab image");
        for j in i + 1..4 {
            assert!(max_abs_diff(&r[i], &r[j]) > 1e-3, "rows {i} and {j} are identical");
        }
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn directory_first_puts_its_images_first() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    // Only the cheap-to-reject and tiny inputs plus lab, at one scale, to keep this fast.
    let dir = tmp.path().join("imgs");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(p.bad.join("grey.png"), dir.join("b_grey.png")).unwrap();
    std::fs::copy(p.bad.join("empty.jpg"), dir.join("a_empty.jpg")).unwrap();
    std::fs::copy(p.bad.join("rgba.png"), dir.join("sub/c_rgba.PNG")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image extension: never listed").unwrap();
    let out = tmp.path().join("x.npy");
    let o = dolg(os!["extract", "-w", &p.weights, "-o", &out, "--threads", "2", "--scales", "1.0", &dir, &p.lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let names = lines(&tmp.path().join("x.names.txt"));
    // Recursive walk, sorted by path; failing a_empty.jpg is skipped; lab comes last.
    assert_eq!(names, vec![dir.join("b_grey.png").display().to_string(), dir.join("sub/c_rgba.PNG").display().to_string(), p.lab.display().to_string()]);
    let r = rows(&out);
    assert_eq!(r.len(), 3);
    // Single scale 1.0: the lab row is the fixture's per-scale descriptor at scale 1.0 (row 3).
    let (shape, scales) = read_npy_f32(&p.fixture.join("noaspp/lab_scales.npy"));
    assert_eq!(shape, vec![5, 512]);
    assert_desc("lab at scale 1.0", &r[2], &scales[3 * 512..4 * 512]);
    // Without --json the summary goes to stderr, stdout stays empty.
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("3 descriptors"), "{}", text(&o.stderr));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn strict_exits_3_when_an_image_fails_but_still_writes_the_rest() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.npy");
    let o = dolg(os![
        "extract",
        "--weights",
        &p.weights,
        "--out",
        &out,
        "--threads",
        "2",
        "--scales",
        "1.0",
        "--strict",
        "--json",
        &p.lab,
        &p.bad.join("empty.jpg")
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["extracted"].as_u64()), (Some(2), Some(1)));
    assert_eq!(rows(&out).len(), 1);
    // --strict with nothing failing is a success.
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--scales", "1.0", "--strict", &p.lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Both CPU paths of the native trunk reproduce the authors' per-scale descriptors: the AVX-512
/// implicit-GEMM kernel (where the CPU has it) and the portable `gemm` crate path, forced with
/// `--cpu-kernels portable` (what a CPU without AVX-512 runs), at two scales with a stride-2 remainder.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn avx512_and_portable_paths_both_match_the_fixture() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let (_, scales) = read_npy_f32(&p.fixture.join("noaspp/lab_scales.npy"));
    for portable in [false, true] {
        let out = tmp.path().join(format!("{portable}.npy"));
        let mut cmd = Command::new(BIN);
        cmd.args(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--scales", "0.7071,1.4142", &p.lab]).env_remove("RUST_LOG");
        if portable {
            cmd.args(["--cpu-kernels", "portable"]);
        }
        let o = cmd.output().expect("run dolg");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let got = rows(&out).remove(0);
        let want = dolg::descriptors::combine_scales(&[scales[2 * 512..3 * 512].to_vec(), scales[4 * 512..5 * 512].to_vec()]);
        assert_desc(if portable { "portable path" } else { "AVX-512 path" }, &got, &want);
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn scales_option_changes_the_descriptor() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("one.npy");
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--scales", "1.0", "--json", &p.lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["scales"], serde_json::json!([1.0]));
    let one = rows(&out).remove(0);
    let (_, five) = read_npy_f32(&p.fixture.join("noaspp/lab_desc.npy"));
    let (_, scales) = read_npy_f32(&p.fixture.join("noaspp/lab_scales.npy"));
    assert_desc("--scales 1.0", &one, &scales[3 * 512..4 * 512]);
    let m = max_abs_diff(&one, &five);
    assert!(m > 1e-3, "--scales 1.0 should differ from the 5-scale descriptor (max abs diff {m:.2e})");
    // Two scales: the normalised mean of the fixture's per-scale rows for 0.5 and 1.0.
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--scales", "0.5,1.0", &p.lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let two = rows(&out).remove(0);
    let want = dolg::descriptors::combine_scales(&[scales[512..1024].to_vec(), scales[3 * 512..4 * 512].to_vec()]);
    assert_desc("--scales 0.5,1.0", &two, &want);
    // Invalid scales are refused up front (the model spec is checked before any image is read),
    // not silently used; the previous output stays as it was.
    let before = std::fs::read(&out).unwrap();
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--scales", "0", "--strict", &p.lab]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("scale 0 is not a positive, finite number"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn crop_reproduces_the_fixture_query_descriptor() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q.npy");
    let o =
        dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--threads", "2", "--crop", "20.7,33.6,445.9,370.8", &p.fixture.join("input_kremlin.png")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r = rows(&out);
    assert_eq!(r.len(), 1);
    let (_, want) = read_npy_f32(&p.fixture.join("noaspp/kremlin_crop_desc.npy"));
    assert_desc("--crop kremlin", &r[0], &want);
    // A malformed box is a usage error (clap: status 2) that explains the format.
    let o = dolg(os!["extract", "--weights", &p.weights, "--out", &out, "--crop", "1,2,3", &p.lab]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("x1,y1,x2,y2"), "{}", text(&o.stderr));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn converted_safetensors_gives_the_same_descriptor() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("w.safetensors");
    let o = dolg(os!["convert", &p.weights, &st]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // The file: every model tensor plus the training head, as f32, without the BN counters.
    let bytes = std::fs::read(&st).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let info = meta.metadata().as_ref().unwrap();
    assert_eq!(info.get("dolg.arch").map(String::as_str), Some("DOLG-R50"));
    let f = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = f.names().into_iter().map(str::to_owned).collect();
    assert!(!names.iter().any(|n| n.ends_with("num_batches_tracked")));
    assert!(names.iter().any(|n| n == "desc_cls.weight"));
    assert!(f.tensors().iter().all(|(_, v)| v.dtype() == safetensors::Dtype::F32));
    let pg = f.tensor("pool_g.p").unwrap();
    assert_eq!(pg.data(), &2.75f32.to_le_bytes());

    let out = tmp.path().join("d.npy");
    let o = dolg(os!["extract", "--weights", &st, "--out", &out, "--threads", "2", &p.lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (_, lab) = read_npy_f32(&p.fixture.join("noaspp/lab_desc.npy"));
    assert_desc("safetensors via CLI", &rows(&out)[0], &lab);

    // inspect reads the same architecture from both files.
    for (w, format) in [(&p.weights, "PyTorch (legacy serialization)"), (&st, "safetensors")] {
        let o = dolg(os!["inspect", "--json", w]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!((v["model"].as_str(), v["multi_atrous"].as_bool(), v["descriptor_dim"].as_u64()), (Some("DOLG-R50"), Some(false), Some(512)));
        assert_eq!((v["backbone"].as_str(), v["format"].as_str()), (Some("R50"), Some(format)));
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn missing_or_bad_weights_exit_1_naming_the_path() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d.npy");
    let missing = tmp.path().join("no-such-weights.pyth");
    let o = dolg(os!["extract", "--weights", &missing, "--out", &out, &p.lab]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("error:") && err.contains(&missing.display().to_string()), "{err}");
    assert!(!out.exists(), "no output file on a fatal error");
    // An image passed as weights: also status 1 with the path.
    let o = dolg(os!["extract", "--weights", &p.lab, "--out", &out, &p.lab]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(&p.lab.display().to_string()), "{}", text(&o.stderr));
}

/// `--device`: an unknown name, and `cuda` in this (default, CPU-only) build, are status 1 with
/// what to do; nothing is written. (The `cuda` build's own message, which names the missing
/// driver and cuDNN, is checked by scripts/cuda_build_check.sh in the test suite.)
#[test]
fn devices_this_build_lacks_are_refused_with_what_to_do() {
    let p = paths();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d.npy");
    let o = dolg(os!["extract", "--weights", &p.weights, "--device", "tpu", "--out", &out, &p.lab]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("unknown device 'tpu': use cpu or cuda[:N]"), "{}", text(&o.stderr));
    let o = dolg(os!["extract", "--weights", &p.weights, "--device", "cuda", "--out", &out, &p.lab]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("no CUDA support") && err.contains("--features cuda") && err.contains("install_cuda_runtime.sh"), "{err}");
    let o = dolg(os!["extract", "--weights", &p.weights, "--device", "cuda:x", "--out", &out, &p.lab]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("bad CUDA device 'cuda:x'"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

#[test]
fn help_texts_document_threads_and_strict() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let top = text(&o.stdout);
    for cmd in ["extract", "convert", "inspect", "eval"] {
        assert!(top.contains(cmd), "top-level help lacks {cmd}:\n{top}");
    }
    assert!(top.contains("--strict"), "the exit-status paragraph mentions --strict:\n{top}");
    let o = Command::new(BIN).args(["extract", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let h = text(&o.stdout);
    for flag in [
        "--threads",
        "--strict",
        "--weights",
        "--out",
        "--scales",
        "--crop",
        "--json",
        "--max-side",
        "--resume",
        "--shard",
        "--shard-rows",
        "--files-from",
        "--exclude",
        "--follow-links",
        "--include-hidden",
        "DOLG_PROGRESS_SECONDS",
        "dolg merge",
    ] {
        assert!(h.contains(flag), "extract --help lacks {flag}:\n{h}");
    }
    let o = Command::new(BIN).args(["merge", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("--shard I/N"), "{}", text(&o.stdout));
    // No subcommand is a usage error.
    let o = Command::new(BIN).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
