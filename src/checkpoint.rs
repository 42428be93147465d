//! Checkpoint files: the authors' `{epoch, model_state, cfg}` dicts (legacy pre-1.6 and zip
//! serialization), flat PyTorch state dicts, and safetensors; optionally gzip-compressed.
//!
//! Tensors are read lazily and by key, through [`VarBuilder`] (named after candle's): each model
//! piece asks for its own weights by their PyTorch names and shapes, so a wrong file fails with
//! the key and both shapes, and whatever the model never asked for is reported as unexpected.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::{Param, ParamId, RunningState};
use burn::tensor::{Device, Tensor, TensorData};

/// Why a checkpoint could not be opened, read, matched to a model or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not in a supported checkpoint format, or holds no tensors.
    #[error("{path}: not a checkpoint ({reason})")]
    NotACheckpoint {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The file looks like a checkpoint but cannot be decoded.
    #[error("{path}: damaged checkpoint: {reason}")]
    Corrupt {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// What failed to decode.
        reason: String,
    },
    /// The model needs a key that the checkpoint lacks.
    #[error("{path}: missing key '{key}' (expected shape {expected:?})")]
    Missing {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// The PyTorch key.
        key: String,
        /// The shape the model expects (empty when unknown).
        expected: Vec<usize>,
    },
    /// A tensor has a different shape than the model expects.
    #[error("{path}: key '{key}' has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// The PyTorch key.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// The checkpoint holds keys the model never read (wrong architecture or options).
    #[error("{path}: {} unexpected key(s) for this architecture: {}", keys.len(), fmt_keys(keys))]
    Unexpected {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// Each unread key with its shape.
        keys: Vec<(String, Vec<usize>)>,
    },
    /// A tensor that must be read as floats has an integer or other non-float dtype.
    #[error("{path}: key '{key}' has dtype {dtype}, expected a floating-point tensor")]
    Dtype {
        /// The checkpoint file (or the label of an in-memory checkpoint).
        path: PathBuf,
        /// The PyTorch key.
        key: String,
        /// The stored dtype.
        dtype: String,
    },
    /// A safetensors file could not be serialised or written.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

fn fmt_keys(keys: &[(String, Vec<usize>)]) -> String {
    let shown: Vec<String> = keys.iter().take(8).map(|(k, s)| format!("'{k}' {s:?}")).collect();
    let more = if keys.len() > 8 { format!(", … ({} more)", keys.len() - 8) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Keys that a retrieval model never reads: the training head and BatchNorm's step counters.
pub(crate) fn is_ignored(key: &str) -> bool {
    key.starts_with("desc_cls.") || key.ends_with("num_batches_tracked")
}

/// The on-disk format a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PyTorch `torch.save` legacy (pre-1.6) pickle serialization.
    TorchLegacy,
    /// PyTorch `torch.save` zip serialization (1.6 and later).
    TorchZip,
    /// A safetensors file (also used for in-memory checkpoints).
    Safetensors,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::TorchLegacy => "PyTorch (legacy serialization)",
            Format::TorchZip => "PyTorch (zip serialization)",
            Format::Safetensors => "safetensors",
        })
    }
}

enum Source {
    Torch(pytorch_reader::Tensor),
    /// safetensors payload, already converted to f32 (the file is read whole anyway).
    Host(Vec<f32>),
    NonFloat,
}

struct Entry {
    shape: Vec<usize>,
    dtype: String,
    source: Source,
}

/// An opened checkpoint: key → (shape, dtype, lazy data).
pub struct Checkpoint {
    path: PathBuf,
    format: Format,
    entries: BTreeMap<String, Entry>,
    /// safetensors `__metadata__` (empty for PyTorch files).
    metadata: BTreeMap<String, String>,
    // A gzip-compressed file is inflated to a temporary file, which must outlive the lazy readers.
    _inflated: Option<tempfile::NamedTempFile>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("path", &self.path).field("format", &self.format).field("keys", &self.entries.len()).finish()
    }
}

