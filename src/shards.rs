//! Resumable, shardable bulk extraction: descriptors written to disk as they are made, so a long
//! run that is killed loses at most one shard, and a run split over a cluster's job array.
//!
//! # The shard folder
//!
//! An extraction into `OUT.npy` ([`ShardedRun`]) works in the folder `OUT.shards/` beside it
//! ([`shard_folder`]). The inputs it processes (all of them, or one [`Part`] of them) are cut into
//! consecutive blocks of `shard_rows` inputs; block K, once described, is written as
//!
//! * `shard-00000K.npy` + `shard-00000K.names.txt`: the rows of the block's inputs that were
//!   described and their names, one consistent pair ([`write_descriptors`]);
//! * `shard-00000K.failures.json`: the block's record: how many rows it has and every input that
//!   could not be described, with its position in the input list, its path and the error. A failed
//!   input is thereby *done*: a resumed run does not retry it, and the final report lists it;
//!
//! and then `progress.json` is replaced: the run's identity and how many shards (and inputs) are
//! done. That replacement is the commit point: a shard counts only once `progress.json` says so,
//! and shard files past that count (a run killed while writing them) are simply written again.
//! Every file is replaced through [`atomic_file`], so each is complete or absent.
//!
//! `progress.json` and the records are JSON followed by a line `sha256 <hex>` of the JSON's bytes;
//! a file whose checksum does not match is reported as damaged, never used.
//!
//! # Identity and resuming
//!
//! The run's [`Identity`] is the number of inputs and a SHA-256 of their ordered list
//! ([`input_list_digest`]), the model's fingerprint ([`ModelSpec::fingerprint`]), the descriptor
//! dimension and the options that change descriptors (crop, decode limits, …); `progress.json`
//! also records the [`Part`] and `shard_rows`. Opening a folder that exists is an error
//! ([`ShardError::Exists`]) unless resuming, and resuming with anything different is refused,
//! naming what differs ([`ShardError::Mismatch`]). A resumed run describes only the inputs of the
//! shards not yet committed, and ends with the same bytes an uninterrupted run writes: both merge
//! the same shards the same way.
//!
//! # The end
//!
//! [`ShardedRun::finish`] merges the shards, streamed one at a time (memory stays bounded by one
//! shard), into `OUT.npy` + `OUT.names.txt` ([`write_descriptors_with`]); for a part it then writes
//! the part record `OUT.part.json` ([`part_record_path`]); then the shard folder is removed. A run
//! killed during that step is resumed by merging again.
//!
//! # Parts (`--shard I/N`)
//!
//! Part I of N takes the inputs whose position `p` in the input list (0-based) has
//! `p % N == I - 1`: round robin, so that the parts get similar mixes of large and small images
//! even when a folder's photos differ from the next folder's. Its `OUT.npy` holds the rows of its
//! inputs in input order, and `OUT.part.json` records I, N, the run's identity, the row count and
//! the failed inputs with their positions; from these the position of every row follows.
//! [`merge_parts`] joins all N parts into one pair in input order, row for row the output of an
//! unsharded run over the same inputs.
//!
//! # Failpoint (for tests)
//!
//! `DOLG_FAILPOINT=extract-shard:K` aborts the process ([`std::process::abort`], as a crash would)
//! right after shard K (counting from 0, as in its file name) is committed. Other values of the
//! variable belong to the failpoints of [`atomic_file`] and of the index store.
//!
//! [`ModelSpec::fingerprint`]: crate::spec::ModelSpec::fingerprint

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_file::{self, Mode};
use crate::descriptors::{names_path, read_matrix_with_names, read_names, write_descriptors, write_descriptors_with, DescriptorError, Extractor};
use crate::preprocess::CropBox;

/// Inputs per shard unless told otherwise: a few minutes of work on a CPU, 2 MB of descriptors.
pub const DEFAULT_SHARD_ROWS: usize = 1000;
/// `DOLG_FAILPOINT=extract-shard:K` (see the module documentation).
pub(crate) const FAILPOINT: &str = "extract-shard";

