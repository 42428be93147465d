//! Class-labelled training images: GLDv2 list files (`path class_id`), the Kaggle
//! `train_clean.csv` (`landmark_id,images`, ids → `a/b/c/abc….jpg`), and folder-per-class trees.
//! Class ids are remapped to `0..C-1`; the mapping is written to the run directory.
//!
//! [`Loader`] decodes and augments on worker threads ahead of the network. Work is cut into
//! micro-batches whose content and augmentation depend only on (seed, epoch, position), so a
//! resumed run sees exactly the data an uninterrupted one would.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{augment, AugmentConfig};
use super::TrainError;
use crate::decode::{decode_file, DecodeLimits, IMAGE_EXTENSIONS};
use crate::preprocess::Normalization;

/// How the training data is given (`format` in the training config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A directory → folder per class; `*.csv` → Kaggle GLDv2; anything else → list file.
    #[default]
    Auto,
    /// Lines `relative/path.jpg class_id`.
    List,
    /// GLDv2 `train_clean.csv`: `landmark_id,images` with space-separated image ids.
    Kaggle,
    /// `ROOT/<class>/<image>`.
    Folder,
}

/// One training image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image file (resolved against the images root).
    pub path: PathBuf,
    /// Its class index into [`Dataset::classes`].
    pub class: usize,
}

/// The training images with their classes, class ids remapped to `0..C`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Every training image, in the order read.
    pub samples: Vec<Sample>,
    /// Original class id of each class index.
    pub classes: Vec<String>,
}

fn data_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Data { path: path.to_owned(), reason: reason.into() }
}

impl Dataset {
    /// Read `source` in `format`; relative image paths resolve against `images` (default: the
    /// list's directory, or the folder itself).
    pub fn load(source: &Path, format: DataFormat, images: Option<&Path>) -> Result<Self, TrainError> {
        let format = match format {
            DataFormat::Auto if source.is_dir() => DataFormat::Folder,
            DataFormat::Auto if source.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => DataFormat::Kaggle,
            DataFormat::Auto => DataFormat::List,
            f => f,
        };
        let base = images.map(Path::to_path_buf).unwrap_or_else(|| {
            if format == DataFormat::Folder {
                source.to_owned()
            } else {
                source.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        });
        let pairs = match format {
            DataFormat::Folder => read_folder(source)?,
            DataFormat::Kaggle => read_kaggle(source, &base)?,
            _ => read_list(source, &base)?,
        };
        if pairs.is_empty() {
            return Err(data_err(source, "no training images"));
        }
        Ok(Self::from_pairs(pairs))
    }

    /// Remap class ids to `0..C-1` in sorted order (numerically when every id is a number).
    pub fn from_pairs(pairs: Vec<(PathBuf, String)>) -> Self {
        let ids: BTreeSet<&str> = pairs.iter().map(|(_, c)| c.as_str()).collect();
        let mut classes: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        if classes.iter().all(|c| c.parse::<u64>().is_ok()) {
            classes.sort_by_key(|c| c.parse::<u64>().unwrap());
        }
        let index: BTreeMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
        let samples = pairs.iter().map(|(p, c)| Sample { path: p.clone(), class: index[c.as_str()] }).collect();
        Self { samples, classes }
    }

    /// `index<TAB>original_id` lines.
    pub(crate) fn class_table(&self) -> String {
        let mut s = String::from("index\tclass_id\n");
        for (i, c) in self.classes.iter().enumerate() {
            s.push_str(&format!("{i}\t{c}\n"));
        }
        s
    }
}

fn read_text(path: &Path) -> Result<String, TrainError> {
    std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.to_owned(), source })
}

fn read_list(path: &Path, base: &Path) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (p, c) = line
            .rsplit_once(|ch: char| ch.is_whitespace())
            .ok_or_else(|| data_err(path, format!("line {}: expected '<image path> <class id>', found '{line}'", i + 1)))?;
        out.push((base.join(p.trim()), c.to_owned()));
    }
    Ok(out)
}

/// GLDv2 image id `abc123…` → `a/b/c/abc123….jpg`.
pub(crate) fn gldv2_path(id: &str) -> Option<PathBuf> {
    let mut ch = id.chars();
    let (a, b, c) = (ch.next()?, ch.next()?, ch.next()?);
    Some(PathBuf::from(format!("{a}/{b}/{c}/{id}.jpg")))
}

