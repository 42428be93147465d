//! [`ModelSpec`]: which model, with which options, produces a set of descriptors.
//!
//! One typed value does three jobs that used to be spread over the CLI: it is stored in an index's
//! manifest (so `add` and `search` rebuild the same model later), it yields the descriptor
//! fingerprint that keeps vectors of different models apart, and it builds the [`Extractor`].
//!
//! The serialised form is the JSON object indexes have always stored (`weights`, `backbone`,
//! `arch`, `fusion`, `scales`, enum values in their command-line spelling), so indexes written by
//! earlier releases open unchanged, and the fingerprint is computed byte for byte as before.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::decode::Orientation;
use crate::descriptors::{Extractor, ScaleCombine};
use crate::model::{Arch, Fusion, ModelError, RetrievalModel};
use crate::preprocess::{DEFAULT_MAX_SIZE, DEFAULT_SCALES};
use crate::pretrained::{Pretrained, PretrainedError};

/// Why a [`ModelSpec`] names no usable model, or its model could not be built or fingerprinted.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither a checkpoint nor a pretrained backbone was given.
    #[error("no model given: name a DOLG checkpoint (--weights FILE) or a pretrained backbone (--backbone mobilenetv2)")]
    NoModel,
    /// Both a checkpoint and a pretrained backbone were given.
    #[error("a model is either a DOLG checkpoint ({weights}) or a pretrained backbone ({backbone}), not both")]
    Both {
        /// The checkpoint given.
        weights: PathBuf,
        /// The pretrained backbone given, in its command-line spelling.
        backbone: &'static str,
    },
    /// The weights file could not be read while computing the fingerprint.
    #[error("{path}: {source}")]
    Io {
        /// The weights file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An image scale that is zero, negative, infinite or NaN.
    #[error("scale {scale} is not a positive, finite number")]
    Scale {
        /// The offending scale factor.
        scale: f64,
    },
    /// A pretrained network that gives local features or matches them, not global descriptors.
    #[error("'{name}' is a local-feature {what}, not a backbone for global descriptors: {hint}")]
    NotABackbone {
        /// The pretrained model's command-line name (`xfeat`, `lighterglue`).
        name: &'static str,
        /// What it is instead (`network`, `matcher`).
        what: &'static str,
        /// How it is meant to be used.
        hint: &'static str,
    },
    /// The pretrained backbone's weights are not in the cache, or could not be read or verified.
    #[error(transparent)]
    Pretrained(#[from] PretrainedError),
    /// The weights file (checkpoint or cached pretrained weights) could not be opened or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint does not hold a model this crate can build.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Everything that determines the descriptors: a DOLG checkpoint or a pretrained backbone, and
/// the options that change the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// DOLG checkpoint (any format `Checkpoint::open` reads). `None` for a pretrained backbone.
    pub weights: Option<PathBuf>,
    /// A pretrained backbone with off-the-shelf GeM descriptors, instead of `weights`.
    #[serde(with = "value_enum")]
    pub backbone: Option<Pretrained>,
    /// Architecture override; `None` detects it from the checkpoint's keys.
    #[serde(with = "value_enum")]
    pub arch: Option<Arch>,
    /// Fusion override; `None` uses what the checkpoint records (orthogonal if nothing).
    #[serde(with = "value_enum")]
    pub fusion: Option<Fusion>,
    /// Image scales of the multi-scale descriptor.
    #[serde(default = "default_scales")]
    pub scales: Vec<f64>,
    /// Longest side an image is brought down to (after orienting and cropping) before the
    /// pyramid; `None`: no limit. New specs default to [`DEFAULT_MAX_SIZE`]; indexes made before
    /// the policy existed had none, and read back that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
    /// Whether the EXIF orientation is applied. New specs apply it (as `cv2.imread` does); indexes
    /// made before it existed ignored it, and read back that way.
    #[serde(default = "legacy_orientation", skip_serializing_if = "is_legacy_orientation")]
    pub orientation: Orientation,
    /// How the per-scale descriptors are combined; the mean (the default, and what every spec
    /// written before the option meant) is never written.
    #[serde(default, skip_serializing_if = "is_mean")]
    pub scale_combine: ScaleCombine,
}

fn is_mean(c: &ScaleCombine) -> bool {
    *c == ScaleCombine::Mean
}

fn default_scales() -> Vec<f64> {
    DEFAULT_SCALES.to_vec()
}

// The stored form of a spec written before these options existed must serialise to the same
// bytes (the manifest's checksum covers them) and fingerprint to the same hash, so their
// "absent" values are the old behaviour, and those values are never written.
fn legacy_orientation() -> Orientation {
    Orientation::Ignore
}

fn is_legacy_orientation(o: &Orientation) -> bool {
    *o == Orientation::Ignore
}

/// A built model with the identity of what it produces.
pub struct LoadedModel {
    /// The model, configured with the spec's scales, size limit, orientation and scale combination.
    pub extractor: Extractor,
    /// SHA-256 of the weights file and every option that changes descriptors (hex).
    pub fingerprint: String,
}

/// The scales a checkpoint is described at unless told otherwise: DELG's own global scales
/// (1/√2, 1, √2) for a DELG checkpoint (told by its keys; read lazily, so cheap), the DOLG
/// authors' five otherwise. The one place the CLI, the server and Python take this default from.
pub fn default_scales_for(weights: Option<&Path>) -> Vec<f64> {
    match weights {
        Some(w) if Checkpoint::open(w).is_ok_and(|c| crate::model::delg::Delg::is_delg(&c)) => crate::model::delg::DelgParams::default().global_scales,
        _ => DEFAULT_SCALES.to_vec(),
    }
}

/// The options that choose and configure a model, as every front end takes them: the CLI flattens
/// this (`--weights`, `--backbone`, `--scales`, ...), Python's `dolg.Model(...)` fills it from
/// keyword arguments of the same names. [`ModelOptions::spec`] is the one place a [`ModelSpec`] is
/// built from a caller's options, defaults included (DELG's scales for a DELG checkpoint:
/// [`default_scales_for`]).
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// DOLG checkpoint: the authors' .pyth (legacy or zip serialization), a flat state-dict .pt,
    /// or .safetensors; a .gz of any of these is inflated on the fly.
    #[arg(long, short = 'w', value_name = "FILE", conflicts_with = "backbone")]
    pub weights: Option<PathBuf>,
    /// Use a real ImageNet backbone with off-the-shelf GeM descriptors instead of a DOLG checkpoint
    /// (fetch it first with `dolg fetch-weights mobilenetv2`).
    #[arg(long, value_enum)]
    pub backbone: Option<Pretrained>,
    /// Override the architecture detected from the checkpoint's keys.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// How local features are fused into the descriptor (the paper's ablations). Default: what a
    /// `dolg train` checkpoint records, else orthogonal.
    #[arg(long, value_enum)]
    pub fusion: Option<Fusion>,
    /// Comma-separated image scales (default: the authors' 0.3535,0.5,0.7071,1.0,1.4142; for a DELG
    /// checkpoint DELG's 0.7071,1.0,1.4142).
    #[arg(long, value_delimiter = ',', value_name = "S,S,...")]
    pub scales: Option<Vec<f64>>,
    /// Bring an image whose longest side exceeds N pixels down to N (anti-aliased, after EXIF
    /// orientation and any crop) before the multi-scale pyramid; 0 = no limit. 1024 is the
    /// Revisited Oxford/Paris and DELG convention: their images are at most that, so they are
    /// untouched, while a 27 MP phone photo no longer costs minutes and gigabytes.
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE, value_name = "N")]
    pub max_size: u32,
    /// Take the pixels as stored, ignoring the EXIF orientation tag (by default a photo is turned
    /// upright as the tag says, as OpenCV's imread does).
    #[arg(long)]
    pub ignore_orientation: bool,
    /// Combine the per-scale descriptors by their mean (DOLG) or element-wise max (SuperGlobal's scale-GeM).
    #[arg(long, value_enum, default_value_t = ScaleCombine::Mean, value_name = "HOW")]
    pub scale_combine: ScaleCombine,
}