const PROGRESS_FORMAT: &str = "dolg-extract-progress/1";
const SHARD_FORMAT: &str = "dolg-extract-shard/1";
const PART_FORMAT: &str = "dolg-extract-part/1";
const PROGRESS_FILE: &str = "progress.json";

/// Why a sharded extraction could not be started, resumed, finished or merged.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A file of the run could not be read, written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// A shard's or the output's descriptor files could not be read or written.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The shard folder exists and `--resume` was not given.
    #[error("{dir} exists: an extraction into {out} was started there and not finished; continue it with --resume, or remove the folder to start over")]
    Exists {
        /// The shard folder.
        dir: PathBuf,
        /// The output file it belongs to.
        out: PathBuf,
    },
    /// A resume with different inputs, model or options than the interrupted run.
    #[error("cannot resume the extraction in {dir}: {what} changed ({was} in the interrupted run, {now} now); rerun with the original inputs, model and options, or remove the folder to start over")]
    Mismatch {
        /// The shard folder.
        dir: PathBuf,
        /// What differs (e.g. "the input list", "option crop").
        what: String,
        /// Its value in the interrupted run.
        was: String,
        /// Its value now.
        now: String,
    },
    /// A progress file, shard record or part record is malformed or fails its checksum.
    #[error("{path}: {reason}")]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A part that is not `I/N` with 1 <= I <= N (the text given).
    #[error("invalid part {0:?}: expected I/N with 1 <= I <= N, e.g. 2/8")]
    BadPart(String),
    /// `shard_rows` was 0.
    #[error("shard_rows must be at least 1")]
    ZeroShardRows,
    /// Shards or parts that cannot be merged (incomplete, inconsistent), with the reason.
    #[error("cannot merge: {0}")]
    Merge(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShardError + '_ {
    move |source| ShardError::Io { path: path.to_owned(), source }
}

