//! `dolg extract` as a long, interruptible, splittable job: a run killed after a shard is durable
//! (`DOLG_FAILPOINT=extract-shard:K`) and resumed with `--resume` ends with the bytes of an
//! uninterrupted run and describes only what was left; resuming with other inputs or options is
//! refused; `--shard I/N` parts joined by `dolg merge` equal the unsharded output; progress lines
//! appear when stderr is not a terminal.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::shared_dir;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");

/// The photos used (small landmark photos), in sorted order, and an empty file among them.
const PHOTOS: [&str; 8] = [
    "distractor_01.jpg",
    "distractor_02.jpg",
    "distractor_04.jpg",
    "distractor_17.jpg",
    "distractor_18.jpg",
    "lg-building_1.jpg",
    "lg-building_2.jpg",
    "wxbs-berlin_1.jpg",
];
/// Sorts third: position 2, in shard 1 with --shard-rows 2.
const EMPTY: &str = "distractor_03_empty.jpg";

fn weights() -> PathBuf {
    shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")
}

/// A folder with the 8 photos and the empty file: 9 inputs, 8 of them describable.
fn image_folder(dir: &Path) -> PathBuf {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    for p in PHOTOS {
        std::fs::copy(src.join(p), imgs.join(p)).unwrap();
    }
    std::fs::write(imgs.join(EMPTY), b"").unwrap();
    imgs
}

fn dolg_env<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    let t = std::time::Instant::now();
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").env_remove("DOLG_FAILPOINT").env_remove("DOLG_PROGRESS_SECONDS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run dolg");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    eprintln!("dolg {shown:?} {env:?}: {:?} in {:.1?}", out.status, t.elapsed());
    out
}

fn dolg<S: AsRef<OsStr>>(args: &[S]) -> Output {
    dolg_env(args, &[])
}

/// `extract -w W --scales 1.0 --threads 2` + `extra`.
fn extract_args(extra: &[&OsStr]) -> Vec<std::ffi::OsString> {
    let w = weights();
    let mut v: Vec<std::ffi::OsString> = ["extract", "--weights"].iter().map(Into::into).collect();
    v.push(w.into());
    v.extend(["--scales", "1.0", "--threads", "2"].iter().map(Into::into));
    v.extend(extra.iter().map(|s| s.to_os_string()));
    v
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(OsStr::new($a)),*] };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr)))
}

fn names(npy: &Path) -> Vec<String> {
    std::fs::read_to_string(dolg::descriptors::names_path(npy)).unwrap().lines().map(str::to_owned).collect()
}

fn rows(npy: &Path) -> Vec<Vec<f32>> {
    let (data, n, d) = dolg::descriptors::read_matrix(npy).unwrap();
    assert_eq!(data.len(), n * d);
    data.chunks(d).map(<[f32]>::to_vec).collect()
}