impl Checkpoint {
    /// Open any supported file, detected from its first bytes (not its extension).
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.to_owned(), source };
        let mut head = [0u8; 16];
        let n = std::fs::File::open(path).and_then(|mut f| read_up_to(&mut f, &mut head)).map_err(io)?;
        let head = &head[..n];
        if head.starts_with(&[0x1f, 0x8b]) {
            return Self::open_gzip(path);
        }
        if looks_like_safetensors(head) {
            return Self::open_safetensors(path, path);
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80]) {
            return Self::open_torch(path, path, None);
        }
        Err(CheckpointError::NotACheckpoint {
            path: path.to_owned(),
            reason: if n == 0 { "empty file".into() } else { "unrecognised header: expected a PyTorch, safetensors or gzip file".into() },
        })
    }

    fn open_gzip(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.to_owned(), source };
        let mut tmp = tempfile::NamedTempFile::new().map_err(io)?;
        let file = std::fs::File::open(path).map_err(io)?;
        std::io::copy(&mut flate2::read::GzDecoder::new(file), &mut tmp)
            .map_err(|e| CheckpointError::Corrupt { path: path.to_owned(), reason: format!("gzip stream: {e}") })?;
        let inner = tmp.path().to_owned();
        let mut head = [0u8; 16];
        let n = std::fs::File::open(&inner).and_then(|mut f| read_up_to(&mut f, &mut head)).map_err(io)?;
        if looks_like_safetensors(&head[..n]) {
            let mut ck = Self::open_safetensors(&inner, path)?;
            ck._inflated = Some(tmp);
            return Ok(ck);
        }
        Self::open_torch(&inner, path, Some(tmp))
    }

    fn open_torch(file: &Path, shown: &Path, inflated: Option<tempfile::NamedTempFile>) -> Result<Self, CheckpointError> {
        // The reader is a parser of untrusted bytes: never let a bug in it take the process down.
        let opened = std::panic::catch_unwind(|| pytorch_reader::PytorchReader::new(file))
            .map_err(|_| CheckpointError::Corrupt { path: shown.to_owned(), reason: "the PyTorch reader failed on this file".into() })?;
        // The header already looked like PyTorch, so a parse failure means a damaged file.
        let reader = opened.map_err(|e| CheckpointError::Corrupt { path: shown.to_owned(), reason: format!("unreadable PyTorch file: {e}") })?;
        let format = if reader.metadata().is_legacy_format() { Format::TorchLegacy } else { Format::TorchZip };
        let tensors = reader.into_tensors();
        // The authors save {"model_state": …}; other trainers use "state_dict"; DataParallel adds "module.".
        let prefix = ["model_state.", "state_dict."].into_iter().find(|p| tensors.keys().any(|k| k.starts_with(p)));
        let mut entries = BTreeMap::new();
        for (key, t) in tensors {
            let key = match prefix {
                Some(p) => match key.strip_prefix(p) {
                    Some(k) => k.to_owned(),
                    None => continue,
                },
                None => key,
            };
            let key = key.strip_prefix("module.").map(str::to_owned).unwrap_or(key);
            let dtype = format!("{:?}", t.dtype());
            let source = match t.dtype() {
                pytorch_reader::DType::F32 | pytorch_reader::DType::F64 | pytorch_reader::DType::F16 | pytorch_reader::DType::BF16 => Source::Torch(t.clone()),
                _ => Source::NonFloat,
            };
            entries.insert(key, Entry { shape: t.shape().to_vec(), dtype, source });
        }
        if entries.is_empty() {
            return Err(CheckpointError::NotACheckpoint { path: shown.to_owned(), reason: "the file holds no tensors".into() });
        }
        Ok(Self { path: shown.to_owned(), format, entries, metadata: BTreeMap::new(), _inflated: inflated })
    }

    fn open_safetensors(file: &Path, shown: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(file).map_err(|source| CheckpointError::Io { path: shown.to_owned(), source })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| CheckpointError::Corrupt { path: shown.to_owned(), reason: format!("safetensors: {e}") })?;
        let mut entries = BTreeMap::new();
        for (key, view) in st.tensors() {
            use safetensors::Dtype as D;
            let raw = view.data();
            let source = match view.dtype() {
                D::F32 => Source::Host(raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()),
                D::F64 => Source::Host(raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect()),
                D::F16 => Source::Host(raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
                D::BF16 => Source::Host(raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
                _ => Source::NonFloat,
            };
            entries.insert(key.clone(), Entry { shape: view.shape().to_vec(), dtype: format!("{:?}", view.dtype()), source });
        }
        if entries.is_empty() {
            return Err(CheckpointError::NotACheckpoint { path: shown.to_owned(), reason: "the file holds no tensors".into() });
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| CheckpointError::Corrupt { path: shown.to_owned(), reason: format!("safetensors: {e}") })?;
        let metadata = header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
        Ok(Self { path: shown.to_owned(), format: Format::Safetensors, entries, metadata, _inflated: None })
    }

    /// A checkpoint held in memory (a freshly initialised model); `label` stands in for the
    /// path in error messages.
    pub fn from_tensors(label: impl Into<PathBuf>, tensors: Vec<NamedTensor>) -> Self {
        let entries = tensors.into_iter().map(|t| (t.name, Entry { shape: t.shape, dtype: "F32".into(), source: Source::Host(t.data) })).collect();
        Self { path: label.into(), format: Format::Safetensors, entries, metadata: BTreeMap::new(), _inflated: None }
    }

    /// Every floating-point tensor, as f32, under the name `rename` gives its key; keys it maps
    /// to `None` are left out, and so are BatchNorm's integer `num_batches_tracked` counters.
    pub fn named_tensors(&self, mut rename: impl FnMut(&str) -> Option<String>) -> Result<Vec<NamedTensor>, CheckpointError> {
        let mut out = Vec::new();
        for (key, e) in self.entries.iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")) {
            if let Some(name) = rename(key) {
                out.push(NamedTensor { name, shape: e.shape.clone(), data: self.read_f32(key)? });
            }
        }
        Ok(out)
    }

    /// The safetensors metadata (training runs record the fusion and the options there).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The file it was opened from (for a gzip file, the compressed file), or the label given to [`Checkpoint::from_tensors`].
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The format the tensors were read in.
    pub fn format(&self) -> Format {
        self.format
    }
    /// Every key, in sorted order, after stripping the `model_state.`/`state_dict.` and `module.` prefixes.
    pub fn keys(&self) -> impl Iterator<Item = &str> + Clone {
        self.entries.keys().map(String::as_str)
    }
    /// Whether the checkpoint holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
    /// The shape of `key`, or `None` if absent.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    /// Read one floating-point tensor as f32, row-major.
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>, CheckpointError> {
        let e = self.entries.get(key).ok_or_else(|| CheckpointError::Missing { path: self.path.clone(), key: key.into(), expected: vec![] })?;
        let corrupt = |reason: String| CheckpointError::Corrupt { path: self.path.clone(), reason };
        match &e.source {
            Source::Host(v) => Ok(v.clone()),
            Source::NonFloat => Err(CheckpointError::Dtype { path: self.path.clone(), key: key.into(), dtype: e.dtype.clone() }),
            Source::Torch(t) => {
                let bytes = t.read().map_err(|err| corrupt(format!("tensor '{key}': {err}")))?;
                // Native-endian, not little-endian: the file's bytes are little-endian, but
                // `pytorch_reader::Tensor::read` already returns them in the host's byte order
                // (its documented contract; it swaps them on big-endian targets). Reading them as
                // little-endian here would swap them a second time there. The safetensors path
                // above does read the file's own (little-endian) bytes, hence `from_le_bytes`.
                Ok(match t.dtype() {
                    pytorch_reader::DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_ne_bytes(b.try_into().unwrap())).collect(),
                    pytorch_reader::DType::F64 => bytes.chunks_exact(8).map(|b| f64::from_ne_bytes(b.try_into().unwrap()) as f32).collect(),
                    pytorch_reader::DType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
                    pytorch_reader::DType::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
                    other => return Err(CheckpointError::Dtype { path: self.path.clone(), key: key.into(), dtype: format!("{other:?}") }),
                })
            }
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap()) < (100 << 20)
}

