//! Local features of one image, the common currency of the local stage: whatever produced them
//! (DELG's attention-selected f3 features, XFeat's keypoints), spatial verification
//! ([`crate::spatial`]) and the index's local store read only this.
//!
//! Conventions, the DELG authors' (`tools/extractor.py::delg_extract`):
//! - `locations` are **(row, col)** = (y, x) in pixels of the image as decoded and oriented, before
//!   any resizing (a model that ran on a resized image maps its keypoints back);
//! - rows are in descending `scores` order;
//! - `descriptors` are row-major `[len, dim]` float32, each row L2-normalised.

/// Keypoints with descriptors, in descending score order (see the module doc for conventions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalFeatures {
    /// Width of one descriptor.
    pub dim: usize,
    /// (row, col) in pixels of the oriented original image.
    pub locations: Vec<[f32; 2]>,
    /// Row-major `[len, dim]`, L2-normalised rows.
    pub descriptors: Vec<f32>,
    /// Detector score of each keypoint (DELG: attention; XFeat: reliability x heatmap), descending.
    pub scores: Vec<f32>,
    /// Image scale each keypoint was found at: DELG's pyramid level; XFeat's factor the photo was
    /// resized by (one for all its keypoints, `location × scale` being where XFeat saw it).
    pub scales: Vec<f32>,
}

impl LocalFeatures {
    /// An empty set of `dim`-wide features.
    pub fn empty(dim: usize) -> Self {
        Self { dim, ..Default::default() }
    }

    /// Number of keypoints.
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    /// Whether there are no keypoints.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// Descriptor of keypoint `i`.
    pub fn descriptor(&self, i: usize) -> &[f32] {
        &self.descriptors[i * self.dim..(i + 1) * self.dim]
    }

    /// Keep the first `n` keypoints (the best: extractors give them best first).
    pub fn truncate(&mut self, n: usize) {
        self.locations.truncate(n);
        self.scores.truncate(n);
        self.scales.truncate(n);
        self.descriptors.truncate(n * self.dim);
    }

    /// The lengths of every field agree (a cheap invariant check for loaders).
    pub fn is_consistent(&self) -> bool {
        let n = self.locations.len();
        self.scores.len() == n && self.scales.len() == n && self.descriptors.len() == n * self.dim
    }
}

/// A local-feature extractor the index can store features of (`--local`).
#[derive(Debug)]
pub enum LocalModel {
    /// XFeat keypoints and 64-d descriptors ([`super::xfeat`]).
    XFeat {
        /// The XFeat network.
        net: Box<super::xfeat::XFeat>,
        /// Extraction options (keypoint count, threshold, working size).
        params: super::xfeat::XFeatParams,
    },
    /// DELG's attention-selected features ([`super::delg`]), from the same network as the
    /// global model ([`super::RetrievalModel::Delg`]): the photo, brought within `max_size` like
    /// the global descriptor's input, runs through it once for both.
    Delg {
        /// The DELG network shared with the global model.
        net: std::sync::Arc<super::Delg>,
        /// Longest side the photo is brought down to, in pixels (`None` or `Some(0)`: no limit).
        max_size: Option<u32>,
    },
}

impl LocalModel {
    /// The name an index records (`LocalConfig::extractor`) and `--local` takes.
    pub fn name(&self) -> &'static str {
        match self {
            LocalModel::XFeat { .. } => "xfeat",
            LocalModel::Delg { .. } => "delg",
        }
    }

    /// Width of its descriptors.
    pub fn dim(&self) -> usize {
        match self {
            LocalModel::XFeat { .. } => super::xfeat::DIM,
            LocalModel::Delg { net, .. } => net.local_dim(),
        }
    }

    /// Local features of an image as decoded and oriented (locations in its pixels).
    pub fn extract(&self, image: &crate::decode::BgrImage) -> LocalFeatures {
        match self {
            LocalModel::XFeat { net, params } => net.extract(image, params),
            LocalModel::Delg { net, max_size } => net.extract_local(image, *max_size),
        }
    }
}

/// `--local`: which local features an index stores for spatial verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LocalKind {
    /// None: global search only.
    #[default]
    None,
    /// XFeat (Apache-2.0 trained weights, fetched with pip like the MobileNetV2 ones): works with
    /// every global model; the default local feature.
    Xfeat,
    /// DELG's attention-selected local features; needs a DELG checkpoint as the global model.
    Delg,
}

