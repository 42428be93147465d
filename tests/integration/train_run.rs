//! `dolg train` end to end on small real data (the bundled landmark photos), with the fixture
//! DOLG-R50 checkpoint as the starting point: an interrupted-and-resumed run reproduces an
//! uninterrupted one bit for bit; Ctrl-C saves and exits 130; every ablation trains and its
//! checkpoint loads for extraction with the right architecture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::shared_dir;
use burn::tensor::{Device, Tensor, TensorData};
use dolg::checkpoint::{write_safetensors, Checkpoint};
use dolg::model::{Fusion, RetrievalModel};
use dolg::train::run::{read_state, run, Event};
use dolg::train::TrainConfig;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/landmarks");

/// A `path class` list of the grouped example photos.
fn example_list(dir: &Path) -> PathBuf {
    let csv = std::fs::read_to_string(Path::new(EXAMPLES).join("groups.csv")).unwrap();
    let lines: String = csv.lines().skip(1).filter_map(|l| l.split_once(',')).filter(|(_, g)| !g.is_empty()).map(|(i, g)| format!("{i} {g}\n")).collect();
    let p = dir.join("train.txt");
    std::fs::write(&p, lines).unwrap();
    p
}

fn base_config(shared: &Path, dir: &Path, out: &str) -> TrainConfig {
    TrainConfig {
        data: example_list(dir),
        images: Some(Path::new(EXAMPLES).join("images")),
        init: Some(shared.join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")),
        size: 64,
        batch_size: 4,
        accum: 2,
        epochs: 3,
        lr_batch: 4,
        base_lr: 0.001,
        warmup_epochs: 1.0,
        seed: 5,
        workers: 2,
        out: dir.join(out),
        ..Default::default()
    }
}

fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let ck = Checkpoint::open(path).unwrap();
    ck.keys().map(|k| (k.to_owned(), ck.read_f32(k).unwrap())).collect()
}

