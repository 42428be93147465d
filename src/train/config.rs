//! `dolg train` options: a TOML file (`--config`), every key also a command-line flag. The
//! resolved configuration is copied into the run directory and read back on `--resume`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data::DataFormat;
use super::head::HeadKind;
use super::{ConfigOrigin, TrainError};
use crate::model::{AsppKind, Fusion, Pooling};

/// Every training option, with the authors' recipe as defaults (spec §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    // Data.
    /// Training list (`path class_id` lines), GLDv2 `train_clean.csv`, or a folder per class.
    pub data: PathBuf,
    /// How to read `data`; `auto` decides from the path.
    pub format: DataFormat,
    /// Root that relative image paths resolve against (default: beside the list).
    pub images: Option<PathBuf>,
    // Model.
    /// A DOLG checkpoint to fine-tune (its head is reused when the class count matches).
    pub init: Option<PathBuf>,
    /// An ImageNet backbone to start from instead: a file, or `mobilenetv2` (the cached
    /// `dolg fetch-weights mobilenetv2` weights).
    pub backbone: Option<String>,
    /// Width of `fg` (the output of `fc_t`) and of the local features.
    pub fg_dim: usize,
    /// Width of the final descriptor (output of `fc`).
    pub out_dim: usize,
    /// Build the local branch and fuse it with `fg`; `false` trains a global-only model.
    pub local_branch: bool,
    /// Self-attention in the local branch; `false` is the ablation without attention weights.
    pub attention: bool,
    /// Multi-atrous module in front of the local branch; `none` (as the released weights) in
    /// the file.
    #[serde(with = "crate::model::aspp::none_or_kind")]
    pub multi_atrous: Option<AsppKind>,
    /// Global pooling of `f4`: `gem` (learnable exponent) or `gap`.
    pub pooling: Pooling,
    /// How local and global features are combined: `orthogonal` (the paper's) or an ablation.
    pub fusion: Fusion,
    /// Freeze the first N backbone stages (1 = stem, 2 = stem + s1, …; the whole ResNet at 5,
    /// the whole MobileNetV2 at 6). Frozen BatchNorm layers keep their running statistics.
    pub freeze_stages: usize,
    // Head and loss.
    /// Classification head: `curricular` (the authors') or `arcface`.
    pub head: HeadKind,
    /// Logit scale `s` of the margin head.
    pub scale: f64,
    /// Angular margin `m` of the margin head, in radians.
    pub margin: f64,
    // Optimisation.
    /// Number of training epochs.
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation); must divide `batch_size`.
    pub accum: usize,
    /// Learning rate for `lr_batch` images; the run uses `base_lr * batch_size / lr_batch`.
    pub base_lr: f64,
    /// Batch size that `base_lr` is given for.
    pub lr_batch: usize,
    /// SGD momentum.
    pub momentum: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay, applied to every parameter.
    pub weight_decay: f64,
    /// Epochs of linear learning-rate warm-up (may be fractional).
    pub warmup_epochs: f64,
    /// Learning-rate factor at the start of warm-up, rising linearly to 1.
    pub warmup_factor: f64,
    /// Update the learning rate every step (fractional epochs) instead of once per epoch as the
    /// authors' trainer does; smoother for short fine-tuning runs.
    pub lr_per_step: bool,
    /// Stop after this many optimizer steps (0: run all epochs).
    pub max_steps: usize,
    // Augmentation.
    /// Side of the square training crop, in pixels (at least 32).
    pub size: usize,
    /// Smallest random-resized-crop area, as a fraction of the image, in (0, 1].
    pub min_area: f64,
    /// Random horizontal flips.
    pub flip: bool,
    /// Standard deviation of the PCA lighting noise (0 disables).
    pub lighting: f64,
    // Run.
    /// Run directory: checkpoints, `config.toml`, `classes.tsv` and `state.json`.
    pub out: PathBuf,
    /// Seed of the data order, the augmentation and freshly initialised weights.
    pub seed: u64,
    /// Decoding/augmentation threads.
    pub workers: usize,
    /// Save every N optimizer steps (0: at the end of each epoch only).
    pub checkpoint_every: usize,
    /// Retrieval validation after each epoch: a groups CSV (`image,group`) and its image folder.
    pub val_groups: Option<PathBuf>,
    /// The image folder that `val_groups` names are relative to.
    pub val_images: Option<PathBuf>,
    /// Image scales of the validation descriptors (one descriptor per image, combined over the scales).
    pub val_scales: Vec<f64>,
    /// Compute device: `cpu` (the only one training runs on; `cuda` is for inference).
    pub device: String,
    /// Threads of the global compute pool (`None`: one per core).
    pub threads: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            format: DataFormat::Auto,
            images: None,
            init: None,
            backbone: None,
            fg_dim: 1024,
            out_dim: 512,
            local_branch: true,
            attention: true,
            multi_atrous: None,
            pooling: Pooling::Gem,
            fusion: Fusion::Orthogonal,
            freeze_stages: 0,
            head: HeadKind::Curricular,
            scale: 30.0,
            margin: 0.15,
            epochs: 100,
            batch_size: 64,
            accum: 1,
            base_lr: 0.01,
            lr_batch: 64,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            warmup_epochs: 5.0,
            warmup_factor: 0.1,
            lr_per_step: false,
            max_steps: 0,
            size: 224,
            min_area: 0.08,
            flip: true,
            lighting: 0.1,
            out: PathBuf::from("runs/dolg"),
            seed: 0,
            workers: 2,
            checkpoint_every: 0,
            val_groups: None,
            val_images: None,
            val_scales: vec![1.0],
            device: "cpu".into(),
            threads: None,
        }
    }
}

