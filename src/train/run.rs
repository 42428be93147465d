//! The training loop: run directory, checkpoints (safetensors, authors' key names) with the
//! optimizer state beside them, metrics log, exact resume, clean stop on request.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::config::TrainConfig;
use super::data::{Dataset, Loader, Schedule};
use super::head::{accuracy, HeadSpec};
use super::init::{fresh_model, HeadLayout};
use super::sgd::{Grads, Sgd, SgdConfig};
use super::{TrainError, Trainable};
use crate::checkpoint::{write_safetensors, Checkpoint, NamedTensor};
use crate::pretrained::Pretrained;

/// `state.json` in a run directory: the latest complete checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Optimizer steps completed when the checkpoint was saved.
    pub step: usize,
    /// 0-based epoch of the last completed step.
    pub epoch: usize,
    /// The model checkpoint, relative to the run directory (`checkpoints/step-NNNNNNN.safetensors`).
    pub checkpoint: String,
    /// The SGD momentum buffers saved with it, relative to the run directory.
    pub optimizer: String,
    /// What the data order depends on; a resume with different values would not be exact.
    #[serde(default)]
    pub data: Option<DataIdentity>,
}

/// Everything that decides which images each step sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// Number of training images.
    pub samples: usize,
    /// Number of classes.
    pub classes: usize,
    /// SHA-256 of the sample list (path and class of every image, in order) and the class table.
    pub data_sha256: String,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation).
    pub accum: usize,
    /// Seed of the data order and augmentation.
    pub seed: u64,
}

impl DataIdentity {
    fn of(dataset: &Dataset, cfg: &TrainConfig) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for s in &dataset.samples {
            h.update(s.path.to_string_lossy().as_bytes());
            h.update(format!("\t{}\n", s.class).as_bytes());
        }
        h.update(dataset.class_table().as_bytes());
        Self {
            samples: dataset.samples.len(),
            classes: dataset.classes.len(),
            data_sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            batch_size: cfg.batch_size,
            accum: cfg.accum,
            seed: cfg.seed,
        }
    }

    /// The fields that differ, for the error message.
    fn differences(&self, now: &Self) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name} {a} -> {b}"));
            }
        };
        cmp("images", self.samples.to_string(), now.samples.to_string());
        cmp("classes", self.classes.to_string(), now.classes.to_string());
        cmp("image list", self.data_sha256[..12].to_string(), now.data_sha256[..12].to_string());
        cmp("batch_size", self.batch_size.to_string(), now.batch_size.to_string());
        cmp("accum", self.accum.to_string(), now.accum.to_string());
        cmp("seed", self.seed.to_string(), now.seed.to_string());
        d
    }
}

/// Metrics of one optimizer step (one line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Optimizer steps completed, this one included (1-based).
    pub step: usize,
    /// 0-based epoch the step belongs to.
    pub epoch: usize,
    /// Mean loss over the step's images; `None` if every image of the step failed to load.
    pub loss: Option<f64>,
    /// Top-1 training accuracy of the head over the step's images (0–1); `None` as for `loss`.
    pub accuracy: Option<f64>,
    /// Learning rate used for the step.
    pub lr: f64,
    /// Images that went into the step.
    pub images: usize,
    /// Throughput of the step, in images per second (wall clock).
    pub images_per_s: f64,
    /// Time the step waited for decoded batches (0 when loading keeps up).
    pub data_wait_s: f64,
    /// Images of the step that could not be loaded and were left out.
    pub skipped_images: usize,
}