impl LocalKind {
    /// The name an index records, `None` for [`LocalKind::None`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            LocalKind::None => None,
            LocalKind::Xfeat => Some("xfeat"),
            LocalKind::Delg => Some("delg"),
        }
    }
}

/// `dolg extract --local OUT.safetensors`: the local features of many images in one
/// [safetensors](https://huggingface.co/docs/safetensors) file, for research use. safetensors
/// because the crate is already a dependency (checkpoints are read with it), the format is a
/// plain header plus raw little-endian arrays that NumPy, PyTorch and every safetensors binding
/// read without code from us, and the image names fit in its metadata; npz would need a zip
/// writer for the same content.
///
/// Tensors (N = keypoints of all images together, in image order, each image's in descending
/// score order):
/// - `locations` float32 [N, 2]: **(row, col)** = (y, x) in pixels of the image as decoded and
///   EXIF-oriented, before any resizing (the DELG authors' order; swap the columns for (x, y));
/// - `descriptors` float32 [N, D], rows L2-normalised;
/// - `scores` float32 `[N]`; `scales` float32 `[N]` (the image scale each keypoint was found at);
/// - `offsets` int64 [images + 1]: image i's keypoints are rows `offsets[i]..offsets[i+1]`.
///
/// Metadata (`__metadata__`, strings): `format` = [`LOCAL_FILE_FORMAT`], `extractor` (`xfeat` or
/// `delg`), `model` (the global model it came with, for DELG), `dim`, `location_order` =
/// `row,col`, `names` (a JSON array of the image paths, one per image, in order).
pub const LOCAL_FILE_FORMAT: &str = "dolg-local-features-v1";

/// Errors of [`read_local_file`] and [`write_local_file`], naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The local-feature file.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not in the [`LOCAL_FILE_FORMAT`] layout, or the features cannot be written in it.
    #[error("{path}: {reason}")]
    Format {
        /// The local-feature file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What [`read_local_file`] returns: each image's name and features, and the file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalFile {
    /// Each image's name (its path, as written), in file order.
    pub names: Vec<String>,
    /// Each image's features, in the same order as `names`.
    pub features: Vec<LocalFeatures>,
    /// The safetensors metadata (`format`, `extractor`, `model`, `dim`, …).
    pub metadata: std::collections::BTreeMap<String, String>,
}

fn le_bytes<T: Copy, const N: usize>(values: impl Iterator<Item = T>, to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.flat_map(to).collect()
}

/// Write `features[i]` of image `names[i]` to `path` in the [`LOCAL_FILE_FORMAT`] layout
/// (replaced atomically, readable by everyone). `extractor` and `model` go into the metadata.
pub fn write_local_file(path: &std::path::Path, names: &[String], features: &[LocalFeatures], extractor: &str, model: &str) -> Result<(), LocalFileError> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let fmt = |reason: String| LocalFileError::Format { path: path.to_owned(), reason };
    if names.len() != features.len() {
        return Err(fmt(format!("{} names for {} images", names.len(), features.len())));
    }
    let dim = features.first().map_or(0, |f| f.dim);
    if let Some((i, f)) = features.iter().enumerate().find(|(_, f)| f.dim != dim || !f.is_consistent()) {
        return Err(fmt(format!("the features of {} are {}-d or inconsistent (the first image's are {dim}-d)", names[i], f.dim)));
    }
    let n: usize = features.iter().map(LocalFeatures::len).sum();
    let mut offsets = vec![0i64];
    for f in features {
        offsets.push(offsets.last().copied().unwrap_or(0) + f.len() as i64);
    }
    let locations = le_bytes(features.iter().flat_map(|f| f.locations.iter().flatten().copied()), f32::to_le_bytes);
    let descriptors = le_bytes(features.iter().flat_map(|f| f.descriptors.iter().copied()), f32::to_le_bytes);
    let scores = le_bytes(features.iter().flat_map(|f| f.scores.iter().copied()), f32::to_le_bytes);
    let scales = le_bytes(features.iter().flat_map(|f| f.scales.iter().copied()), f32::to_le_bytes);
    let offsets = le_bytes(offsets.into_iter(), i64::to_le_bytes);
    fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>, String> {
        TensorView::new(dtype, shape, data).map_err(|e| e.to_string())
    }
    let view = |dtype, shape, data| view(dtype, shape, data).map_err(fmt);
    let tensors = vec![
        ("descriptors", view(Dtype::F32, vec![n, dim], &descriptors)?),
        ("locations", view(Dtype::F32, vec![n, 2], &locations)?),
        ("offsets", view(Dtype::I64, vec![features.len() + 1], &offsets)?),
        ("scales", view(Dtype::F32, vec![n], &scales)?),
        ("scores", view(Dtype::F32, vec![n], &scores)?),
    ];
    let metadata = std::collections::HashMap::from([
        ("format".to_owned(), LOCAL_FILE_FORMAT.to_owned()),
        ("extractor".to_owned(), extractor.to_owned()),
        ("model".to_owned(), model.to_owned()),
        ("dim".to_owned(), dim.to_string()),
        ("location_order".to_owned(), "row,col".to_owned()),
        ("names".to_owned(), serde_json::to_string(names).expect("strings serialise")),
    ]);
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| fmt(e.to_string()))?;
    crate::atomic_file::write(path, crate::atomic_file::Mode::Shared, &bytes).map_err(|source| LocalFileError::Io { path: path.to_owned(), source })
}