impl Default for ModelOptions {
    /// No model named yet; every option at its default.
    fn default() -> Self {
        Self {
            weights: None,
            backbone: None,
            arch: None,
            fusion: None,
            scales: None,
            max_size: DEFAULT_MAX_SIZE,
            ignore_orientation: false,
            scale_combine: ScaleCombine::Mean,
        }
    }
}

impl ModelOptions {
    /// The typed model description these options give.
    pub fn spec(&self) -> Result<ModelSpec, SpecError> {
        let spec = match (&self.weights, self.backbone) {
            (Some(w), Some(b)) => return Err(SpecError::Both { weights: w.clone(), backbone: b.name() }),
            (Some(w), None) => ModelSpec::dolg(w),
            (None, Some(b)) => ModelSpec::pretrained(b),
            (None, None) => return Err(SpecError::NoModel),
        };
        let orientation = if self.ignore_orientation { Orientation::Ignore } else { Orientation::Apply };
        let scales = self.scales.clone().unwrap_or_else(|| default_scales_for(self.weights.as_deref()));
        Ok(ModelSpec { arch: self.arch, fusion: self.fusion, ..spec }
            .with_scales(scales)
            .with_max_size(self.max_size)
            .with_orientation(orientation)
            .with_scale_combine(self.scale_combine))
    }