fn damaged(path: &Path, reason: impl Into<String>) -> ShardError {
    ShardError::Damaged { path: path.to_owned(), reason: reason.into() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One part of a run split `count` ways: part `index` (1-based) takes the inputs at positions `p`
/// with `p % count == index - 1`. Written and parsed as `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based part number, I.
    pub index: usize,
    /// Number of parts, N.
    pub count: usize,
}

impl Part {
    /// All the inputs: part 1 of 1.
    pub const WHOLE: Part = Part { index: 1, count: 1 };

    pub(crate) fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Whether the input at `position` (0-based, in input order) belongs to this part.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// This part's positions among `total` inputs, in order.
    pub fn positions(&self, total: usize) -> impl Iterator<Item = usize> {
        (self.index - 1..total).step_by(self.count)
    }
}

impl FromStr for Part {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::BadPart(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// SHA-256 (hex) of an ordered input list: each path's bytes followed by a NUL.
pub fn input_list_digest(inputs: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for p in inputs {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What makes two extractions the same: the same inputs in the same order, the same model, the
/// same options. Parts of one run share it; a resumed run must match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// How many inputs the whole run has (all parts together).
    pub inputs: usize,
    /// [`input_list_digest`] of them.
    pub inputs_sha256: String,
    /// The model's fingerprint ([`crate::spec::LoadedModel::fingerprint`]).
    pub model: String,
    /// Descriptor dimension.
    pub dim: usize,
    /// Every other setting that changes the output, by name (e.g. `crop`, `max_side`), in a
    /// printable form.
    pub options: BTreeMap<String, String>,
}

impl Identity {
    /// The identity of a run over `inputs` (in order) with the model fingerprint `model`, `dim`-wide descriptors and `options`.
    pub fn new(inputs: &[PathBuf], model: impl Into<String>, dim: usize, options: BTreeMap<String, String>) -> Self {
        Self { inputs: inputs.len(), inputs_sha256: input_list_digest(inputs), model: model.into(), dim, options }
    }

    /// The first difference from `now`, as (what, value here, value in `now`).
    fn difference(&self, now: &Identity) -> Option<(String, String, String)> {
        if (self.inputs, &self.inputs_sha256) != (now.inputs, &now.inputs_sha256) {
            let show = |i: &Identity| format!("{} inputs, list sha256 {}", i.inputs, &i.inputs_sha256[..i.inputs_sha256.len().min(12)]);
            return Some(("the input list".into(), show(self), show(now)));
        }
        let keys: std::collections::BTreeSet<&String> = self.options.keys().chain(now.options.keys()).collect();
        for k in keys {
            let (was, is) = (self.options.get(k), now.options.get(k));
            if was != is {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "not set".into());
                return Some((format!("option {k}"), show(was), show(is)));
            }
        }
        if self.model != now.model {
            let show = |m: &str| format!("fingerprint {}", &m[..m.len().min(12)]);
            return Some(("the model (weights, architecture, fusion or scales)".into(), show(&self.model), show(&now.model)));
        }
        if self.dim != now.dim {
            return Some(("the descriptor dimension".into(), self.dim.to_string(), now.dim.to_string()));
        }
        None
    }
}

/// An input that could not be described, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFailure {
    /// Position in the whole input list (0-based).
    pub position: usize,
    /// The input's path, as given.
    pub path: String,
    /// The error, which names the file.
    pub error: String,
}

/// Write `value` as pretty JSON followed by a line `sha256 <hex of the JSON>`.
fn write_checked<T: Serialize>(path: &Path, value: &T) -> Result<(), ShardError> {
    let body = serde_json::to_string_pretty(value).map_err(|e| damaged(path, e.to_string()))?;
    let text = format!("{body}\nsha256 {}\n", sha256_hex(body.as_bytes()));
    atomic_file::write(path, Mode::Shared, text.as_bytes()).map_err(io_err(path))
}

fn read_checked<T: DeserializeOwned>(path: &Path) -> Result<T, ShardError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let (body, sum) =
        text.strip_suffix('\n').unwrap_or(&text).rsplit_once("\nsha256 ").ok_or_else(|| damaged(path, "no checksum line: not a dolg file, or cut short"))?;
    if sha256_hex(body.as_bytes()) != sum {
        return Err(damaged(path, "checksum mismatch: the file was changed or damaged"));
    }
    serde_json::from_str(body).map_err(|e| damaged(path, format!("unreadable: {e}")))
}

/// `OUT.npy` → `OUT.shards`: where an extraction into `OUT.npy` keeps its shards until it ends.
pub fn shard_folder(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}.shards"))
}

/// `OUT.npy` → `OUT.part.json`: the record of a part written by `dolg extract --shard I/N`.
pub fn part_record_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}.part.json"))
}

/// The commit record of a shard folder (`progress.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    format: String,
    identity: Identity,
    part: Part,
    shard_rows: usize,
    /// Inputs of this part.
    work: usize,
    shards: usize,
    shards_done: usize,
    inputs_done: usize,
}

/// The record of one shard (`shard-K.failures.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardRecord {
    format: String,
    shard: usize,
    /// Rows in the shard's `.npy`: its inputs less the failed ones.
    rows: usize,
    failed: Vec<RecordedFailure>,
}

/// The record beside a part's output (`OUT.part.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRecord {
    format: String,
    part: Part,
    identity: Identity,
    rows: usize,
    failed: Vec<RecordedFailure>,
}

/// An extraction into `OUT.npy` that writes its results as it goes (see the module documentation).
pub struct ShardedRun {
    out: PathBuf,
    dir: PathBuf,
    progress: Progress,
    /// Positions (in the whole input list) of this part's inputs, and their paths.
    positions: Vec<usize>,
    paths: Vec<PathBuf>,
    resumed: usize,
}

/// What [`ShardedRun::finish`] wrote.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Rows in the output (inputs described, in this run and any interrupted one before it).
    pub rows: usize,
    /// Every input that could not be described, in input order, including those recorded by an
    /// interrupted run.
    pub failures: Vec<RecordedFailure>,
    /// The part record written beside the output (for a part).
    pub part_record: Option<PathBuf>,
}

fn sync_folder(dir: &Path) -> Result<(), ShardError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

