//! Training and fine-tuning with the authors' recipe (spec §1.5, §4): CurricularFace/ArcFace
//! head, SGD with Nesterov momentum and weight decay on every parameter, warm-up + cosine, BatchNorm
//! in training mode with PyTorch's running statistics, resumable runs.

pub mod augment;
pub mod config;
pub mod data;
pub mod head;
pub mod init;
mod rng;
pub mod run;
pub mod sgd;
pub mod validate;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};

use crate::checkpoint::{Checkpoint, CheckpointError, NamedTensor, ParamKeys, VarBuilder};
use crate::model::{BatchNorm, Dolg, DolgConfig, Fusion, ModelError};
pub use config::TrainConfig;
pub use head::{HeadKind, HeadOutput, HeadSpec, MarginHead};
pub use sgd::{Grads, Sgd, SgdConfig};

/// Everything that can go wrong while setting up, running or resuming training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A checkpoint could not be read, matched or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The pretrained ImageNet backbone could not be found or loaded.
    #[error(transparent)]
    Pretrained(#[from] crate::pretrained::PretrainedError),
    /// Validation: the groups file or its evaluation.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// Validation: a validation image that could not be described.
    #[error("validation image: {0}")]
    Descriptor(#[from] crate::descriptors::DescriptorError),
    /// A bad training configuration, from a TOML file or the command line.
    #[error("{origin}: {reason}")]
    Config {
        /// Where the configuration came from.
        origin: ConfigOrigin,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting whose value cannot be used (`device`, …).
    #[error("{key} = '{value}': {reason}")]
    Setting {
        /// The option's name.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A run directory or data set that does not fit the configuration.
    #[error("{path}: {reason}")]
    Data {
        /// The data list, folder or run directory.
        path: std::path::PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A run that cannot be resumed (no checkpoint yet, changed data, a mismatched checkpoint).
    #[error("{path}: cannot resume: {reason}")]
    Resume {
        /// The run directory or the file of it that stands in the way.
        path: std::path::PathBuf,
        /// Why the run cannot be resumed.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// Where a training configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// A TOML configuration file.
    File(std::path::PathBuf),
    /// Options given on the command line only.
    CommandLine,
}

impl std::fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigOrigin::File(p) => write!(f, "{}", p.display()),
            ConfigOrigin::CommandLine => f.write_str("command line"),
        }
    }
}

/// A DOLG network with its classification head, on an autodiff device.
#[derive(Debug)]
pub struct Trainable {
    /// The network being trained (BatchNorm kept separate, in training mode).
    pub model: Dolg,
    /// The CurricularFace/ArcFace classification head (`desc_cls`).
    pub head: MarginHead,
    /// The network's configuration (backbone, widths, options).
    pub config: DolgConfig,
    /// PyTorch key of every model parameter and buffer.
    pub keys: ParamKeys,
}

impl Trainable {
    /// Load a DOLG state dict that includes `desc_cls.weight` / `desc_cls.t`.
    pub fn load(ckpt: &Checkpoint, fusion: Fusion, device: &Device) -> Result<Self, TrainError> {
        let (model, config, keys) = Dolg::load_with_keys(ckpt, None, fusion, BatchNorm::Keep, device)?;
        let classes = match ckpt.shape("desc_cls.weight") {
            Some(&[c, d]) if d == config.out_dim => c,
            Some(s) => {
                return Err(CheckpointError::ShapeMismatch {
                    path: ckpt.path().to_owned(),
                    key: "desc_cls.weight".into(),
                    expected: vec![0, config.out_dim],
                    found: s.to_vec(),
                }
                .into())
            }
            None => {
                return Err(CheckpointError::Missing { path: ckpt.path().to_owned(), key: "desc_cls.weight".into(), expected: vec![0, config.out_dim] }.into())
            }
        };
        let vb = VarBuilder::new(ckpt, device);
        let head = MarginHead::load(classes, config.out_dim, &vb.root().pp("desc_cls"))?;
        Ok(Self { model, head, config, keys })
    }

    /// Descriptors [B, D] and the head's logits and loss for one batch.
    pub fn forward(&self, spec: &HeadSpec, x: Tensor<4>, labels: &[usize]) -> (Tensor<2>, HeadOutput) {
        let desc = self.model.forward(x);
        let out = self.head.forward(spec, desc.clone(), labels);
        (desc, out)
    }

    /// The parameter id of a PyTorch key (model or head).
    pub fn param_id(&self, key: &str) -> Option<ParamId> {
        if key == "desc_cls.weight" {
            return Some(self.head.weight.id);
        }
        self.keys.id(key)
    }

    /// Every tensor under the authors' key names (model, BatchNorm buffers, `desc_cls`).
    pub fn named_tensors(&self) -> Vec<NamedTensor> {
        let mut values = collect_values(&self.model);
        let mut out: Vec<NamedTensor> =
            self.keys.0.iter().filter_map(|(id, key)| values.remove(id).map(|(shape, data)| NamedTensor { name: key.clone(), shape, data })).collect();
        out.extend(self.head.named_tensors());
        out
    }

    /// Freeze (no gradient, BatchNorm on its running statistics) the first `n` backbone stages:
    /// 1 = the stem, 2 = stem + `s1`, …, 5 = the whole ResNet. MobileNetV2: 1 = `features.0`,
    /// then up to `features.1`, `.3`, `.6`, `.13`, and 6 = the whole trunk. `n = 0` freezes nothing.
    pub(crate) fn freeze_backbone_stages(self, n: usize) -> Self {
        if n == 0 {
            return self;
        }
        let Self { mut model, head, config, keys } = self;
        model.globalmodel = freeze::stages(model.globalmodel, n);
        Self { model, head, config, keys }
    }
}

mod freeze {
    use burn::module::Module;

    use crate::model::backbone::Backbone;
    use crate::model::layers::ConvBn;

    fn convbn(c: ConvBn) -> ConvBn {
        let ConvBn { conv, bn } = c;
        let bn = bn.map(|mut b| {
            b.frozen = true;
            b.no_grad()
        });
        ConvBn { conv: conv.no_grad(), bn }
    }

    pub fn stages(b: Backbone, n: usize) -> Backbone {
        match b {
            Backbone::ResNet(mut r) => {
                r.stem.conv = convbn(r.stem.conv);
                for (i, stage) in [&mut r.s1, &mut r.s2, &mut r.s3, &mut r.s4].into_iter().enumerate() {
                    if n >= i + 2 {
                        let blocks = std::mem::take(&mut stage.blocks);
                        stage.blocks = blocks
                            .into_iter()
                            .map(|mut blk| {
                                blk.f.a = convbn(blk.f.a);
                                blk.f.b = convbn(blk.f.b);
                                blk.f.c = convbn(blk.f.c);
                                blk.proj = blk.proj.map(convbn);
                                blk
                            })
                            .collect();
                    }
                }
                Backbone::ResNet(r)
            }
            Backbone::MobileNetV2(mut m) => {
                // Stages end at `features.1`, `.3`, `.6`, `.13`, `.17`; the last one also takes the
                // final 1x1 conv (`features.18`), so n = 6 freezes the whole trunk.
                const ENDS: [usize; 5] = [1, 3, 6, 13, 17];
                m.stem = convbn(m.stem);
                let last = if n >= 2 { ENDS[(n - 2).min(4)] } else { 0 };
                if n >= 6 {
                    m.head = convbn(m.head);
                }
                let blocks = std::mem::take(&mut m.blocks);
                m.blocks = blocks
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut blk)| {
                        if i < last {
                            blk.expand = blk.expand.map(convbn);
                            blk.depthwise = convbn(blk.depthwise);
                            blk.project = convbn(blk.project);
                        }
                        blk
                    })
                    .collect();
                Backbone::MobileNetV2(m)
            }
        }
    }
}

/// Host copies of every float parameter/buffer of a module, by id.
pub(crate) fn collect_values<M: Module>(module: &M) -> HashMap<ParamId, (Vec<usize>, Vec<f32>)> {
    struct Collect(HashMap<ParamId, (Vec<usize>, Vec<f32>)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            self.0.insert(param.id, (shape, t.into_data().try_into_vec::<f32>().expect("f32 tensor")));
        }
    }
    let mut c = Collect(HashMap::new());
    module.visit(&mut c);
    c.0
}