/// Hands out a checkpoint's tensors by PyTorch key and remembers which were taken.
pub struct VarBuilder<'a> {
    ckpt: &'a Checkpoint,
    device: Device,
    used: RefCell<BTreeSet<String>>,
    keys: RefCell<Vec<(ParamId, String)>>,
}

/// The PyTorch key of every parameter and buffer a model was built with, by burn parameter id.
/// Training writes checkpoints through it, so saved files carry the authors' names without a
/// renaming table (the burn field paths differ: a folded `ConvBn` pair, `blocks.N` vectors).
#[derive(Debug, Clone, Default)]
pub struct ParamKeys(pub Vec<(ParamId, String)>);

impl ParamKeys {
    /// The parameter id of a key.
    pub fn id(&self, key: &str) -> Option<ParamId> {
        self.0.iter().find(|(_, k)| k == key).map(|(id, _)| *id)
    }
}

/// A [`VarBuilder`] positioned under a key prefix (`globalmodel.s3.b1`).
#[derive(Clone)]
pub struct VarPath<'a, 'b> {
    vb: &'b VarBuilder<'a>,
    prefix: String,
}

impl<'a> VarBuilder<'a> {
    /// A builder that hands out `ckpt`'s tensors on `device`.
    pub fn new(ckpt: &'a Checkpoint, device: &Device) -> Self {
        Self { ckpt, device: device.clone(), used: RefCell::new(BTreeSet::new()), keys: RefCell::new(Vec::new()) }
    }