impl TrainConfig {
    /// Defaults, overlaid by `file` (TOML), overlaid by `overrides` (a TOML table of the options
    /// given on the command line).
    pub fn resolve(file: Option<&Path>, overrides: toml::Table) -> Result<Self, TrainError> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| TrainError::Io { path: p.to_owned(), source })?;
                text.parse::<toml::Table>().map_err(|e| TrainError::Config { origin: ConfigOrigin::File(p.to_owned()), reason: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        // Relative paths in a config file are relative to the file, so runs are reproducible
        // from any working directory.
        if let Some(dir) = file.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
            for key in ["data", "images", "init", "out", "val_groups", "val_images"] {
                if let Some(toml::Value::String(s)) = table.get(key) {
                    if Path::new(s).is_relative() {
                        let joined = dir.join(s).to_string_lossy().into_owned();
                        table.insert(key.into(), toml::Value::String(joined));
                    }
                }
            }
            if let Some(toml::Value::String(s)) = table.get("backbone") {
                if s != "mobilenetv2" && Path::new(s).is_relative() {
                    let joined = dir.join(s).to_string_lossy().into_owned();
                    table.insert("backbone".into(), toml::Value::String(joined));
                }
            }
        }
        table.extend(overrides);
        let origin = file.map_or(ConfigOrigin::CommandLine, |f| ConfigOrigin::File(f.to_owned()));
        let cfg: Self =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| TrainError::Config { origin: origin.clone(), reason: e.to_string() })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// Check the options against each other; `origin` names where they came from in errors.
    pub fn validate(&self, origin: &ConfigOrigin) -> Result<(), TrainError> {
        let err = |reason: String| Err(TrainError::Config { origin: origin.clone(), reason });
        if self.data.as_os_str().is_empty() {
            return err("no training data: set 'data' (a list file, train_clean.csv or a folder per class)".into());
        }
        if self.init.is_some() == self.backbone.is_some() {
            return err("set exactly one of 'init' (a DOLG checkpoint to fine-tune) and 'backbone' (an ImageNet backbone)".into());
        }
        if self.batch_size == 0 || self.accum == 0 || !self.batch_size.is_multiple_of(self.accum) {
            return err(format!("batch_size {} must be a positive multiple of accum {}", self.batch_size, self.accum));
        }
        if self.epochs == 0 || self.size < 32 || self.lr_batch == 0 {
            return err(format!("epochs ({}) and lr_batch ({}) must be positive and size ({}) at least 32", self.epochs, self.lr_batch, self.size));
        }
        if !(0.0 < self.min_area && self.min_area <= 1.0) {
            return err(format!("min_area {} must be in (0, 1]", self.min_area));
        }
        if self.val_groups.is_some() != self.val_images.is_some() {
            return err("'val_groups' and 'val_images' go together".into());
        }
        if !self.local_branch && (self.fusion != Fusion::Orthogonal || !self.attention || self.multi_atrous.is_some()) {
            return err("with local_branch = false, 'fusion', 'attention' and 'multi_atrous' have no effect; leave them at their defaults".into());
        }
        Ok(())
    }

    /// The learning rate of a (fractional) epoch: linear warm-up from `warmup_factor`, then
    /// cosine decay to 0 at `epochs` — pycls `get_epoch_lr`, evaluated per epoch as the authors'
    /// trainer does.
    pub(crate) fn lr_at_epoch(&self, epoch: usize) -> f64 {
        self.lr_at(epoch as f64)
    }

    /// The learning rate of optimizer step `step` (0-based) with `per_epoch` steps per epoch.
    pub(crate) fn lr_at_step(&self, step: usize, per_epoch: usize) -> f64 {
        if self.lr_per_step {
            self.lr_at(step as f64 / per_epoch as f64)
        } else {
            self.lr_at_epoch(step / per_epoch)
        }
    }

    fn lr_at(&self, e: f64) -> f64 {
        let base = self.base_lr * self.batch_size as f64 / self.lr_batch as f64;
        let mut lr = 0.5 * base * (1.0 + (std::f64::consts::PI * e / self.epochs as f64).cos());
        if e < self.warmup_epochs {
            let alpha = e / self.warmup_epochs;
            lr *= self.warmup_factor * (1.0 - alpha) + alpha;
        }
        lr
    }

    /// Make every path absolute, so the copy in the run directory resumes from anywhere.
    pub fn absolutize(&mut self) -> Result<(), TrainError> {
        let abs = |p: &mut PathBuf| -> Result<(), TrainError> {
            if !p.as_os_str().is_empty() {
                *p = std::path::absolute(&*p).map_err(|source| TrainError::Io { path: p.clone(), source })?;
            }
            Ok(())
        };
        abs(&mut self.data)?;
        abs(&mut self.out)?;
        for p in [&mut self.images, &mut self.init, &mut self.val_groups, &mut self.val_images].into_iter().flatten() {
            abs(p)?;
        }
        if let Some(b) = &mut self.backbone {
            if b != "mobilenetv2" {
                let mut p = PathBuf::from(&*b);
                abs(&mut p)?;
                *b = p.display().to_string();
            }
        }
        Ok(())
    }

    /// The configuration as TOML, as copied into the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_matches_pycls() {
        let c = TrainConfig { epochs: 100, batch_size: 64, ..Default::default() };
        assert!((c.lr_at_epoch(0) - 0.001).abs() < 1e-12, "epoch 0 runs at 0.1 x base (the fixture README's 0.001)");
        let e2 = 0.5 * 0.01 * (1.0 + (std::f64::consts::PI * 0.02).cos()) * (0.1 * 0.6 + 0.4);
        assert!((c.lr_at_epoch(2) - e2).abs() < 1e-15);
        assert!((c.lr_at_epoch(50) - 0.005).abs() < 1e-12);
        let c = TrainConfig { batch_size: 32, ..c };
        assert!((c.lr_at_epoch(50) - 0.0025).abs() < 1e-12, "lr scales with batch size");
        // Per step: the same curve at fractional epochs; equal to the per-epoch value at epoch starts.
        let per_step = TrainConfig { lr_per_step: true, ..c.clone() };
        assert_eq!(c.lr_at_step(7, 4), c.lr_at_epoch(1));
        assert_eq!(per_step.lr_at_step(8, 4), c.lr_at_epoch(2));
        let (a, b, d) = (per_step.lr_at_step(8, 4), per_step.lr_at_step(9, 4), per_step.lr_at_step(12, 4));
        assert!(a < b && b < d, "warm-up rises within an epoch: {a} {b} {d}");
    }

    #[test]
    fn file_then_command_line_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.toml");
        std::fs::write(&f, "data = \"list.txt\"\nbackbone = \"mobilenetv2\"\nepochs = 7\nhead = \"arcface\"\n").unwrap();
        let mut o = toml::Table::new();
        o.insert("epochs".into(), toml::Value::Integer(3));
        let c = TrainConfig::resolve(Some(&f), o).unwrap();
        assert_eq!(c.epochs, 3);
        assert_eq!(c.head, HeadKind::ArcFace);
        assert_eq!(c.data, dir.path().join("list.txt"));
        assert_eq!(c.backbone.as_deref(), Some("mobilenetv2"));
        // Round trip through the copy written to the run directory.
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);

        std::fs::write(&f, "data = \"x\"\nbackbone = \"b\"\nepoch = 3\n").unwrap();
        let e = TrainConfig::resolve(Some(&f), toml::Table::new()).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("epoch"), "{e}");
        std::fs::write(&f, "data = \"x\"\nbackbone = \"b\"\nbatch_size = 10\naccum = 3\n").unwrap();
        let e = TrainConfig::resolve(Some(&f), toml::Table::new()).unwrap_err().to_string();
        assert!(e.contains("batch_size 10") && e.contains("accum 3"), "{e}");
    }

    #[test]
    fn model_options_keep_their_spellings() {
        let base = "data = \"x\"\nbackbone = \"b\"\n";
        let parse = |extra: &str| -> Result<TrainConfig, String> {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("run.toml");
            std::fs::write(&f, format!("{base}{extra}")).unwrap();
            TrainConfig::resolve(Some(&f), toml::Table::new()).map_err(|e| e.to_string())
        };
        assert_eq!(parse("").unwrap().multi_atrous, None);
        assert_eq!(parse("").unwrap().pooling, Pooling::Gem);
        assert_eq!(parse("multi_atrous = \"none\"\n").unwrap().multi_atrous, None);
        assert_eq!(parse("multi_atrous = \"official\"\n").unwrap().multi_atrous, Some(AsppKind::Official));
        assert_eq!(parse("multi_atrous = \"paper\"\n").unwrap().multi_atrous, Some(AsppKind::Paper));
        assert_eq!(parse("pooling = \"gap\"\n").unwrap().pooling, Pooling::Gap);
        assert_eq!(parse("pooling = \"gem\"\n").unwrap().pooling, Pooling::Gem);
        let e = parse("multi_atrous = \"dilated\"\n").unwrap_err();
        assert!(e.contains("multi_atrous") || e.contains("dilated"), "{e}");
        assert!(e.contains("official") && e.contains("paper") && e.contains("none"), "{e}");
        assert!(parse("pooling = \"max\"\n").is_err());
        // The copy in the run directory spells every option out and reads back the same.
        for aspp in [None, Some(AsppKind::Official), Some(AsppKind::Paper)] {
            let c = TrainConfig { multi_atrous: aspp, pooling: Pooling::Gap, data: "x".into(), ..Default::default() };
            let text = c.to_toml();
            let want = format!("multi_atrous = \"{}\"", crate::model::aspp::none_or_kind::name(aspp));
            assert!(text.contains(&want) && text.contains("pooling = \"gap\""), "{text}");
            assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
        }
    }
}