fn read_kaggle(path: &Path, base: &Path) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().replace(' ', "") == "landmark_id,images" => {}
        Some((_, h)) => return Err(data_err(path, format!("line 1: expected the header 'landmark_id,images', found '{h}'"))),
        None => return Err(data_err(path, "empty file")),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let (class, ids) = line.split_once(',').ok_or_else(|| data_err(path, format!("line {}: expected 'landmark_id,images'", i + 1)))?;
        let class = class.trim();
        if class.parse::<u64>().is_err() {
            return Err(data_err(path, format!("line {}: landmark id '{class}' is not a number", i + 1)));
        }
        for id in ids.split_whitespace() {
            let rel = gldv2_path(id).ok_or_else(|| data_err(path, format!("line {}: image id '{id}' is shorter than 3 characters", i + 1)))?;
            out.push((base.join(rel), class.to_owned()));
        }
    }
    Ok(out)
}

fn read_folder(root: &Path) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let io = |source| TrainError::Io { path: root.to_owned(), source };
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        let class = d.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|source| TrainError::Io { path: d.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (f, class.clone())));
    }
    Ok(out)
}

/// How one run cuts the data: `batch` images per optimizer step, in `accum` micro-batches.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Seed of the epoch permutations (and of the augmentation).
    pub seed: u64,
    /// Images per optimizer step.
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation); divides `batch`.
    pub accum: usize,
    /// Number of training images.
    pub n_samples: usize,
}

impl Schedule {
    /// Images per micro-batch (`batch / accum`).
    pub fn micro(&self) -> usize {
        self.batch / self.accum
    }
    /// Optimizer steps per epoch (the last incomplete batch is dropped, as in the authors' loader).
    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.n_samples / self.batch
    }
    /// Sample order of an epoch: a permutation seeded by (seed, epoch).
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.n_samples).collect();
        v.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.seed, epoch as u64, u64::MAX)));
        v
    }
    /// Micro-batch `m` (0-based over the whole run) → (epoch, positions in that epoch's order).
    pub(crate) fn micro_batch(&self, m: usize) -> (usize, std::ops::Range<usize>) {
        let per_epoch = self.steps_per_epoch() * self.accum;
        let (epoch, k) = (m / per_epoch, m % per_epoch);
        (epoch, k * self.micro()..(k + 1) * self.micro())
    }
}

/// SplitMix64-style mixing of (seed, epoch, position) into an RNG seed.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One micro-batch, ready for the network.
#[derive(Debug)]
pub struct Batch {
    /// [n, 3, size, size] CHW float32.
    pub pixels: Vec<f32>,
    /// Class index of each image, in `pixels` order.
    pub labels: Vec<usize>,
    /// Images that could not be read, with the reason (skipped; the batch is smaller).
    pub failed: Vec<(PathBuf, String)>,
}

struct Shared {
    next: usize,
    consumed: usize,
}

