//! Descriptor files and their names files are written as one consistent pair, through the durable
//! file layer (`dolg::atomic_file`): a crash between the steps (simulated with the
//! `DOLG_FAILPOINT` abort, in a child process that is this test binary itself) leaves a reader the
//! old pair, the new pair, or a `.npy` with no names file — never a mismatched pair; and readers
//! reject a names file whose count does not match the rows, naming both files.

use std::path::{Path, PathBuf};
use std::process::Command;

use dolg::atomic_file::{FAILPOINTS, FAIL_PAIR_COMPANION_REMOVED, FAIL_PAIR_MAIN_RENAMED};
use dolg::descriptors::{names_path, read_matrix, read_matrix_with_names, read_names, write_descriptors, write_npy};

const CHILD_DIR: &str = "DOLG_DURABLE_FILES_CHILD_DIR";
const CHILD_TEST: &str = "child_writes_new_pair";

fn old_rows() -> (Vec<Vec<f32>>, Vec<String>) {
    ((0..3).map(|i| vec![i as f32, 1.0]).collect(), (0..3).map(|i| format!("old/{i}.jpg")).collect())
}

fn new_rows() -> (Vec<Vec<f32>>, Vec<String>) {
    ((0..5).map(|i| vec![10.0 + i as f32, 2.0]).collect(), (0..5).map(|i| format!("new/{i}.jpg")).collect())
}

/// Not a test of its own: the child process's body. Without the environment variable it does
/// nothing (so a plain `cargo test` passes it).
#[test]
fn child_writes_new_pair() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let (rows, names) = new_rows();
    write_descriptors(&PathBuf::from(dir).join("x.npy"), &rows, 2, Some(&names)).unwrap();
}

/// Write the old pair, then run the child writing the new pair with `failpoint` set; return
/// whether the child exited normally.
fn crash_while_replacing(dir: &Path, failpoint: Option<&str>) -> bool {
    let (rows, names) = old_rows();
    write_descriptors(&dir.join("x.npy"), &rows, 2, Some(&names)).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", &crate::common::this_test(module_path!(), CHILD_TEST), "--nocapture", "--test-threads=1"]).env(CHILD_DIR, dir);
    match failpoint {
        Some(f) => cmd.env("DOLG_FAILPOINT", f),
        None => cmd.env_remove("DOLG_FAILPOINT"),
    };
    let out = cmd.output().unwrap();
    eprintln!("child with failpoint {failpoint:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    if failpoint.is_some() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "the child must abort at the failpoint");
    }
    out.status.success()
}

/// What a reader finds: Ok((rows, names)) for a consistent pair, Err(message) otherwise.
fn reader_sees(dir: &Path) -> Result<(Vec<f32>, Vec<String>), String> {
    read_matrix_with_names(&dir.join("x.npy")).map(|(data, _, _, names)| (data, names)).map_err(|e| e.to_string())
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.retain(|n| n != "x.npy" && n != "x.names.txt");
    v
}