/// Progress of a training run, reported as it happens.
pub enum Event<'a> {
    /// The run begins (or resumes).
    Started {
        /// The step the run ends at.
        total_steps: usize,
        /// Steps already done (0 for a new run).
        start_step: usize,
        /// Number of classes of the training data.
        classes: usize,
        /// Number of training images.
        images: usize,
        /// The name of the model being trained.
        model: String,
    },
    /// An optimizer step finished.
    Step(&'a StepReport),
    /// A checkpoint was saved at this path.
    Checkpoint(&'a Path),
    /// Retrieval validation of an epoch's checkpoint finished.
    Validation {
        /// The step of the checkpoint that was validated.
        step: usize,
        /// Its 0-based epoch.
        epoch: usize,
        /// Groups mAP on the validation set (0–1).
        map: f64,
    },
}

/// How a training run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The step count reached (including steps done before a resume).
    pub steps_done: usize,
    /// Whether the run stopped early on request.
    pub interrupted: bool,
    /// The last checkpoint saved by this call, if any.
    pub checkpoint: Option<PathBuf>,
}

const CHECKPOINT_DIR: &str = "checkpoints";
const KEEP_STEP_CHECKPOINTS: usize = 3;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_owned(), source }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    crate::atomic_file::write(path, crate::atomic_file::Mode::Shared, bytes).map_err(io_err(path))
}

/// Read the run directory's state (for `--resume`).
pub fn read_state(out: &Path) -> Result<RunState, TrainError> {
    let p = out.join("state.json");
    let bytes =
        std::fs::read(&p).map_err(|e| TrainError::Resume { path: p.clone(), reason: format!("{e} (no checkpoint was completed in this run directory)") })?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Resume { path: p, reason: e.to_string() })
}

fn layout(cfg: &TrainConfig, classes: usize) -> HeadLayout {
    HeadLayout {
        fg_dim: cfg.fg_dim,
        out_dim: cfg.out_dim,
        local: cfg.local_branch,
        attention: cfg.attention,
        aspp: cfg.multi_atrous,
        pooling: cfg.pooling,
        classes,
    }
}