impl ShardedRun {
    /// Start an extraction of `part` of `inputs` into `out`, or continue an interrupted one when
    /// `resume` is set (a missing shard folder then starts from the beginning). `identity` must
    /// have been made from the same `inputs` ([`Identity::new`]).
    pub fn open(out: &Path, inputs: &[PathBuf], identity: Identity, part: Part, shard_rows: usize, resume: bool) -> Result<Self, ShardError> {
        if shard_rows == 0 {
            return Err(ShardError::ZeroShardRows);
        }
        debug_assert_eq!(identity.inputs, inputs.len());
        let dir = shard_folder(out);
        let positions: Vec<usize> = part.positions(inputs.len()).collect();
        let paths: Vec<PathBuf> = positions.iter().map(|&p| inputs[p].clone()).collect();
        let work = positions.len();
        let fresh =
            Progress { format: PROGRESS_FORMAT.into(), identity, part, shard_rows, work, shards: work.div_ceil(shard_rows), shards_done: 0, inputs_done: 0 };
        let progress_path = dir.join(PROGRESS_FILE);
        let mut progress = fresh.clone();
        if dir.exists() {
            if !resume {
                return Err(ShardError::Exists { dir, out: out.to_owned() });
            }
            // A folder without progress.json: killed before anything was committed.
            if progress_path.exists() {
                let was: Progress = read_checked(&progress_path)?;
                let mismatch = |what: &str, was: String, now: String| ShardError::Mismatch { dir: dir.clone(), what: what.into(), was, now };
                if was.format != PROGRESS_FORMAT {
                    return Err(damaged(&progress_path, format!("format {:?}, expected {PROGRESS_FORMAT:?}", was.format)));
                }
                if let Some((what, a, b)) = was.identity.difference(&fresh.identity) {
                    return Err(mismatch(&what, a, b));
                }
                if was.part != part {
                    return Err(mismatch("the part (--shard)", was.part.to_string(), part.to_string()));
                }
                if was.shard_rows != shard_rows {
                    return Err(mismatch("--shard-rows", was.shard_rows.to_string(), shard_rows.to_string()));
                }
                if (was.work, was.shards) != (fresh.work, fresh.shards) || was.shards_done > was.shards {
                    return Err(damaged(&progress_path, "inconsistent shard counts"));
                }
                progress = was;
            }
        } else {
            std::fs::create_dir(&dir).map_err(io_err(&dir))?;
            sync_folder(parent(&dir))?;
        }
        write_checked(&progress_path, &progress)?;
        let resumed = progress.inputs_done;
        Ok(Self { out: out.to_owned(), dir, progress, positions, paths, resumed })
    }

    /// The shard folder.
    pub fn folder(&self) -> &Path {
        &self.dir
    }

    /// How many inputs this run (its part) has in all.
    pub fn work_len(&self) -> usize {
        self.paths.len()
    }

    /// Inputs done (described or failed) when the run was opened: those of an interrupted run.
    pub fn resumed_inputs(&self) -> usize {
        self.resumed
    }

    /// Inputs done so far.
    pub fn inputs_done(&self) -> usize {
        self.progress.inputs_done
    }

    fn shard_range(&self, k: usize) -> Range<usize> {
        let r = self.progress.shard_rows;
        k * r..((k + 1) * r).min(self.paths.len())
    }

    fn shard_file(&self, k: usize, ext: &str) -> PathBuf {
        self.dir.join(format!("shard-{k:06}.{ext}"))
    }