#[test]
fn a_crash_at_any_step_never_leaves_a_mismatched_pair() {
    assert_eq!(FAILPOINTS, [FAIL_PAIR_COMPANION_REMOVED, FAIL_PAIR_MAIN_RENAMED]);
    let (old, _) = old_rows();
    let (new, new_names) = new_rows();
    let (old, new): (Vec<f32>, Vec<f32>) = (old.concat(), new.concat());

    // No crash: the new pair, and no temporary files.
    let dir = tempfile::tempdir().unwrap();
    assert!(crash_while_replacing(dir.path(), None));
    assert_eq!(reader_sees(dir.path()), Ok((new.clone(), new_names.clone())));
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    // Crash after the old names file was removed: the old .npy, alone.
    let dir = tempfile::tempdir().unwrap();
    assert!(!crash_while_replacing(dir.path(), Some(FAIL_PAIR_COMPANION_REMOVED)));
    let npy = dir.path().join("x.npy");
    assert_eq!(read_matrix(&npy).unwrap().0, old);
    assert!(!names_path(&npy).exists());

    // Crash between the renames: the new .npy, alone.
    let dir = tempfile::tempdir().unwrap();
    assert!(!crash_while_replacing(dir.path(), Some(FAIL_PAIR_MAIN_RENAMED)));
    let npy = dir.path().join("x.npy");
    assert_eq!(read_matrix(&npy).unwrap().0, new);
    let err = reader_sees(dir.path()).unwrap_err();
    let np = names_path(&npy);
    assert!(err.contains(&np.display().to_string()) && err.contains("not found"), "{err}");
    assert_eq!(read_names(&npy).unwrap_err().to_string(), err);
    // A crash may leave the crashed call's temporary files (never read); only those.
    assert!(leftovers(dir.path()).iter().all(|n| n.starts_with(".tmp")), "{:?}", leftovers(dir.path()));

    // The next successful write replaces everything.
    write_descriptors(&npy, &[vec![7.0, 7.0]], 2, Some(&["z.jpg".to_owned()])).unwrap();
    assert_eq!(reader_sees(dir.path()), Ok((vec![7.0, 7.0], vec!["z.jpg".to_owned()])));
}

#[test]
fn names_count_must_match_rows_and_both_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    let (rows, names) = old_rows();
    write_descriptors(&npy, &rows, 2, Some(&names)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&npy, &names_path(&npy)] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o644, "{}", p.display());
        }
    }
    // A names file from elsewhere, one name short.
    std::fs::write(names_path(&npy), "a.jpg\nb.jpg\n").unwrap();
    let err = read_matrix_with_names(&npy).unwrap_err().to_string();
    assert!(err.contains(&npy.display().to_string()) && err.contains(&names_path(&npy).display().to_string()), "{err}");
    assert!(err.contains("3 rows") && err.contains("2 names"), "{err}");

    // The CLI reader of a pair (`eval groups --db`) says the same.
    std::fs::write(dir.path().join("g.csv"), "image,group\na.jpg,1\nb.jpg,1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dolg"))
        .args(["eval", "groups", "--groups"])
        .arg(dir.path().join("g.csv"))
        .arg("--images")
        .arg(dir.path())
        .arg("--db")
        .arg(&npy)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&npy.display().to_string()) && stderr.contains(&names_path(&npy).display().to_string()), "{stderr}");

    // Writing without names removes a stale names file instead of leaving it beside new rows.
    write_descriptors(&npy, &rows, 2, None).unwrap();
    assert!(!names_path(&npy).exists());
    // Writing rows and a names list that disagree is refused, and leaves the files as they were.
    let e = write_descriptors(&npy, &rows, 2, Some(&names[..2])).unwrap_err().to_string();
    assert!(e.contains("2 names for 3 rows"), "{e}");
    assert_eq!(read_matrix(&npy).unwrap().1, 3);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "x.npy and g.csv only");
}

#[test]
fn write_npy_streams_any_dtype_and_refuses_a_wrong_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ids.npy");
    write_npy(&p, &[2, 3], (0..6i64).map(|i| i - 1)).unwrap();
    let f = npyz::NpyFile::new(std::fs::File::open(&p).unwrap()).unwrap();
    assert_eq!(f.dtype().descr(), "'<i8'");
    assert_eq!(f.shape(), &[2, 3]);
    assert_eq!(f.into_vec::<i64>().unwrap(), vec![-1, 0, 1, 2, 3, 4]);

    let e = write_npy(&p, &[2, 3], [1i64, 2]).unwrap_err().to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
    // The old file stays, and no temporary file is left.
    assert_eq!(npyz::NpyFile::new(std::fs::File::open(&p).unwrap()).unwrap().into_vec::<i64>().unwrap().len(), 6);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let s = dir.path().join("scores.npy");
    write_npy(&s, &[1, 2], [0.5f32, f32::NAN]).unwrap();
    let (data, n, d) = read_matrix(&s).unwrap();
    assert_eq!((n, d, data[0]), (1, 2, 0.5));
    assert!(data[1].is_nan());
}