/// Read a file [`write_local_file`] wrote, checking every shape against the others.
pub fn read_local_file(path: &std::path::Path) -> Result<LocalFile, LocalFileError> {
    use safetensors::{Dtype, SafeTensors};
    let fmt = |reason: String| LocalFileError::Format { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|source| LocalFileError::Io { path: path.to_owned(), source })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt(format!("not a safetensors file: {e}")))?;
    let metadata: std::collections::BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    if metadata.get("format").map(String::as_str) != Some(LOCAL_FILE_FORMAT) {
        return Err(fmt(format!("metadata 'format' is {:?}, expected {LOCAL_FILE_FORMAT:?}", metadata.get("format"))));
    }
    let names: Vec<String> = serde_json::from_str(metadata.get("names").map_or("", String::as_str)).map_err(|e| fmt(format!("metadata 'names': {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt(e.to_string()))?;
    let tensor = |name: &str, dtype: Dtype| -> Result<(Vec<usize>, Vec<u8>), LocalFileError> {
        let t = st.tensor(name).map_err(|e| fmt(format!("tensor '{name}': {e}")))?;
        if t.dtype() != dtype {
            return Err(fmt(format!("tensor '{name}' is {:?}, expected {dtype:?}", t.dtype())));
        }
        Ok((t.shape().to_vec(), t.data().to_vec()))
    };
    let f32s = |b: Vec<u8>| -> Vec<f32> { b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect() };
    let (oshape, offsets) = tensor("offsets", Dtype::I64)?;
    let offsets: Vec<i64> = offsets.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let (lshape, locations) = tensor("locations", Dtype::F32)?;
    let (dshape, descriptors) = tensor("descriptors", Dtype::F32)?;
    let (sshape, scores) = tensor("scores", Dtype::F32)?;
    let (cshape, scales) = tensor("scales", Dtype::F32)?;
    let n = lshape.first().copied().unwrap_or(0);
    let dim = dshape.get(1).copied().unwrap_or(0);
    let ok = oshape == [names.len() + 1]
        && lshape == [n, 2]
        && dshape == [n, dim]
        && sshape == [n]
        && cshape == [n]
        && offsets.first() == Some(&0)
        && offsets.last() == Some(&(n as i64))
        && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !ok {
        return Err(fmt(format!(
            "inconsistent shapes: offsets {oshape:?} (first {:?}, last {:?}) for {} names, locations {lshape:?}, descriptors {dshape:?}, scores {sshape:?}, scales {cshape:?}",
            offsets.first(),
            offsets.last(),
            names.len()
        )));
    }
    let (locations, descriptors, scores, scales) = (f32s(locations), f32s(descriptors), f32s(scores), f32s(scales));
    let features = offsets
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0] as usize, w[1] as usize);
            LocalFeatures {
                dim,
                locations: (a..b).map(|i| [locations[2 * i], locations[2 * i + 1]]).collect(),
                descriptors: descriptors[a * dim..b * dim].to_vec(),
                scores: scores[a..b].to_vec(),
                scales: scales[a..b].to_vec(),
            }
        })
        .collect();
    Ok(LocalFile { names, features, metadata })
}