/// The starting network: a resumed checkpoint, a DOLG checkpoint to fine-tune, or an ImageNet
/// backbone with a fresh head.
fn initial_model(cfg: &TrainConfig, classes: usize, resume: Option<&Path>, device: &Device) -> Result<Trainable, TrainError> {
    if let Some(path) = resume {
        return Trainable::load(&Checkpoint::open(path)?, cfg.fusion, device);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(super::data::mix(cfg.seed, u64::MAX, 0));
    if let Some(init) = &cfg.init {
        let ck = Checkpoint::open(init)?;
        let head_fits = ck.shape("desc_cls.weight").and_then(|s| s.first()).is_some_and(|&c| c == classes);
        if head_fits {
            return Trainable::load(&ck, cfg.fusion, device);
        }
        let out_dim = ck.shape("fc.weight").and_then(|s| s.first().copied()).unwrap_or(cfg.out_dim);
        tracing::info!("{}: no classification head for {classes} classes; starting a fresh one", init.display());
        let mut tensors = ck.named_tensors(|k| (!k.starts_with("desc_cls.")).then(|| k.to_owned()))?;
        tensors.extend(super::head::MarginHead::init_tensors(classes, out_dim, &mut rng));
        return Trainable::load(&Checkpoint::from_tensors(init, tensors), cfg.fusion, device);
    }
    let name = cfg.backbone.as_deref().unwrap_or_default();
    let path = if name == "mobilenetv2" { Pretrained::MobileNetV2.path()? } else { PathBuf::from(name) };
    let (ck, _) = fresh_model(&Checkpoint::open(&path)?, &layout(cfg, classes), &mut rng)?;
    Trainable::load(&ck, cfg.fusion, device)
}

fn save(net: &Trainable, sgd: &Sgd, cfg: &TrainConfig, data: &DataIdentity, step: usize, epoch: usize) -> Result<PathBuf, TrainError> {
    let dir = cfg.out.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let name = format!("step-{step:07}");
    let ckpt = dir.join(format!("{name}.safetensors"));
    let optim = dir.join(format!("{name}.optim.safetensors"));
    let mut meta = BTreeMap::new();
    meta.insert("format".into(), "dolg-train".into());
    meta.insert(crate::model::fusion::FUSION_METADATA_KEY.into(), cfg.fusion.name().into());
    meta.insert("dolg.model".into(), net.config.name());
    meta.insert("step".into(), step.to_string());
    meta.insert("epoch".into(), epoch.to_string());
    let tensors = net.named_tensors();
    write_safetensors(&ckpt, &tensors, meta)?;
    // Momentum buffers under the parameters' own keys and shapes (they are stored flat).
    let mut bufs = Vec::new();
    for t in &tensors {
        if let Some(b) = net.param_id(&t.name).and_then(|id| sgd.buffers.get(&id)) {
            let data = b.clone().into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 buffer");
            bufs.push(NamedTensor { name: t.name.clone(), shape: t.shape.clone(), data });
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".into(), "dolg-train-optimizer".into());
    meta.insert("optimizer".into(), "sgd".into());
    meta.insert("step".into(), step.to_string());
    write_safetensors(&optim, &bufs, meta)?;
    let state = RunState {
        step,
        epoch,
        checkpoint: format!("{CHECKPOINT_DIR}/{name}.safetensors"),
        optimizer: format!("{CHECKPOINT_DIR}/{name}.optim.safetensors"),
        data: Some(data.clone()),
    };
    write_atomic(&cfg.out.join("state.json"), serde_json::to_string_pretty(&state).expect("state").as_bytes())?;
    prune(&dir, &ckpt)?;
    Ok(ckpt)
}

/// Keep the newest few step checkpoints (and their optimizer files), and the starting point.
fn prune(dir: &Path, keep: &Path) -> Result<(), TrainError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // step 0 (the starting point) is kept for before/after comparisons.
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors") && !n.ends_with(".optim.safetensors") && n != "step-0000000.safetensors")
        })
        .collect();
    // By step number, not by name: names stop sorting once a step needs more digits.
    let step_of =
        |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")?.split('.').next()?.parse::<u64>().ok()).unwrap_or(0);
    found.sort_by_key(step_of);
    let n = found.len();
    for old in found.into_iter().take(n.saturating_sub(KEEP_STEP_CHECKPOINTS)) {
        if old != keep {
            let _ = std::fs::remove_file(&old);
            let _ = std::fs::remove_file(old.with_extension("optim.safetensors"));
        }
    }
    Ok(())
}

fn has_val_line(path: &Path, step: usize) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["step"].as_u64() == Some(step as u64) && v.get("val_map").is_some())
    })
}

/// Drop metrics lines past the resumed step (written after the last checkpoint of a crashed run).
fn truncate_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s as usize <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}