/// Background decoding/augmentation of micro-batches `start..end`, delivered in order.
pub struct Loader {
    rx: mpsc::Receiver<(usize, Batch)>,
    ready: BTreeMap<usize, Batch>,
    next: usize,
    state: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Loader {
    /// Start `workers` threads preparing micro-batches `start..end`, at most `prefetch` ahead of
    /// the consumer.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        dataset: Arc<Dataset>,
        sched: Schedule,
        aug: AugmentConfig,
        norm: Normalization,
        start: usize,
        end: usize,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let state = Arc::new((Mutex::new(Shared { next: start, consumed: start }), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let warned = Arc::new(Mutex::new(HashSet::new()));
        let orders = Arc::new(Mutex::new(BTreeMap::<usize, Arc<Vec<usize>>>::new()));
        let handles = (0..workers.max(1))
            .map(|_| {
                let (tx, state, stop, dataset, warned, orders) = (tx.clone(), state.clone(), stop.clone(), dataset.clone(), warned.clone(), orders.clone());
                std::thread::spawn(move || loop {
                    let m = {
                        let (lock, cv) = &*state;
                        let mut s = lock.lock().unwrap();
                        while !stop.load(Ordering::Relaxed) && s.next < end && s.next >= s.consumed + prefetch.max(1) {
                            s = cv.wait(s).unwrap();
                        }
                        if stop.load(Ordering::Relaxed) || s.next >= end {
                            return;
                        }
                        s.next += 1;
                        s.next - 1
                    };
                    let (epoch, range) = sched.micro_batch(m);
                    let order = {
                        let mut o = orders.lock().unwrap();
                        o.retain(|&e, _| e + 1 >= epoch);
                        o.entry(epoch).or_insert_with(|| Arc::new(sched.order(epoch))).clone()
                    };
                    // A panic while preparing one batch (a decoder bug on some file) must not leave a
                    // hole that the in-order consumer would wait on forever: the batch's images are
                    // reported as failed and the run goes on.
                    let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        build_batch(&dataset, &order, sched.seed, epoch, range.clone(), &aug, &norm, &warned)
                    }))
                    .unwrap_or_else(|panic| {
                        let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                        let failed =
                            range.map(|pos| (dataset.samples[order[pos]].path.clone(), format!("internal error while preparing this batch: {why}"))).collect();
                        Batch { pixels: Vec::new(), labels: Vec::new(), failed }
                    });
                    if tx.send((m, batch)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Self { rx, ready: BTreeMap::new(), next: start, state, stop, workers: handles }
    }
}

impl Iterator for Loader {
    /// A micro-batch, and how long the caller waited for it.
    type Item = (Batch, std::time::Duration);

    /// The next micro-batch in order; `None` once all of them were delivered.
    fn next(&mut self) -> Option<Self::Item> {
        let t0 = std::time::Instant::now();
        let batch = loop {
            if let Some(b) = self.ready.remove(&self.next) {
                break b;
            }
            match self.rx.recv() {
                Ok((m, b)) => {
                    self.ready.insert(m, b);
                }
                Err(_) => return None,
            }
        };
        self.next += 1;
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().consumed = self.next;
        cv.notify_all();
        Some((batch, t0.elapsed()))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        {
            // Under the lock: a worker between its stop check and its wait cannot miss the wake-up.
            let _guard = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
            self.stop.store(true, Ordering::Relaxed);
        }
        self.state.1.notify_all();
        // Unblock senders, then wait for the workers so no thread outlives the run.
        while self.rx.try_recv().is_ok() {}
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_batch(
    dataset: &Dataset,
    order: &[usize],
    seed: u64,
    epoch: usize,
    range: std::ops::Range<usize>,
    aug: &AugmentConfig,
    norm: &Normalization,
    warned: &Mutex<HashSet<PathBuf>>,
) -> Batch {
    let limits = DecodeLimits::default();
    let mut batch = Batch { pixels: Vec::with_capacity(range.len() * 3 * aug.size * aug.size), labels: Vec::new(), failed: Vec::new() };
    for pos in range {
        let sample = &dataset.samples[order[pos]];
        match decode_file(&sample.path, &limits) {
            Ok(img) => {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, epoch as u64, pos as u64));
                batch.pixels.extend(augment(&img, norm, aug, &mut rng));
                batch.labels.push(sample.class);
            }
            Err(e) => {
                if warned.lock().unwrap().insert(sample.path.clone()) {
                    tracing::warn!("skipping unreadable training image: {e}");
                }
                batch.failed.push((sample.path.clone(), e.to_string()));
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_kaggle_formats_remap_classes() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("train.txt");
        std::fs::write(&list, "# comment\nimgs/a.jpg 138982\nimgs/b.jpg 7\n\nimgs/c.jpg 138982\n").unwrap();
        let d = Dataset::load(&list, DataFormat::Auto, None).unwrap();
        assert_eq!(d.classes, ["7", "138982"], "numeric ids sort numerically");
        assert_eq!(d.samples.iter().map(|s| s.class).collect::<Vec<_>>(), [1, 0, 1]);
        assert_eq!(d.samples[0].path, dir.path().join("imgs/a.jpg"));

        let csv = dir.path().join("train_clean.csv");
        std::fs::write(&csv, "landmark_id,images\n1,17660ef415d37059 92b6290d571448f6\n5,cd41bf948edc0340\n").unwrap();
        let d = Dataset::load(&csv, DataFormat::Auto, Some(Path::new("/data/train"))).unwrap();
        assert_eq!(d.samples.len(), 3);
        assert_eq!(d.samples[0].path, Path::new("/data/train/1/7/6/17660ef415d37059.jpg"));
        assert_eq!(d.samples[2].class, 1);
        assert!(d.class_table().contains("1\t5\n"));
    }

    #[test]
    fn malformed_inputs_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("bad.txt");
        std::fs::write(&list, "ok.jpg 1\nnoclass\n").unwrap();
        let e = Dataset::load(&list, DataFormat::List, None).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("line 2"), "{e}");
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, "id,url\n").unwrap();
        let e = Dataset::load(&csv, DataFormat::Auto, None).unwrap_err().to_string();
        assert!(e.contains("landmark_id,images"), "{e}");
        std::fs::write(&csv, "landmark_id,images\nabc,1234\n").unwrap();
        let e = Dataset::load(&csv, DataFormat::Auto, None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("abc"), "{e}");
    }

    #[test]
    fn schedule_covers_each_epoch_once_and_is_seeded() {
        let s = Schedule { seed: 3, batch: 4, accum: 2, n_samples: 10 };
        assert_eq!((s.micro(), s.steps_per_epoch()), (2, 2));
        let o = s.order(0);
        let mut sorted = o.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(o, s.order(0));
        assert_ne!(o, s.order(1));
        assert_eq!(s.micro_batch(0), (0, 0..2));
        assert_eq!(s.micro_batch(3), (0, 6..8));
        assert_eq!(s.micro_batch(4), (1, 0..2));
    }
}