    /// Describe every input of the shards not yet done, committing each shard as it is complete.
    /// `on_done` is called after each input with its position in the whole input list, its path
    /// and its result. Returns how many inputs were processed (described or failed) by this call.
    pub fn describe_pending(
        &mut self,
        ex: &Extractor,
        crop: Option<CropBox>,
        mut on_done: impl FnMut(usize, &Path, &Result<Vec<f32>, DescriptorError>),
    ) -> Result<usize, ShardError> {
        let mut processed = 0;
        for k in self.progress.shards_done..self.progress.shards {
            let range = self.shard_range(k);
            let (paths, positions) = (&self.paths[range.clone()], &self.positions[range.clone()]);
            let mut failed = Vec::new();
            let described = ex.describe_files(paths, crop, |i, p, r| {
                if let Err(e) = r {
                    failed.push(RecordedFailure { position: positions[i], path: p.display().to_string(), error: e.to_string() });
                }
                on_done(positions[i], p, r);
            });
            processed += paths.len();
            self.commit_shard(k, range, &described.rows, &described.names, failed)?;
            failpoint(k);
        }
        Ok(processed)
    }

    /// Make shard `k` durable: its record, its pair, then `progress.json` (the commit point).
    fn commit_shard(&mut self, k: usize, range: Range<usize>, rows: &[Vec<f32>], names: &[String], failed: Vec<RecordedFailure>) -> Result<(), ShardError> {
        debug_assert_eq!(rows.len() + failed.len(), range.len());
        let record = ShardRecord { format: SHARD_FORMAT.into(), shard: k, rows: rows.len(), failed };
        write_checked(&self.shard_file(k, "failures.json"), &record)?;
        write_descriptors(&self.shard_file(k, "npy"), rows, self.progress.identity.dim, Some(names))?;
        self.progress.shards_done = k + 1;
        self.progress.inputs_done = range.end;
        write_checked(&self.dir.join(PROGRESS_FILE), &self.progress)
    }

    /// Merge the shards into `OUT.npy` + `OUT.names.txt` (one shard in memory at a time), write
    /// the part record for a part, and remove the shard folder. Every shard must be done.
    pub fn finish(self) -> Result<Finished, ShardError> {
        let p = &self.progress;
        if p.shards_done != p.shards {
            return Err(ShardError::Merge(format!("{} of {} shards in {} are done", p.shards_done, p.shards, self.dir.display())));
        }
        let dim = p.identity.dim;
        let mut rows = 0;
        let mut failures = Vec::new();
        let mut shard_rows = Vec::with_capacity(p.shards);
        for k in 0..p.shards {
            let path = self.shard_file(k, "failures.json");
            let record: ShardRecord = read_checked(&path)?;
            if record.shard != k || record.rows + record.failed.len() != self.shard_range(k).len() {
                return Err(damaged(&path, format!("does not describe shard {k} of this run")));
            }
            rows += record.rows;
            shard_rows.push(record.rows);
            failures.extend(record.failed);
        }
        let record_path = part_record_path(&self.out);
        // No part record may stay beside a pair it was not written for.
        atomic_file::remove(&record_path).map_err(io_err(&record_path))?;
        let other = |e: DescriptorError| io::Error::other(e.to_string());
        write_descriptors_with(
            &self.out,
            rows,
            dim,
            |sink| {
                for (k, &want) in shard_rows.iter().enumerate() {
                    let path = self.shard_file(k, "npy");
                    let (data, n, d, _) = read_matrix_with_names(&path).map_err(other)?;
                    if n != want || (n > 0 && d != dim) {
                        return Err(io::Error::other(format!("{}: {n}x{d}, expected {want}x{dim}", path.display())));
                    }
                    data.chunks_exact(dim).try_for_each(&mut *sink)?;
                }
                Ok(())
            },
            |sink| {
                for k in 0..shard_rows.len() {
                    read_names(&self.shard_file(k, "npy")).map_err(other)?.iter().try_for_each(|n| sink(n))?;
                }
                Ok(())
            },
        )?;
        let part_record = if p.part.is_whole() {
            None
        } else {
            let record = PartRecord { format: PART_FORMAT.into(), part: p.part, identity: p.identity.clone(), rows, failed: failures.clone() };
            write_checked(&record_path, &record)?;
            Some(record_path)
        };
        std::fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        sync_folder(parent(&self.dir))?;
        Ok(Finished { rows, failures, part_record })
    }
}

