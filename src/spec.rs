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
use crate::descriptors::Extractor;
use crate::model::{Arch, Fusion, ModelError, RetrievalModel};
use crate::preprocess::DEFAULT_SCALES;
use crate::pretrained::{Pretrained, PretrainedError};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no model given: name a DOLG checkpoint (--weights FILE) or a pretrained backbone (--backbone mobilenetv2)")]
    NoModel,
    #[error("a model is either a DOLG checkpoint ({weights}) or a pretrained backbone ({backbone}), not both")]
    Both { weights: PathBuf, backbone: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("scale {scale} is not a positive, finite number")]
    Scale { scale: f64 },
    #[error(transparent)]
    Pretrained(#[from] PretrainedError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
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
}

fn default_scales() -> Vec<f64> {
    DEFAULT_SCALES.to_vec()
}

/// A built model with the identity of what it produces.
pub struct LoadedModel {
    pub extractor: Extractor,
    /// SHA-256 of the weights file and every option that changes descriptors (hex).
    pub fingerprint: String,
}

impl ModelSpec {
    /// A DOLG checkpoint with default options.
    pub fn dolg(weights: impl Into<PathBuf>) -> Self {
        Self { weights: Some(weights.into()), backbone: None, arch: None, fusion: None, scales: default_scales() }
    }

    /// A pretrained backbone (fetched with `dolg fetch-weights`) with off-the-shelf GeM descriptors.
    pub fn pretrained(backbone: Pretrained) -> Self {
        Self { weights: None, backbone: Some(backbone), arch: None, fusion: None, scales: default_scales() }
    }

    pub fn with_scales(mut self, scales: Vec<f64>) -> Self {
        self.scales = scales;
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
            _ => Ok(()),
        }
    }

    /// The file whose bytes define the model: the checkpoint, or the cached pretrained weights.
    pub fn weights_file(&self) -> Result<PathBuf, SpecError> {
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
        let (model, fusion) = if self.backbone.is_some() {
            (RetrievalModel::off_the_shelf(&ck, device)?, Fusion::Orthogonal)
        } else {
            let fusion = self.fusion.unwrap_or_else(|| Fusion::recorded_in(ck.metadata()));
            (RetrievalModel::dolg(&ck, self.arch, fusion, device)?, fusion)
        };
        let fingerprint = self.fingerprint_with(&file, fusion)?;
        Ok(LoadedModel { extractor: Extractor::new(model, device.clone(), self.scales.clone()), fingerprint })
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
    /// every earlier release hashed, so existing indexes and caches keep their fingerprints.
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

    pub fn serialize<T: ValueEnum, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&name(v)),
            None => s.serialize_none(),
        }
    }

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
    fn reads_the_spec_that_earlier_releases_stored() {
        // Written by `dolg index build` before the spec was typed (src/cli/index.rs, release 0.1).
        let old = r#"{"weights":"/w/r50.pyth","backbone":null,"arch":"r50-ma-paper","fusion":"concat","scales":[0.7071,1.0]}"#;
        let spec: ModelSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.weights.as_deref(), Some(Path::new("/w/r50.pyth")));
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
    fn fingerprint_hashes_the_file_and_the_options_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.bin");
        std::fs::write(&w, b"weights").unwrap();
        let spec = ModelSpec { fusion: Some(Fusion::Hadamard), ..ModelSpec::dolg(&w) }.with_scales(vec![1.0]);
        // Independent reference: the hash of the same bytes and option string, spelled out here.
        let mut h = Sha256::new();
        h.update(b"weights;backbone=None;arch=None;fusion=hadamard;scales=[1.0]");
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(spec.fingerprint().unwrap(), want);
        let other = ModelSpec { fusion: Some(Fusion::Concat), ..spec.clone() };
        assert_ne!(other.fingerprint().unwrap(), want);
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