/// step, epoch, loss, accuracy, lr of each metrics line (timing fields differ between runs).
fn metrics(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {} {} {} {}", v["step"], v["epoch"], v["loss"], v["accuracy"], v["lr"])
        })
        .collect()
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn interrupted_and_resumed_run_reproduces_an_uninterrupted_one() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);

    // Uninterrupted: 11 steps = 1 full epoch (9 x 4 of 38 images... whatever the data gives) and more.
    let full = TrainConfig { max_steps: 11, ..base_config(&shared, dir.path(), "full") };
    let a = run(&full, false, &never, |_| {}).unwrap();
    assert_eq!(a.steps_done, 11);
    assert!(!a.interrupted);

    // Interrupted at step 3 (mid-epoch, not a checkpoint boundary), then resumed.
    let cut = TrainConfig { out: dir.path().join("cut"), ..full.clone() };
    let stop = AtomicBool::new(false);
    let b = run(&cut, false, &stop, |ev| {
        if let Event::Step(r) = ev {
            if r.step == 3 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    })
    .unwrap();
    assert!(b.interrupted);
    assert_eq!(b.steps_done, 3);
    assert_eq!(read_state(&cut.out).unwrap().step, 3);
    let c = run(&cut, true, &never, |_| {}).unwrap();
    assert_eq!(c.steps_done, 11);

    let fa = tensors(&full.out.join("checkpoints/step-0000011.safetensors"));
    let fb = tensors(&cut.out.join("checkpoints/step-0000011.safetensors"));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs after resume");
    }
    // Saved under exactly the authors' keys and shapes (the fixture checkpoint's, less BatchNorm
    // counters), with a fresh 14-class head since the fixture's has 10 classes.
    let shapes = |ck: &Checkpoint| -> BTreeMap<String, Vec<usize>> {
        ck.keys()
            .filter(|k| !k.ends_with("num_batches_tracked") && !k.starts_with("desc_cls."))
            .map(|k| (k.to_owned(), ck.shape(k).unwrap().to_vec()))
            .collect()
    };
    let trained = Checkpoint::open(&full.out.join("checkpoints/step-0000011.safetensors")).unwrap();
    assert_eq!(shapes(&trained), shapes(&Checkpoint::open(full.init.as_ref().unwrap()).unwrap()));
    assert_eq!(trained.shape("desc_cls.weight"), Some(&[14usize, 512][..]));
    assert_eq!(trained.shape("desc_cls.t"), Some(&[1usize][..]));
    // The weights moved, the head's t moved, and the momentum buffers are identical too.
    let start = tensors(&full.out.join("checkpoints/step-0000000.safetensors"));
    assert!(start["fc.weight"] != fa["fc.weight"]);
    assert!(start["desc_cls.t"] != fa["desc_cls.t"]);
    assert!(start["localmodel.bn.running_var"] != fa["localmodel.bn.running_var"]);
    let oa = tensors(&full.out.join("checkpoints/step-0000011.optim.safetensors"));
    let ob = tensors(&cut.out.join("checkpoints/step-0000011.optim.safetensors"));
    assert_eq!(oa, ob);
    assert!(oa.contains_key("globalmodel.stem.conv.weight") && oa.contains_key("desc_cls.weight"));
    assert_eq!(metrics(&full.out), metrics(&cut.out));
    // Older step checkpoints are pruned; the starting point stays.
    let names: Vec<String> = std::fs::read_dir(full.out.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"step-0000000.safetensors".to_string()), "{names:?}");
    assert!(names.iter().filter(|n| !n.ends_with(".optim.safetensors")).count() <= 4, "{names:?}");

    // A resume with other batching is refused, and leaves the run's records untouched.
    let config_before = std::fs::read_to_string(cut.out.join("config.toml")).unwrap();
    let other = TrainConfig { batch_size: 2, accum: 1, ..cut.clone() };
    let e = run(&other, true, &never, |_| {}).unwrap_err().to_string();
    assert!(e.contains("batch_size 4 -> 2") && e.contains("accum 2 -> 1"), "{e}");
    assert_eq!(std::fs::read_to_string(cut.out.join("config.toml")).unwrap(), config_before);

    // The run refuses to overwrite itself, and the checkpoint loads for extraction.
    let e = run(&full, false, &never, |_| {}).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let model =
        RetrievalModel::dolg(&Checkpoint::open(&full.out.join("checkpoints/step-0000011.safetensors")).unwrap(), None, Fusion::Orthogonal, &Device::flex())
            .unwrap();
    assert_eq!(model.out_dim(), 512);
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn ctrl_c_saves_and_resume_finishes() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = base_config(&shared, dir.path(), "run");
    let toml_path = dir.path().join("run.toml");
    std::fs::write(&toml_path, cfg.to_toml()).unwrap();
    let bin = env!("CARGO_BIN_EXE_dolg");
    let mut child = Command::new(bin).args(["train", "--config"]).arg(&toml_path).args(["--max-steps", "200", "--threads", "2"]).spawn().unwrap();
    let metrics = cfg.out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 2 {
        assert!(t0.elapsed().as_secs() < 300, "training made no progress");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is our own
    // child's, not yet waited for, so it cannot have been reused.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130 after saving");
    let saved = read_state(&cfg.out).unwrap().step;
    assert!((2..200).contains(&saved));
    assert_eq!(std::fs::read_to_string(&metrics).unwrap().lines().count(), saved, "one metrics line per completed step");

    let out = Command::new(bin).args(["train", "--resume"]).arg(&cfg.out).args(["--max-steps", &(saved + 1).to_string(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"], saved + 1);
    assert_eq!(v["interrupted"], false);
}

/// A bare ImageNet-style backbone file (keys at the root), cut from the fixture checkpoint.
fn bare_backbone(shared: &Path, dir: &Path) -> PathBuf {
    let ck = Checkpoint::open(&shared.join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz")).unwrap();
    let t = ck.named_tensors(|k| k.strip_prefix("globalmodel.").map(str::to_owned)).unwrap();
    let p = dir.join("r50.safetensors");
    write_safetensors(&p, &t, Default::default()).unwrap();
    p
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn every_ablation_trains_and_loads_for_extraction() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let backbone = bare_backbone(&shared, dir.path());
    let base = TrainConfig {
        init: None,
        backbone: Some(backbone.display().to_string()),
        fg_dim: 64,
        out_dim: 32,
        batch_size: 2,
        accum: 1,
        max_steps: 1,
        ..base_config(&shared, dir.path(), "x")
    };
    type Check = fn(&dolg::model::DolgConfig) -> bool;
    let cases: Vec<(&str, TrainConfig, Check, &[&str])> = vec![
        ("paper", base.clone(), |c| c.local && c.attention && c.aspp.is_none() && c.fusion == Fusion::Orthogonal, &["localmodel.conv2.weight", "pool_g.p"]),
        ("concat", TrainConfig { fusion: Fusion::Concat, ..base.clone() }, |c| c.fusion == Fusion::Concat, &[]),
        ("hadamard", TrainConfig { fusion: Fusion::Hadamard, ..base.clone() }, |c| c.fusion == Fusion::Hadamard, &[]),
        ("gap", TrainConfig { pooling: dolg::model::Pooling::Gap, ..base.clone() }, |c| c.pooling == dolg::model::Pooling::Gap, &[]),
        ("no-local", TrainConfig { local_branch: false, ..base.clone() }, |c| !c.local, &[]),
        ("no-attention", TrainConfig { attention: false, ..base.clone() }, |c| c.local && !c.attention, &[]),
        (
            "ma",
            TrainConfig { multi_atrous: Some(dolg::model::AsppKind::Official), ..base.clone() },
            |c| c.aspp == Some(dolg::model::AsppKind::Official),
            &["localmodel.aspp.im_pool.1.weight"],
        ),
        ("ma-paper", TrainConfig { multi_atrous: Some(dolg::model::AsppKind::Paper), ..base.clone() }, |c| c.aspp == Some(dolg::model::AsppKind::Paper), &[]),
    ];
    let never = AtomicBool::new(false);
    for (name, cfg, check, keys) in cases {
        let cfg = TrainConfig { out: dir.path().join(name), ..cfg };
        let o = run(&cfg, false, &never, |_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ck = Checkpoint::open(o.checkpoint.as_ref().unwrap()).unwrap();
        for k in keys {
            assert!(ck.contains(k), "{name}: missing {k}");
        }
        assert_eq!(ck.contains("pool_g.p"), cfg.pooling == dolg::model::Pooling::Gem, "{name}");
        assert_eq!(ck.contains("localmodel.conv2.weight"), cfg.local_branch && cfg.attention, "{name}");
        assert_eq!(ck.metadata().get(dolg::model::fusion::FUSION_METADATA_KEY).map(String::as_str), Some(cfg.fusion.name()), "{name}: fusion not recorded");
        let fusion = Fusion::recorded_in(ck.metadata());
        assert_eq!(fusion, cfg.fusion, "{name}: fusion recorded in the checkpoint");
        let (model, config) = dolg::model::Dolg::load(&ck, None, fusion, dolg::model::BatchNorm::Fold, &Device::flex()).unwrap();
        assert!(check(&config), "{name}: loaded as {config:?}");
        let x = Tensor::<4>::from_data(TensorData::new(vec![0.1f32; 3 * 64 * 64], [1, 3, 64, 64]), &Device::flex());
        let d: Vec<f32> = model.forward(x).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(d.len(), 32);
        assert!(d.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn unreadable_training_images_are_skipped_and_reported() {
    use dolg::train::augment::AugmentConfig;
    use dolg::train::data::{Dataset, Loader, Schedule};
    let shared = shared_dir();
    let bad = shared.join("data/bad-inputs");
    let good = Path::new(EXAMPLES).join("images/lg-building_1.jpg");
    let pairs = vec![
        (good.clone(), "a".to_string()),
        (bad.join("truncated.jpg"), "a".into()),
        (bad.join("bomb_60000x60000.png"), "b".into()),
        (bad.join("not_an_image.png"), "b".into()),
        (good, "b".into()),
        (bad.join("tiny_1x1.png"), "a".into()),
    ];
    let ds = std::sync::Arc::new(Dataset::from_pairs(pairs));
    let sched = Schedule { seed: 1, batch: 6, accum: 1, n_samples: 6 };
    let aug = AugmentConfig { size: 32, ..Default::default() };
    let mut loader = Loader::start(ds, sched, aug, dolg::preprocess::Normalization::DOLG, 0, 1, 2, 2);
    let (batch, _) = loader.next().unwrap();
    // The two real photos and the 1x1 PNG are usable; the truncated, bomb and non-image files are reported by path.
    assert_eq!(batch.labels.len() + batch.failed.len(), 6);
    let failed: Vec<String> = batch.failed.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for f in ["bomb_60000x60000.png", "not_an_image.png"] {
        assert!(failed.iter().any(|x| x == f), "{f} not reported: {failed:?}");
    }
    assert!(batch.labels.len() >= 2, "good images lost: {failed:?}");
    assert_eq!(batch.pixels.len(), batch.labels.len() * 3 * 32 * 32);
    assert!(batch.pixels.iter().all(|v| v.is_finite()));
    assert!(loader.next().is_none(), "only one micro-batch was asked for");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn frozen_backbone_stays_put_while_the_head_trains() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { freeze_stages: 5, max_steps: 2, accum: 1, batch_size: 2, base_lr: 0.01, ..base_config(&shared, dir.path(), "frozen") };
    run(&cfg, false, &AtomicBool::new(false), |_| {}).unwrap();
    let before = tensors(&cfg.out.join("checkpoints/step-0000000.safetensors"));
    let after = tensors(&cfg.out.join("checkpoints/step-0000002.safetensors"));
    for (k, v) in &before {
        let moved = v != &after[k];
        if k.starts_with("globalmodel.") {
            // Weights and BatchNorm statistics of a frozen trunk do not change.
            assert!(!moved, "{k} changed in a frozen backbone");
        } else if !k.ends_with(".bias") || k.starts_with("fc") {
            assert!(moved || k == "desc_cls.t", "{k} did not train");
        }
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn validation_runs_at_the_start_each_epoch_end_and_the_last_step_even_across_a_stop() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        accum: 1,
        max_steps: 9, // one epoch is 8 steps (34 images, batch 4): the last step is mid-epoch
        val_groups: Some(Path::new(EXAMPLES).join("groups.csv")),
        val_images: Some(Path::new(EXAMPLES).join("images")),
        val_scales: vec![0.25],
        ..base_config(&shared, dir.path(), "val")
    };
    // Stopped on the last step of epoch 0: the checkpoint is saved and scored before exiting.
    let stop = AtomicBool::new(false);
    let mut scored = Vec::new();
    run(&cfg, false, &stop, |ev| match ev {
        Event::Step(r) if r.step == 8 => stop.store(true, Ordering::Relaxed),
        Event::Validation { step, map, .. } => scored.push((step, map)),
        _ => {}
    })
    .unwrap();
    assert_eq!(scored.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 8]);
    assert!(scored.iter().all(|(_, m)| (0.0..=1.0).contains(m)));
    let o = run(&cfg, true, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(o.steps_done, 9);
    let val_steps: Vec<u64> = std::fs::read_to_string(cfg.out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("val_map").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(val_steps, [0, 8, 9], "one score per epoch end, the last step, and the start; none repeated");
}