    /// The model these options name, loaded on `device`.
    pub fn extractor(&self, device: Device) -> Result<Extractor, SpecError> {
        Ok(self.spec()?.load(&device)?.extractor)
    }
}

impl ModelSpec {
    /// A DOLG checkpoint with default options.
    pub fn dolg(weights: impl Into<PathBuf>) -> Self {
        Self { weights: Some(weights.into()), ..Self::defaults() }
    }

    /// A pretrained backbone (fetched with `dolg fetch-weights`) with off-the-shelf GeM descriptors.
    pub fn pretrained(backbone: Pretrained) -> Self {
        Self { backbone: Some(backbone), ..Self::defaults() }
    }

    fn defaults() -> Self {
        Self {
            weights: None,
            backbone: None,
            arch: None,
            fusion: None,
            scales: default_scales(),
            max_size: Some(DEFAULT_MAX_SIZE),
            orientation: Orientation::Apply,
            scale_combine: ScaleCombine::Mean,
        }
    }

    /// Image scales of the multi-scale descriptor (resize factors; checked to be positive and finite when loaded).
    pub fn with_scales(mut self, scales: Vec<f64>) -> Self {
        self.scales = scales;
        self
    }

    /// Longest image side before the pyramid; 0 means no limit.
    pub fn with_max_size(mut self, max_size: u32) -> Self {
        self.max_size = (max_size > 0).then_some(max_size);
        self
    }

    /// Whether the EXIF orientation is applied before describing.
    pub fn with_orientation(mut self, orientation: Orientation) -> Self {
        self.orientation = orientation;
        self
    }

    /// How the per-scale descriptors are combined into one.
    pub fn with_scale_combine(mut self, scale_combine: ScaleCombine) -> Self {
        self.scale_combine = scale_combine;
        self
    }

    /// The spec as it is stored with an index: the weights path made absolute, so the model can
    /// be rebuilt from any working directory.
    pub fn absolute(mut self) -> Self {
        if let Some(w) = &self.weights {
            self.weights = Some(std::fs::canonicalize(w).unwrap_or_else(|_| w.clone()));
        }
        self
    }