fn assert_same_files(a: &Path, b: &Path) {
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} and {} differ", a.display(), b.display());
    let (na, nb) = (dolg::descriptors::names_path(a), dolg::descriptors::names_path(b));
    assert_eq!(std::fs::read_to_string(&na).unwrap(), std::fs::read_to_string(&nb).unwrap(), "{} and {} differ", na.display(), nb.display());
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn a_killed_run_resumes_and_ends_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = image_folder(tmp.path());
    let full = tmp.path().join("full.npy");
    let o = dolg(&extract_args(os!["--shard-rows", "2", "--json", "-o", &full, &imgs]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s = json(&o);
    assert_eq!((s["images"].as_u64(), s["extracted"].as_u64(), s["described"].as_u64(), s["resumed"].as_u64()), (Some(9), Some(8), Some(9), Some(0)));
    assert!(!dolg::shards::shard_folder(&full).exists(), "the shard folder is removed at the end");
    assert_eq!(names(&full).len(), 8);

    // Killed right after shard 1 (inputs 2 and 3, the empty file among them) is durable.
    let out = tmp.path().join("out.npy");
    let args = extract_args(os!["--shard-rows", "2", "--json", "-o", &out, &imgs]);
    let o = dolg_env(&args, &[("DOLG_FAILPOINT", "extract-shard:1")]);
    assert!(!o.status.success(), "the failpoint aborts the run");
    assert!(text(&o.stderr).contains("DOLG_FAILPOINT=extract-shard:1: aborting"), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("warning: skipped: {}", imgs.join(EMPTY).display())), "{}", text(&o.stderr));
    let shards = dolg::shards::shard_folder(&out);
    assert!(shards.join("progress.json").exists() && shards.join("shard-000001.npy").exists());
    assert!(!shards.join("shard-000002.npy").exists(), "nothing after the failpoint");
    assert!(!out.exists(), "no output before the end");

    // Without --resume the folder is an error that says what to do.
    let o = dolg(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&shards.display().to_string()) && err.contains("--resume") && err.contains("remove"), "{err}");

    // --resume describes the 5 remaining inputs only; the failure recorded by the killed run is
    // reported again, not retried.
    let mut resume = args.clone();
    resume.push("--resume".into());
    let o = dolg(&resume);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s = json(&o);
    assert_eq!((s["images"].as_u64(), s["resumed"].as_u64(), s["described"].as_u64(), s["extracted"].as_u64()), (Some(9), Some(4), Some(5), Some(8)), "{s:#}");
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{s:#}");
    assert_eq!(failed[0]["path"], imgs.join(EMPTY).display().to_string());
    assert!(failed[0]["error"].as_str().unwrap().contains("empty file"), "{s:#}");
    assert!(!text(&o.stderr).contains("warning: skipped"), "the failed input is not retried:\n{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("4 of 9 inputs already done"), "{}", text(&o.stderr));
    assert_same_files(&out, &full);
    assert!(!shards.exists());

    // --resume with no shard folder left is an ordinary run; a finished run leaves nothing to resume.
    let o = dolg(&resume);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(json(&o)["resumed"].as_u64(), Some(0));
    assert_same_files(&out, &full);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn resume_is_refused_with_other_inputs_model_or_options() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = image_folder(tmp.path());
    let out = tmp.path().join("out.npy");
    let o = dolg_env(&extract_args(os!["--shard-rows", "2", "-o", &out, &imgs]), &[("DOLG_FAILPOINT", "extract-shard:0")]);
    assert!(!o.status.success());
    let shards = dolg::shards::shard_folder(&out);
    let progress = std::fs::read(shards.join("progress.json")).unwrap();

    let refused = |extra: &[&OsStr], want: &str| {
        let mut args = extract_args(os!["--resume", "-o", &out]);
        args.extend(extra.iter().map(|s| s.to_os_string()));
        let o = dolg(&args);
        assert_eq!(o.status.code(), Some(1), "{:?}: {}", extra, text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains("cannot resume") && err.contains(want), "{extra:?}: expected {want:?} in\n{err}");
        // The interrupted run's record is untouched.
        assert_eq!(std::fs::read(shards.join("progress.json")).unwrap(), progress);
    };
    // Other inputs: one photo fewer, or the same files in another order.
    refused(os!["--shard-rows", "2", "--exclude", "lg-*", &imgs], "the input list changed");
    let mut reordered: Vec<&OsStr> = vec![OsStr::new("--shard-rows"), OsStr::new("2")];
    let files: Vec<PathBuf> = std::iter::once(imgs.join(PHOTOS[1])).chain(std::iter::once(imgs.join(PHOTOS[0]))).collect();
    reordered.extend(files.iter().map(|p| p.as_os_str()));
    refused(&reordered, "the input list changed");
    // Other options.
    refused(os!["--shard-rows", "2", "--crop", "0,0,100,100", &imgs], "option crop");
    refused(os!["--shard-rows", "2", "--max-side", "5000", &imgs], "option max_side");
    refused(os!["--shard-rows", "3", &imgs], "--shard-rows");
    refused(os!["--shard-rows", "2", "--shard", "1/2", &imgs], "the part (--shard)");
    // Another model: other scales (part of the fingerprint), or another checkpoint.
    let mut other_scales = vec![OsStr::new("--scales"), OsStr::new("0.5")];
    other_scales.extend(os!["--shard-rows", "2"]);
    other_scales.push(imgs.as_os_str());
    refused(&other_scales, "option scales");
    let other = shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_aspp.pyth.gz");
    let mut args: Vec<std::ffi::OsString> = ["extract", "--weights"].iter().map(Into::into).collect();
    args.push(other.into());
    args.extend(["--scales", "1.0", "--threads", "2", "--resume", "--shard-rows", "2", "-o"].iter().map(Into::into));
    args.push(out.clone().into());
    args.push(imgs.clone().into());
    let o = dolg(&args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot resume") && err.contains("the model"), "{err}");
    assert!(shards.exists());

    // The original settings resume.
    let o = dolg(&extract_args(os!["--resume", "--shard-rows", "2", "--json", "-o", &out, &imgs]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s = json(&o);
    assert_eq!((s["resumed"].as_u64(), s["described"].as_u64()), (Some(2), Some(7)));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn three_parts_merged_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = image_folder(tmp.path());
    let whole = tmp.path().join("whole.npy");
    let o = dolg(&extract_args(os!["-o", &whole, &imgs]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let parts: Vec<PathBuf> = (1..=3).map(|i| tmp.path().join(format!("part{i}.npy"))).collect();
    for (i, part) in (1..=3).zip(&parts) {
        let o = dolg(&extract_args(os!["--shard", &format!("{i}/3"), "--shard-rows", "2", "--json", "-o", part, &imgs]));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let s = json(&o);
        // Round robin over 9 inputs: 3 each; the empty file (position 2) is in part 3.
        assert_eq!((s["images"].as_u64(), s["inputs"].as_u64(), s["shard"].as_str()), (Some(3), Some(9), Some(format!("{i}/3").as_str())));
        assert_eq!(s["extracted"].as_u64(), Some(if i == 3 { 2 } else { 3 }));
        assert!(dolg::shards::part_record_path(part).exists());
        let want: Vec<String> = (0..9).filter(|p| p % 3 == i - 1).map(|p| all_names(&imgs)[p].clone()).filter(|n| !n.ends_with(EMPTY)).collect();
        assert_eq!(names(part), want, "part {i} holds its inputs in order");
    }

    let merged = tmp.path().join("merged.npy");
    let o = dolg(&[OsStr::new("merge"), OsStr::new("--json"), merged.as_os_str(), parts[2].as_os_str(), parts[0].as_os_str(), parts[1].as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s = json(&o);
    assert_eq!((s["inputs"].as_u64(), s["rows"].as_u64(), s["parts"].as_u64()), (Some(9), Some(8), Some(3)));
    assert_eq!(s["failed"][0]["path"], imgs.join(EMPTY).display().to_string());
    // Row for row, name for name, the unsharded output (and so byte for byte).
    assert_eq!(names(&merged), names(&whole));
    let (m, w) = (rows(&merged), rows(&whole));
    assert_eq!(m.len(), 8);
    for (i, (a, b)) in m.iter().zip(&w).enumerate() {
        assert!(a == b, "row {i} differs");
    }
    assert_same_files(&merged, &whole);

    // Parts missing, or from another run, are refused.
    let o = dolg(&[OsStr::new("merge"), merged.as_os_str(), parts[0].as_os_str(), parts[1].as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("3/3 missing"), "{}", text(&o.stderr));
    let other = tmp.path().join("other.npy");
    let o = dolg(&extract_args(os!["--shard", "3/3", "--crop", "0,0,300,300", "-o", &other, &imgs]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = dolg(&[OsStr::new("merge"), merged.as_os_str(), parts[0].as_os_str(), parts[1].as_os_str(), other.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not parts of the same run") && text(&o.stderr).contains("option crop"), "{}", text(&o.stderr));
    // The whole run's output has no part record.
    let o = dolg(&[OsStr::new("merge"), merged.as_os_str(), whole.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("whole.part.json not found"), "{}", text(&o.stderr));
}

/// The 9 inputs as `dolg extract` lists the folder.
fn all_names(imgs: &Path) -> Vec<String> {
    let mut v: Vec<&str> = PHOTOS.iter().copied().chain([EMPTY]).collect();
    v.sort();
    v.iter().map(|n| imgs.join(n).display().to_string()).collect()
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn progress_lines_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let out = tmp.path().join("p.npy");
    let (a, b) = (src.join(PHOTOS[0]), src.join(PHOTOS[1]));
    // The test's stderr pipe is not a terminal; interval 0: a line after every image.
    let o = dolg_env(&extract_args(os!["-o", &out, &a, &b]), &[("DOLG_PROGRESS_SECONDS", "0")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("extract: ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("extract: 1/2 (50.0%), ") && lines[0].contains("/s, ETA "), "{err}");
    assert!(lines[1].starts_with("extract: 2/2 (100.0%), ") && lines[1].ends_with("ETA 0s"), "{err}");
    // At the default interval (5 s) this short run prints none.
    let o = dolg(&extract_args(os!["-o", &out, &a]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("extract: "), "{}", text(&o.stderr));
}