    /// A [`VarPath`] at the top level (empty prefix).
    pub fn root(&self) -> VarPath<'a, '_> {
        VarPath { vb: self, prefix: String::new() }
    }

    /// Fail if the checkpoint holds keys that the model did not read (ignoring the training head
    /// and BatchNorm counters). Returns the key of every parameter handed out through
    /// [`VarPath::param`] / [`VarPath::running`].
    pub fn finish(self) -> Result<ParamKeys, CheckpointError> {
        let used = self.used.into_inner();
        let keys = ParamKeys(self.keys.into_inner());
        let extra: Vec<(String, Vec<usize>)> =
            self.ckpt.entries.iter().filter(|(k, _)| !used.contains(*k) && !is_ignored(k)).map(|(k, e)| (k.clone(), e.shape.clone())).collect();
        if extra.is_empty() {
            Ok(keys)
        } else {
            Err(CheckpointError::Unexpected { path: self.ckpt.path.clone(), keys: extra })
        }
    }
}

impl<'a, 'b> VarPath<'a, 'b> {
    pub(crate) fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Self { vb: self.vb, prefix }
    }

    /// The full key of `name` under this path's prefix (`prefix.name`).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.vb.device
    }

    /// Whether the checkpoint holds `name` under this path's prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.vb.ckpt.contains(&self.key(name))
    }

    /// Read `name` as host f32 data after checking its shape.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
        let key = self.key(name);
        let ck = self.vb.ckpt;
        let found = ck.shape(&key).ok_or_else(|| CheckpointError::Missing { path: ck.path.clone(), key: key.clone(), expected: shape.to_vec() })?;
        if found != shape {
            return Err(CheckpointError::ShapeMismatch { path: ck.path.clone(), key, expected: shape.to_vec(), found: found.to_vec() });
        }
        let data = ck.read_f32(&key)?;
        self.vb.used.borrow_mut().insert(key);
        Ok(data)
    }

    /// Read `name` as a tensor on the builder's device.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>, CheckpointError> {
        let data = self.host(name, &shape)?;
        Ok(to_tensor(data, shape, self.device()))
    }
}

impl VarPath<'_, '_> {
    /// Read `name` as a trainable parameter and remember its key.
    pub fn param<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>, CheckpointError> {
        let p = Param::from_tensor(self.tensor(name, shape)?);
        self.vb.keys.borrow_mut().push((p.id, self.key(name)));
        Ok(p)
    }

    /// Read `name` as a buffer (BatchNorm running statistics) and remember its key.
    pub fn running<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<RunningState<Tensor<D>>, CheckpointError> {
        let id = ParamId::new();
        let t = self.tensor(name, shape)?;
        self.vb.keys.borrow_mut().push((id, self.key(name)));
        Ok(RunningState::with_id(id, t.detach()))
    }
}

pub(crate) fn to_tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A named f32 tensor on the host, as written to safetensors.
#[derive(Debug, Clone)]
pub struct NamedTensor {
    /// PyTorch key.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Row-major f32 values; length is the product of `shape`.
    pub data: Vec<f32>,
}

/// Write tensors to a safetensors file (f32, PyTorch key names and layouts), atomically and on
/// disk before this returns (a training run's `state.json` then points at it).
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor], metadata: BTreeMap<String, String>) -> Result<(), CheckpointError> {
    let werr = |reason: String| CheckpointError::Write { path: path.to_owned(), reason };
    let bytes: Vec<(String, Vec<u8>, &NamedTensor)> =
        tensors.iter().map(|t| (t.name.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t)).collect();
    let views = bytes
        .iter()
        .map(|(n, b, t)| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| werr(e.to_string()))?;
    let meta: std::collections::HashMap<String, String> = metadata.into_iter().collect();
    crate::atomic_file::replace(path, crate::atomic_file::Mode::Shared, |tmp| {
        safetensors::serialize_to_file(views, Some(meta), tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| werr(e.to_string()))
}