    fn validate(&self) -> Result<(), SpecError> {
        if let Some(&scale) = self.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(SpecError::Scale { scale });
        }
        match (&self.weights, self.backbone) {
            (Some(w), Some(b)) => Err(SpecError::Both { weights: w.clone(), backbone: b.name() }),
            (None, None) => Err(SpecError::NoModel),
            (None, Some(Pretrained::XFeat)) => {
                Err(SpecError::NotABackbone { name: "xfeat", what: "network", hint: "use it with `dolg index build --local xfeat`" })
            }
            (None, Some(Pretrained::LighterGlue)) => Err(SpecError::NotABackbone {
                name: "lighterglue",
                what: "matcher",
                hint: "it matches XFeat's features: use it with `--rerank spatial --matcher lighterglue`",
            }),
            _ => Ok(()),
        }
    }

    /// The file whose bytes define the model: the checkpoint, or the cached pretrained weights.
    pub(crate) fn weights_file(&self) -> Result<PathBuf, SpecError> {
        self.validate()?;
        match (&self.weights, self.backbone) {
            (Some(w), _) => Ok(w.clone()),
            (None, Some(b)) => Ok(b.path()?),
            (None, None) => Err(SpecError::NoModel),
        }
    }

    /// Build the model and its fingerprint, opening the checkpoint once.
    pub fn load(&self, device: &Device) -> Result<LoadedModel, SpecError> {
        let file = self.weights_file()?;
        let ck = Checkpoint::open(&file)?;
        let fusion = match self.backbone {
            Some(_) => Fusion::Orthogonal,
            None => self.fusion.unwrap_or_else(|| Fusion::recorded_in(ck.metadata())),
        };
        // Hashing the weights file (100 MB for R50) on a second thread while the model is built
        // takes it off the start-up time of every command.
        let (model, fingerprint) = std::thread::scope(|scope| {
            let hash = scope.spawn(|| self.fingerprint_with(&file, fusion));
            let model = match self.backbone {
                Some(_) => RetrievalModel::off_the_shelf(&ck, device),
                None => RetrievalModel::dolg(&ck, self.arch, fusion, device),
            };
            (model, hash.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        });
        let (model, fingerprint) = (model?, fingerprint?);
        let mut extractor = Extractor::new(model, device.clone(), self.scales.clone());
        extractor.max_size = self.max_size;
        extractor.orientation = self.orientation;
        extractor.scale_combine = self.scale_combine;
        Ok(LoadedModel { extractor, fingerprint })
    }

    /// The fingerprint without building the model (for cache keys). Opens the checkpoint only
    /// when the fusion in effect must be read from its metadata.
    pub fn fingerprint(&self) -> Result<String, SpecError> {
        let file = self.weights_file()?;
        let fusion = match (self.fusion, self.backbone) {
            (Some(f), _) => f,
            (None, Some(_)) => Fusion::Orthogonal,
            (None, None) => Fusion::recorded_in(Checkpoint::open(&file)?.metadata()),
        };
        self.fingerprint_with(&file, fusion)
    }

    /// SHA-256 of the weights file's bytes, then of the options. The option string is the one
    /// every earlier release hashed, extended only by options that differ from the old behaviour
    /// (a size limit, applied EXIF orientation), so existing indexes and caches keep their
    /// fingerprints.
    fn fingerprint_with(&self, file: &Path, fusion: Fusion) -> Result<String, SpecError> {
        let io = |source| SpecError::Io { path: file.to_owned(), source };
        let mut h = Sha256::new();
        std::io::copy(&mut std::fs::File::open(file).map_err(io)?, &mut h).map_err(io)?;
        h.update(
            format!(
                ";backbone={:?};arch={:?};fusion={};scales={:?}",
                self.backbone.map(|b| value_enum::name(&b)),
                self.arch.map(|a| value_enum::name(&a)),
                value_enum::name(&fusion),
                self.scales
            )
            .as_bytes(),
        );
        if let Some(m) = self.max_size {
            h.update(format!(";max_size={m}").as_bytes());
        }
        if self.orientation != legacy_orientation() {
            h.update(format!(";orientation={}", value_enum::name(&self.orientation)).as_bytes());
        }
        if self.scale_combine != ScaleCombine::Mean {
            h.update(format!(";scale_combine={}", value_enum::name(&self.scale_combine)).as_bytes());
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Optional command-line enums stored under their command-line spelling (`r50-ma-paper`,
/// `mobilenetv2`), so the stored form and the flags can never drift apart.
pub mod value_enum {
    use clap::ValueEnum;
    use serde::{Deserialize, Deserializer, Serializer};

    /// The command-line spelling of a value-enum variant.
    pub fn name<T: ValueEnum>(v: &T) -> String {
        v.to_possible_value().expect("no skipped variants").get_name().to_owned()
    }

    /// Serde `serialize_with`: `Some(v)` as its command-line spelling, `None` as null.
    pub fn serialize<T: ValueEnum, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&name(v)),
            None => s.serialize_none(),
        }
    }

    /// Serde `deserialize_with`: a command-line spelling (case-insensitive) or null; an unknown value's error lists the choices.
    pub fn deserialize<'de, T: ValueEnum, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                T::from_str(&s, true).map_err(|_| {
                    let allowed: Vec<String> = T::value_variants().iter().map(name).collect();
                    serde::de::Error::custom(format!("unknown value '{s}' (expected one of: {})", allowed.join(", ")))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // 0.7071 is the authors' literal scale, not an approximation of 1/sqrt(2) to be replaced.
    #[allow(clippy::approx_constant)]
    fn reads_the_spec_that_earlier_releases_stored() {
        // Written by `dolg index build` before the spec was typed (src/cli/index.rs, release 0.1).
        let old = r#"{"weights":"/w/r50.pyth","backbone":null,"arch":"r50-ma-paper","fusion":"concat","scales":[0.7071,1.0]}"#;
        let spec: ModelSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.weights.as_deref(), Some(Path::new("/w/r50.pyth")));
        // Options that did not exist then read back as the behaviour of that time.
        assert_eq!((spec.max_size, spec.orientation), (None, Orientation::Ignore));
        assert_eq!((spec.backbone, spec.arch, spec.fusion), (None, Some(Arch::R50MaPaper), Some(Fusion::Concat)));
        assert_eq!(spec.scales, vec![0.7071, 1.0]);
        // And writes it back in the same shape.
        assert_eq!(serde_json::to_string(&spec).unwrap(), old);
        let mobile: ModelSpec = serde_json::from_str(r#"{"weights":null,"backbone":"mobilenetv2","arch":null,"fusion":null,"scales":[1.0]}"#).unwrap();
        assert_eq!(mobile.backbone, Some(Pretrained::MobileNetV2));
    }

    #[test]
    fn unknown_enum_value_names_it_and_the_choices() {
        let e = serde_json::from_str::<ModelSpec>(r#"{"weights":"w","backbone":null,"arch":"r42","fusion":null}"#).unwrap_err().to_string();
        assert!(e.contains("'r42'") && e.contains("r50-ma"), "{e}");
    }

    #[test]
    fn todays_options_are_stored_and_read_back() {
        let today = serde_json::to_string(&ModelSpec::dolg("w")).unwrap();
        assert!(today.ends_with(r#""max_size":1024,"orientation":"apply"}"#), "{today}");
        let back: ModelSpec = serde_json::from_str(&today).unwrap();
        assert_eq!(back, ModelSpec::dolg("w"));
    }

    #[test]
    fn fingerprint_hashes_the_file_and_the_options_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.bin");
        std::fs::write(&w, b"weights").unwrap();
        let legacy =
            ModelSpec { fusion: Some(Fusion::Hadamard), ..ModelSpec::dolg(&w) }.with_scales(vec![1.0]).with_max_size(0).with_orientation(Orientation::Ignore);
        // Independent reference: the hash of the same bytes and option string, spelled out here.
        let sha = |text: &[u8]| -> String { Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect() };
        let want = sha(b"weights;backbone=None;arch=None;fusion=hadamard;scales=[1.0]");
        assert_eq!(legacy.fingerprint().unwrap(), want, "the 0.1 options hash as 0.1 hashed them");
        let other = ModelSpec { fusion: Some(Fusion::Concat), ..legacy.clone() };
        assert_ne!(other.fingerprint().unwrap(), want);
        // Today's defaults add the size limit and the orientation policy.
        let today = ModelSpec { fusion: Some(Fusion::Hadamard), ..ModelSpec::dolg(&w) }.with_scales(vec![1.0]);
        let want = sha(b"weights;backbone=None;arch=None;fusion=hadamard;scales=[1.0];max_size=1024;orientation=apply");
        assert_eq!(today.fingerprint().unwrap(), want);
    }

    #[test]
    fn invalid_specs_are_named() {
        assert!(matches!(ModelSpec { weights: None, ..ModelSpec::pretrained(Pretrained::MobileNetV2) }.validate(), Ok(())));
        let both = ModelSpec { backbone: Some(Pretrained::MobileNetV2), ..ModelSpec::dolg("w.pyth") };
        assert!(both.weights_file().unwrap_err().to_string().contains("w.pyth"));
        let bad = ModelSpec::dolg("w").with_scales(vec![1.0, 0.0]);
        assert!(matches!(bad.weights_file(), Err(SpecError::Scale { scale }) if scale == 0.0));
    }
}