/// `DOLG_FAILPOINT=extract-shard:K`, read once.
fn failpoint(shard: usize) {
    static K: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let k = *K.get_or_init(|| crate::failpoints::requested()?.strip_prefix(FAILPOINT)?.strip_prefix(':')?.parse().ok());
    if k == Some(shard) {
        crate::failpoints::crash(&format!("{FAILPOINT}:{shard}"));
    }
}

/// What [`merge_parts`] wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Inputs of the whole run.
    pub inputs: usize,
    /// Rows written (inputs that were described).
    pub rows: usize,
    /// Descriptor dimension.
    pub dim: usize,
    /// Every input that could not be described, in input order.
    pub failures: Vec<RecordedFailure>,
}

/// One part as given to [`merge_parts`].
struct PartInput {
    npy: PathBuf,
    record: PartRecord,
    failed: HashSet<usize>,
}

/// Join the outputs of all N parts of a run (`dolg extract --shard I/N` for I = 1..N, in any
/// order) into `out` + its names file, rows in input order: the output of an unsharded run. The
/// parts must come from the same run (same [`Identity`]), each once; streamed, one row per part
/// in memory.
pub fn merge_parts(out: &Path, parts: &[PathBuf]) -> Result<Merged, ShardError> {
    let merr = |m: String| ShardError::Merge(m);
    if parts.is_empty() {
        return Err(merr("no parts given".into()));
    }
    let same_file = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let mut inputs: Vec<PartInput> = Vec::with_capacity(parts.len());
    for npy in parts {
        if same_file(npy, out) {
            return Err(merr(format!("the output {} is also given as a part", out.display())));
        }
        let rp = part_record_path(npy);
        if !rp.exists() {
            return Err(merr(format!(
                "{} not found: {} was not written by `dolg extract --shard I/N` (or that run did not finish)",
                rp.display(),
                npy.display()
            )));
        }
        let record: PartRecord = read_checked(&rp)?;
        if record.format != PART_FORMAT {
            return Err(damaged(&rp, format!("format {:?}, expected {PART_FORMAT:?}", record.format)));
        }
        let failed: HashSet<usize> = record.failed.iter().map(|f| f.position).collect();
        let expected = record.part.positions(record.identity.inputs).filter(|p| !failed.contains(p)).count();
        if record.failed.iter().any(|f| !record.part.contains(f.position) || f.position >= record.identity.inputs) || expected != record.rows {
            return Err(damaged(&rp, "its failed inputs and row count do not fit its part"));
        }
        inputs.push(PartInput { npy: npy.clone(), record, failed });
    }
    inputs.sort_by_key(|p| p.record.part.index);
    let first = &inputs[0];
    let n = first.record.part.count;
    for p in &inputs {
        if let Some((what, a, b)) = first.record.identity.difference(&p.record.identity) {
            return Err(merr(format!("{} and {} are not parts of the same run: {what} differs ({a} vs {b})", first.npy.display(), p.npy.display())));
        }
        if p.record.part.count != n {
            return Err(merr(format!("{} is part {} but {} is part {}", first.npy.display(), first.record.part, p.npy.display(), p.record.part)));
        }
    }
    for w in inputs.windows(2) {
        if w[0].record.part.index == w[1].record.part.index {
            return Err(merr(format!("part {} given twice ({} and {})", w[0].record.part, w[0].npy.display(), w[1].npy.display())));
        }
    }
    if inputs.len() != n {
        let have: HashSet<usize> = inputs.iter().map(|p| p.record.part.index).collect();
        let missing: Vec<String> = (1..=n).filter(|i| !have.contains(i)).map(|i| format!("{i}/{n}")).collect();
        return Err(merr(format!("part(s) {} missing: all {n} parts are needed", missing.join(", "))));
    }
    let (total, dim) = (first.record.identity.inputs, first.record.identity.dim);
    // Each .npy must hold what its record says; its names file is counted as it is copied.
    let mut readers = Vec::with_capacity(n);
    for p in &inputs {
        let file = File::open(&p.npy).map_err(io_err(&p.npy))?;
        let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| damaged(&p.npy, format!("not a .npy file: {e}")))?;
        let shape = npy.shape().to_vec();
        if shape != [p.record.rows as u64, dim as u64] {
            return Err(damaged(&p.npy, format!("shape {shape:?}, but its part record says [{}, {dim}]", p.record.rows)));
        }
        if crate::descriptors::npy_type(&npy.dtype()) != "<f4" {
            return Err(damaged(&p.npy, "not float32 descriptors"));
        }
        readers.push(npy.data::<f32>().map_err(|e| damaged(&p.npy, e.to_string()))?);
    }
    let rows: usize = inputs.iter().map(|p| p.record.rows).sum();
    let belongs = |pos: usize| -> Option<usize> {
        let j = pos % n;
        (!inputs[j].failed.contains(&pos)).then_some(j)
    };
    write_descriptors_with(
        out,
        rows,
        dim,
        |sink| {
            let mut row = vec![0f32; dim];
            for pos in 0..total {
                if let Some(j) = belongs(pos) {
                    for v in row.iter_mut() {
                        *v = readers[j].next().ok_or_else(|| io::Error::other(format!("{}: ends early", inputs[j].npy.display())))??;
                    }
                    sink(&row)?;
                }
            }
            Ok(())
        },
        |sink| {
            let mut lines = Vec::with_capacity(n);
            for p in &inputs {
                let np = names_path(&p.npy);
                let file = File::open(&np).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", np.display())))?;
                lines.push(BufReader::new(file).lines());
            }
            for pos in 0..total {
                if let Some(j) = belongs(pos) {
                    let np = names_path(&inputs[j].npy);
                    let name = lines[j].next().ok_or_else(|| io::Error::other(format!("{}: fewer names than rows", np.display())))??;
                    sink(&name)?;
                }
            }
            if let Some(j) = (0..n).find(|&j| lines[j].next().is_some()) {
                return Err(io::Error::other(format!("{}: more names than rows", names_path(&inputs[j].npy).display())));
            }
            Ok(())
        },
    )?;
    let mut failures: Vec<RecordedFailure> = inputs.into_iter().flat_map(|p| p.record.failed).collect();
    failures.sort_by_key(|f| f.position);
    Ok(Merged { inputs: total, rows, dim, failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_and_split_round_robin() {
        let p: Part = "2/3".parse().unwrap();
        assert_eq!(p, Part { index: 2, count: 3 });
        assert_eq!(p.to_string(), "2/3");
        assert_eq!(p.positions(8).collect::<Vec<_>>(), [1, 4, 7]);
        assert!(p.contains(4) && !p.contains(5));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", ""] {
            assert!(bad.parse::<Part>().is_err(), "{bad}");
        }
        // Every position in exactly one part.
        let parts: Vec<Part> = (1..=3).map(|i| Part { index: i, count: 3 }).collect();
        for pos in 0..10 {
            assert_eq!(parts.iter().filter(|p| p.contains(pos)).count(), 1);
        }
        assert_eq!(Part::WHOLE.positions(3).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn checked_files_refuse_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let rec = RecordedFailure { position: 3, path: "a.jpg".into(), error: "a.jpg: empty".into() };
        write_checked(&path, &rec).unwrap();
        assert_eq!(read_checked::<RecordedFailure>(&path).unwrap(), rec);
        let text = std::fs::read_to_string(&path).unwrap().replace("\"position\": 3", "\"position\": 4");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(read_checked::<RecordedFailure>(&path), Err(ShardError::Damaged { .. })));
    }

    #[test]
    fn identity_names_the_first_difference() {
        let inputs = [PathBuf::from("a.jpg"), PathBuf::from("b.jpg")];
        let opts = |crop: &str| BTreeMap::from([("crop".to_string(), crop.to_string())]);
        let a = Identity::new(&inputs, "m1", 512, opts("None"));
        assert_eq!(a.difference(&a.clone()), None);
        let b = Identity::new(&inputs[..1], "m1", 512, opts("None"));
        assert_eq!(a.difference(&b).unwrap().0, "the input list");
        let c = Identity::new(&inputs, "m1", 512, opts("Some(1,2,3,4)"));
        assert_eq!(a.difference(&c).unwrap(), ("option crop".into(), "None".into(), "Some(1,2,3,4)".into()));
        let d = Identity::new(&inputs, "m2", 512, opts("None"));
        assert!(a.difference(&d).unwrap().0.starts_with("the model"));
        // The order of the inputs matters.
        assert_ne!(input_list_digest(&inputs), input_list_digest(&[inputs[1].clone(), inputs[0].clone()]));
    }

    #[test]
    fn merged_shards_and_parts_without_a_model() {
        // Shards written by hand through commit_shard, then finish and merge_parts.
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<PathBuf> = (0..5).map(|i| PathBuf::from(format!("img{i}.jpg"))).collect();
        let row = |i: usize| vec![i as f32, -(i as f32)];
        let id = Identity::new(&inputs, "m", 2, BTreeMap::new());
        // Input 2 fails everywhere.
        let run_part = |part: Part, out: &Path, rows_per_shard: usize| {
            let mut run = ShardedRun::open(out, &inputs, id.clone(), part, rows_per_shard, false).unwrap();
            for k in 0..run.progress.shards {
                let range = run.shard_range(k);
                let pos: Vec<usize> = run.positions[range.clone()].to_vec();
                let ok: Vec<usize> = pos.iter().copied().filter(|&p| p != 2).collect();
                let failed =
                    pos.iter().filter(|&&p| p == 2).map(|&p| RecordedFailure { position: p, path: format!("img{p}.jpg"), error: "bad".into() }).collect();
                let names: Vec<String> = ok.iter().map(|p| format!("img{p}.jpg")).collect();
                run.commit_shard(k, range, &ok.iter().map(|&p| row(p)).collect::<Vec<_>>(), &names, failed).unwrap();
            }
            run.finish().unwrap()
        };
        let whole = dir.path().join("whole.npy");
        let f = run_part(Part::WHOLE, &whole, 2);
        assert_eq!((f.rows, f.failures.len(), f.part_record), (4, 1, None));
        assert!(!shard_folder(&whole).exists());
        let (data, n, d, names) = read_matrix_with_names(&whole).unwrap();
        assert_eq!((n, d), (4, 2));
        assert_eq!(names, ["img0.jpg", "img1.jpg", "img3.jpg", "img4.jpg"]);
        assert_eq!(data, [0., -0., 1., -1., 3., -3., 4., -4.]);
        let parts: Vec<PathBuf> = (1..=2).rev().map(|i| dir.path().join(format!("p{i}.npy"))).collect();
        for (i, p) in (1..=2).rev().zip(&parts) {
            run_part(Part { index: i, count: 2 }, p, 1);
        }
        let merged = dir.path().join("merged.npy");
        let m = merge_parts(&merged, &parts).unwrap();
        assert_eq!((m.inputs, m.rows, m.failures.len()), (5, 4, 1));
        assert_eq!(std::fs::read(&merged).unwrap(), std::fs::read(&whole).unwrap());
        assert_eq!(std::fs::read(names_path(&merged)).unwrap(), std::fs::read(names_path(&whole)).unwrap());
        // One part missing, or given twice.
        assert!(merge_parts(&merged, &parts[..1]).unwrap_err().to_string().contains("missing"));
        assert!(merge_parts(&merged, &[parts[0].clone(), parts[0].clone()]).unwrap_err().to_string().contains("twice"));
        // An existing folder needs resume; resume with other options is refused.
        let out = dir.path().join("r.npy");
        ShardedRun::open(&out, &inputs, id.clone(), Part::WHOLE, 2, false).unwrap();
        assert!(matches!(ShardedRun::open(&out, &inputs, id.clone(), Part::WHOLE, 2, false), Err(ShardError::Exists { .. })));
        let e = ShardedRun::open(&out, &inputs, id.clone(), Part::WHOLE, 3, true).err().unwrap();
        assert!(e.to_string().contains("--shard-rows"), "{e}");
        assert!(ShardedRun::open(&out, &inputs, id, Part::WHOLE, 2, true).is_ok());
    }
}