/// Train as `cfg` says. With `resume`, continue the run in `cfg.out` from its last checkpoint.
/// `stop` is polled after every step (Ctrl-C): the run then saves and returns.
pub fn run(cfg: &TrainConfig, resume: bool, stop: &AtomicBool, mut on_event: impl FnMut(Event)) -> Result<Outcome, TrainError> {
    if cfg.device != "cpu" {
        // The GPU engine (cuDNN through cudarc) has no autodiff; burn 0.22's CUDA backend, which
        // would, cannot be built offline (crate::kernels::cuda explains).
        let reason = "training runs on the CPU only: dolg's GPU engine covers inference (extract, index, search), and burn's own CUDA backend, which training would need, cannot be built without downloading LLVM".to_string();
        return Err(TrainError::Setting { key: "device", value: cfg.device.clone(), reason });
    }
    let device = crate::kernels::device(&cfg.device).map_err(|reason| TrainError::Setting { key: "device", value: cfg.device.clone(), reason })?;
    let ad = device.clone().autodiff();
    let dataset = Arc::new(Dataset::load(&cfg.data, cfg.format, cfg.images.as_deref())?);
    let out = &cfg.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let state = if resume {
        Some(read_state(out)?)
    } else {
        if out.join("state.json").exists() {
            return Err(TrainError::Data {
                path: out.clone(),
                reason: "this run directory already holds a run: continue it with --resume, or choose another --out".into(),
            });
        }
        None
    };
    let identity = DataIdentity::of(&dataset, cfg);
    if let Some(recorded) = state.as_ref().and_then(|s| s.data.as_ref()) {
        let diff = recorded.differences(&identity);
        if !diff.is_empty() {
            return Err(TrainError::Resume {
                path: out.join("state.json"),
                reason: format!("the data or batching changed since the run started ({}); the resumed run would not continue the same one", diff.join(", ")),
            });
        }
    }
    // Written after the checks, so a refused resume leaves the run's records as they were.
    write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())?;
    write_atomic(&out.join("classes.tsv"), dataset.class_table().as_bytes())?;
    let classes = dataset.classes.len();

    let mut net = initial_model(cfg, classes, state.as_ref().map(|s| out.join(&s.checkpoint)).as_deref(), &ad)?.freeze_backbone_stages(cfg.freeze_stages);
    if net.head.classes() != classes {
        return Err(TrainError::Resume {
            path: out.clone(),
            reason: format!("the checkpoint's head has {} classes but the data has {classes}", net.head.classes()),
        });
    }
    let mut sgd = Sgd::new(SgdConfig { momentum: cfg.momentum, weight_decay: cfg.weight_decay, nesterov: cfg.nesterov });
    let start_step = match &state {
        Some(s) => {
            let path = out.join(&s.optimizer);
            let ck = Checkpoint::open(&path)?;
            let inner = ad.clone().inner();
            for key in ck.keys() {
                let id = net
                    .param_id(key)
                    .ok_or_else(|| TrainError::Resume { path: path.clone(), reason: format!("momentum buffer for unknown parameter '{key}'") })?;
                let data = ck.read_f32(key)?;
                let n = data.len();
                sgd.buffers.insert(id, Tensor::<1>::from_data(TensorData::new(data, [n]), &inner));
            }
            truncate_metrics(&out.join("metrics.jsonl"), s.step)?;
            s.step
        }
        None => {
            let _ = std::fs::remove_file(out.join("metrics.jsonl"));
            0
        }
    };

    let sched = Schedule { seed: cfg.seed, batch: cfg.batch_size, accum: cfg.accum, n_samples: dataset.samples.len() };
    let per_epoch = sched.steps_per_epoch();
    if per_epoch == 0 {
        return Err(TrainError::Data {
            path: cfg.data.clone(),
            reason: format!("{} images is fewer than one batch of {}", dataset.samples.len(), cfg.batch_size),
        });
    }
    let mut total = cfg.epochs * per_epoch;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    on_event(Event::Started { total_steps: total, start_step, classes, images: dataset.samples.len(), model: net.config.name() });
    let aug = AugmentConfig { size: cfg.size, min_area: cfg.min_area, max_aspect: 4.0 / 3.0, flip: cfg.flip, lighting: cfg.lighting };
    let norm = net.config.backbone.normalization();
    let mut loader = Loader::start(dataset.clone(), sched, aug, norm, start_step * cfg.accum, total * cfg.accum, cfg.workers, 2 * cfg.workers.max(1));
    let spec = HeadSpec { kind: cfg.head, scale: cfg.scale, margin: cfg.margin };
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(io_err(&metrics_path))?;
    let mut last_ckpt = None;
    let mut step = start_step;
    let validate = |p: &Path, step: usize, epoch: usize, metrics: &mut std::fs::File, on_event: &mut dyn FnMut(Event)| -> Result<(), TrainError> {
        if let (Some(g), Some(i)) = (&cfg.val_groups, &cfg.val_images) {
            let map = super::validate::groups_map(p, cfg.fusion, &device, g, i, &cfg.val_scales)?;
            writeln!(metrics, "{}", serde_json::json!({"step": step, "epoch": epoch, "val_map": map})).map_err(io_err(&metrics_path))?;
            on_event(Event::Validation { step, epoch, map });
        }
        Ok(())
    };
    match &state {
        None => {
            // The starting point, saved and (with validation data) scored: the "before" of the run.
            let p = save(&net, &sgd, cfg, &identity, 0, 0)?;
            on_event(Event::Checkpoint(&p));
            validate(&p, 0, 0, &mut metrics, &mut on_event)?;
            last_ckpt = Some(p);
        }
        Some(s) if s.step > 0 && (s.step % per_epoch == 0 || s.step == total) && !has_val_line(&metrics_path, s.step) => {
            // The run stopped between saving an epoch's checkpoint and scoring it.
            validate(&out.join(&s.checkpoint), s.step, (s.step - 1) / per_epoch, &mut metrics, &mut on_event)?;
        }
        Some(_) => {}
    }
    while step < total {
        let epoch = step / per_epoch;
        let lr = cfg.lr_at_step(step, per_epoch);
        let t0 = Instant::now();
        let (mut grads, mut wait) = (Grads::default(), 0.0);
        let (mut loss_sum, mut hits, mut images, mut skipped, mut parts) = (0.0, 0.0, 0usize, 0usize, 0usize);
        let mut weights = Vec::with_capacity(cfg.accum);
        for _ in 0..cfg.accum {
            let Some((batch, waited)) = loader.next() else {
                return Err(TrainError::Data { path: cfg.data.clone(), reason: format!("the data loader stopped before step {} of {total}", step + 1) });
            };
            wait += waited.as_secs_f64();
            skipped += batch.failed.len();
            let n = batch.labels.len();
            if n == 0 {
                continue;
            }
            let x = Tensor::<4>::from_data(TensorData::new(batch.pixels, [n, 3, cfg.size, cfg.size]), &ad);
            let (_, outp) = net.forward(&spec, x, &batch.labels);
            loss_sum += f64::from(outp.loss.clone().into_scalar::<f32>()) * n as f64;
            hits += accuracy(&outp.logits, &batch.labels) * n as f64;
            let g = outp.loss.backward();
            let mut micro = Grads::default();
            micro.accumulate(&net.model, &g);
            micro.accumulate(&net.head, &g);
            weights.push((micro, n));
            images += n;
            parts += 1;
        }
        // The step's gradient is the per-image mean over all its micro-batches (each loss is a
        // mean over its own, possibly smaller, micro-batch). One micro-batch: used as is.
        if parts == 1 {
            grads = weights.pop().expect("one micro-batch").0;
        } else {
            for (mut micro, n) in weights {
                micro.scale(n as f64 / images as f64);
                grads.add(micro);
            }
        }
        if parts > 0 {
            net.model = sgd.step(lr, net.model, &mut grads);
            net.head = sgd.step(lr, net.head, &mut grads);
        }
        step += 1;
        let report = StepReport {
            step,
            epoch,
            loss: (images > 0).then(|| loss_sum / images as f64),
            accuracy: (images > 0).then(|| hits / images as f64),
            lr,
            images,
            images_per_s: images as f64 / t0.elapsed().as_secs_f64(),
            data_wait_s: wait,
            skipped_images: skipped,
        };
        writeln!(metrics, "{}", serde_json::to_string(&report).expect("report")).map_err(io_err(&metrics_path))?;
        on_event(Event::Step(&report));
        let epoch_end = step % per_epoch == 0;
        let interrupted = stop.load(Ordering::Relaxed);
        if epoch_end || step == total || interrupted || (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0) {
            let p = save(&net, &sgd, cfg, &identity, step, epoch)?;
            on_event(Event::Checkpoint(&p));
            if epoch_end || step == total {
                validate(&p, step, epoch, &mut metrics, &mut on_event)?;
            }
            last_ckpt = Some(p);
        }
        if interrupted {
            return Ok(Outcome { steps_done: step, interrupted: true, checkpoint: last_ckpt });
        }
    }
    Ok(Outcome { steps_done: step, interrupted: false, checkpoint: last_ckpt })
}
