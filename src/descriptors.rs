//! Multi-scale global descriptors, the extraction pipeline, and descriptor files.
//!
//! Per scale: network → L2-normalise (eps 1e-12, as `F.normalize`); then the per-scale vectors are
//! summed in float32 in scale order, divided by their count and L2-normalised again — the authors'
//! `evaler/infer.py` order of operations.
//!
//! Files: descriptors are a float32 little-endian `.npy` of shape [N, D]; beside `X.npy` a names
//! file `X.names.txt` holds one UTF-8 line per row, in row order: the image path as given on the
//! command line (directories expanded, sorted).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use burn::tensor::{Device, Tensor, TensorData};
use npyz::WriterBuilder;
use sha2::{Digest, Sha256};

use crate::atomic_file::{self, Mode};
use crate::decode::{decode_bytes_oriented, decode_file_oriented, BgrImage, DecodeError, DecodeLimits, Orientation};
use crate::metadata::PhotoMeta;
use crate::model::{LocalFeatures, LocalModel, RetrievalModel};
use crate::preprocess::{crop, limit_size, multiscale_inputs, CropBox, FloatImage, Normalization, PreprocessError, ScaledInput, DEFAULT_MAX_SIZE};

/// Errors of describing images and of reading and writing descriptor and names files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    /// An image file that could not be read or decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A decoded image that could not be cropped or resized for the network.
    #[error("{path}: {source}")]
    Preprocess {
        /// The image file.
        path: PathBuf,
        /// Why it could not be preprocessed.
        source: PreprocessError,
    },
    /// A descriptor or names file that could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The `.npy` or names file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A descriptor file that is not the `.npy` expected (format, shape, dtype).
    #[error("{path}: {reason}")]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Rows or names that cannot be written as asked (counts, widths, newlines in names).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file the offending rows or names were to be written to.
        path: PathBuf,
        /// What is wrong with them.
        reason: String,
    },
    /// A descriptor file without the names file that should sit beside it.
    #[error("{names}: names file of {npy} not found (it is written beside the .npy by `dolg extract`)")]
    NamesMissing {
        /// The descriptor file.
        npy: PathBuf,
        /// The names file looked for ([`names_path`] of `npy`).
        names: PathBuf,
    },
    /// A descriptor file and a names file that disagree on the number of rows.
    #[error("{npy} has {rows} rows but its names file {names} lists {count} names; they were not written together")]
    NamesMismatch {
        /// The descriptor file.
        npy: PathBuf,
        /// Its names file.
        names: PathBuf,
        /// Rows in the `.npy`.
        rows: usize,
        /// Lines in the names file.
        count: usize,
    },
}

/// `x / max(‖x‖₂, 1e-12)` in place.
pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Descriptor of one image: per-scale (each L2-normalised) and the final combined vector.
#[derive(Debug, Clone)]
pub struct MultiScaleDescriptor {
    /// One L2-normalised vector per scale, in the order of [`Extractor::scales`].
    pub per_scale: Vec<Vec<f32>>,
    /// The per-scale vectors combined ([`combine_scales_with`]) and L2-normalised: the image's descriptor.
    pub descriptor: Vec<f32>,
}

/// Average per-scale unit vectors and re-normalise.
pub fn combine_scales(per_scale: &[Vec<f32>]) -> Vec<f32> {
    let d = per_scale[0].len();
    let mut acc = vec![0f32; d];
    for v in per_scale {
        acc.iter_mut().zip(v).for_each(|(a, x)| *a += x);
    }
    let k = per_scale.len() as f32;
    acc.iter_mut().for_each(|a| *a /= k);
    l2_normalize(&mut acc);
    acc
}

/// How the per-scale unit descriptors become one: their mean (DOLG's, the default) or their
/// element-wise max (SuperGlobal's scale-GeM with p → ∞, Shao et al. ICCV 2023), then L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScaleCombine {
    /// Element-wise mean of the per-scale vectors ([`combine_scales`]), as DOLG does.
    #[default]
    Mean,
    /// Element-wise max of the per-scale vectors (SuperGlobal's scale-GeM with p → ∞).
    Max,
}

/// [`combine_scales`] with a choice of [`ScaleCombine`].
pub fn combine_scales_with(per_scale: &[Vec<f32>], how: ScaleCombine) -> Vec<f32> {
    match how {
        ScaleCombine::Mean => combine_scales(per_scale),
        ScaleCombine::Max => {
            let mut acc = vec![f32::NEG_INFINITY; per_scale[0].len()];
            for v in per_scale {
                acc.iter_mut().zip(v).for_each(|(a, x)| *a = a.max(*x));
            }
            l2_normalize(&mut acc);
            acc
        }
    }
}

/// A loaded model plus everything needed to turn images into descriptors.
pub struct Extractor {
    /// The network that turns one scaled image into a global descriptor.
    pub model: RetrievalModel,
    /// Device the network's input tensors are created on.
    pub device: Device,
    /// Resize factors of the image pyramid, one network pass each (e.g. [`crate::preprocess::DEFAULT_SCALES`]).
    pub scales: Vec<f64>,
    /// Channel order, mean and standard deviation the network's input is normalised with (the model's own by default).
    pub norm: Normalization,
    /// Size and allocation limits an image must pass to be decoded.
    pub limits: DecodeLimits,
    /// Apply the EXIF orientation a file records (default) or take its pixels as stored.
    pub orientation: Orientation,
    /// Longest side an image is brought down to, after decoding, orienting and cropping, before
    /// the pyramid ([`limit_size`]); `None` or `Some(0)`: no limit. Default
    /// [`DEFAULT_MAX_SIZE`] (1024).
    pub max_size: Option<u32>,
    /// How the per-scale descriptors are combined (default: their mean).
    pub scale_combine: ScaleCombine,
    /// Local features to extract beside the global descriptor ([`Extractor::describe_many_local`]),
    /// for an index that stores them.
    pub local: Option<LocalModel>,
}

/// An image decoded, optionally cropped, and resized for every scale: the network's input.
pub struct Prepared {
    /// The network input at each of [`Extractor::scales`], in that order.
    pub inputs: Vec<ScaledInput>,
    /// The decoded (cropped) image at its own size, kept when a local model will read it.
    pub image: Option<BgrImage>,
}

/// What indexing stores about a photo file besides its descriptors, from the read that decoded it.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// SHA-256 of the file's bytes.
    pub hash: [u8; 32],
    /// Date taken, camera, position and sizes.
    pub meta: PhotoMeta,
}

/// One image's global descriptor and, with a local model, its local features.
#[derive(Debug, Clone)]
pub struct Description {
    /// The L2-normalised multi-scale global descriptor ([`MultiScaleDescriptor::descriptor`]).
    pub descriptor: Vec<f32>,
    /// The image's local features; `None` when the extractor has no local model.
    pub local: Option<LocalFeatures>,
}

impl Extractor {
    /// An extractor with the model's own input convention, the default decode limits, EXIF
    /// orientation applied and the default size limit ([`DEFAULT_MAX_SIZE`]).
    pub fn new(model: RetrievalModel, device: Device, scales: Vec<f64>) -> Self {
        let norm = model.normalization();
        Self {
            model,
            device,
            scales,
            norm,
            limits: DecodeLimits::default(),
            orientation: Orientation::Apply,
            max_size: Some(DEFAULT_MAX_SIZE),
            scale_combine: ScaleCombine::Mean,
            local: None,
        }
    }

    /// Decode (turned upright unless `orientation` says otherwise), crop (the box is in the
    /// upright image's pixels), bring within `max_size`, and preprocess one file for every scale
    /// (the part that runs on the decoding thread).
    pub fn prepare(&self, path: &Path, crop_box: Option<CropBox>) -> Result<Prepared, DescriptorError> {
        let img = decode_file_oriented(path, &self.limits, self.orientation)?;
        self.prepare_image(img, crop_box).map_err(|source| DescriptorError::Preprocess { path: path.to_owned(), source })
    }

    /// [`Extractor::prepare`] that also gives the SHA-256 of the bytes it decoded, from the same
    /// read: `dolg index add` stores that hash, and hashing while decoding reads a new photo once.
    /// The hash is of exactly the content described, even if the file changes meanwhile.
    /// Its metadata ([`PhotoMeta`]) comes from the same bytes.
    pub(crate) fn prepare_hashed(&self, path: &Path, crop_box: Option<CropBox>) -> Result<(Prepared, FileFacts), DescriptorError> {
        let bytes = std::fs::read(path).map_err(|source| DecodeError::Io { path: path.to_owned(), source })?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let (prepared, facts) = self.prepare_bytes(&bytes, path, modified, crop_box)?;
        Ok((prepared, facts))
    }

    /// Read, decode and preprocess a file already read (an upload: `modified` is `None`), with
    /// the SHA-256 of its bytes and its metadata; `path` names it in errors.
    pub fn prepare_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        modified: Option<std::time::SystemTime>,
        crop_box: Option<CropBox>,
    ) -> Result<(Prepared, FileFacts), DescriptorError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let img = decode_bytes_oriented(bytes, path, &self.limits, self.orientation)?;
        let meta = PhotoMeta::read(bytes, Some((img.width as u32, img.height as u32)), modified);
        let prepared = self.prepare_image(img, crop_box).map_err(|source| DescriptorError::Preprocess { path: path.to_owned(), source })?;
        Ok((prepared, FileFacts { hash, meta }))
    }

    /// [`Extractor::prepare`] for an image already decoded (and turned upright): crop, bring
    /// within `max_size`, preprocess for every scale. The Python binding describes arrays this way.
    pub fn prepare_image(&self, img: BgrImage, crop_box: Option<CropBox>) -> Result<Prepared, PreprocessError> {
        let img = match crop_box {
            Some(b) => crop(&img, b)?,
            None => img,
        };
        let image = self.local.is_some().then(|| img.clone());
        let img = limit_size(img, self.max_size);
        let inputs = multiscale_inputs(&FloatImage::from(&img), &self.scales, &self.norm)?;
        Ok(Prepared { inputs, image })
    }

    /// Run the network on one scaled input: the unnormalised descriptor.
    pub fn raw(&self, input: &ScaledInput) -> Vec<f32> {
        let x = Tensor::<4>::from_data(TensorData::new(input.chw.clone(), [1, 3, input.height, input.width]), &self.device);
        self.model.forward(x).into_data().try_into_vec::<f32>().expect("f32 output")
    }

    /// Run the network on every scale of a prepared image, L2-normalise each output and combine them
    /// ([`Extractor::scale_combine`]).
    pub fn describe(&self, prepared: &Prepared) -> MultiScaleDescriptor {
        // Largest scale first: the native trunk's activation buffers, sized by the first pass,
        // then serve every smaller one without reallocating (and page-faulting) them.
        let inputs = &prepared.inputs;
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].height * inputs[i].width));
        let raw = |i: usize| {
            let mut v = self.raw(&inputs[i]);
            l2_normalize(&mut v);
            (i, v)
        };
        let mut per_scale = vec![Vec::new(); inputs.len()];
        let done: Vec<(usize, Vec<f32>)> = match order.split_first() {
            // On the native path, after the largest scale (alone: its activations are the
            // largest, and its convolutions large enough to keep every thread busy), the second
            // runs beside the rest (about equal work with the default scales, areas 1 : 0.875):
            // each pass splits its convolutions over the threads, and the waits at the end of one
            // pass's convolution are filled with the other's tasks instead of idling. Their
            // activations together are smaller than the largest scale's, so the peak memory
            // stays that of one pass.
            Some((&first, rest)) if rest.len() >= 2 && self.model.runs_natively() && rayon::current_num_threads() > 1 => {
                let a = raw(first);
                let (second, others) = rest.split_first().expect("two or more");
                let (b, mut c) = rayon::join(|| raw(*second), || others.iter().map(|&i| raw(i)).collect::<Vec<_>>());
                c.push(a);
                c.push(b);
                c
            }
            _ => order.into_iter().map(raw).collect(),
        };
        for (i, v) in done {
            per_scale[i] = v;
        }
        let descriptor = combine_scales_with(&per_scale, self.scale_combine);
        MultiScaleDescriptor { per_scale, descriptor }
    }

    /// [`Extractor::prepare`] and [`Extractor::describe`] one file; the box, if any, in upright-image pixels.
    pub fn describe_file(&self, path: &Path, crop_box: Option<CropBox>) -> Result<MultiScaleDescriptor, DescriptorError> {
        Ok(self.describe(&self.prepare(path, crop_box)?))
    }

    /// The global descriptor and, with a local model, the local features of a prepared image.
    pub(crate) fn describe_full(&self, prepared: &Prepared) -> Description {
        let local = self.local.as_ref().zip(prepared.image.as_ref()).map(|(m, img)| m.extract(img));
        Description { descriptor: self.describe(prepared).descriptor, local }
    }

    /// [`Extractor::describe_full`] of one file.
    pub(crate) fn describe_file_full(&self, path: &Path, crop_box: Option<CropBox>) -> Result<Description, DescriptorError> {
        Ok(self.describe_full(&self.prepare(path, crop_box)?))
    }

    /// Describe many files. Decoding and preprocessing run on a separate thread, a few images
    /// ahead of the network, so the network never waits on JPEG decoding. `on_done` is called
    /// after each image, in input order, with its result. A failing image does not stop the run.
    pub fn describe_many(
        &self,
        paths: &[PathBuf],
        crop_box: Option<CropBox>,
        mut on_done: impl FnMut(usize, &Path, &Result<Vec<f32>, DescriptorError>),
    ) -> Vec<Result<Vec<f32>, DescriptorError>> {
        self.describe_many_cropped(paths, &|_| crop_box, |i, p, r| {
            on_done(i, p, r);
            ControlFlow::Continue(())
        })
    }

    /// [`Extractor::describe_many`] with a crop box per image (`crop_of(i)` for `paths[i]`), as
    /// Revisited Oxford/Paris queries need, and a callback that can stop the run early
    /// (`ControlFlow::Break`, e.g. when the results can no longer be stored); the returned vector
    /// then holds the results up to that image.
    pub fn describe_many_cropped(
        &self,
        paths: &[PathBuf],
        crop_of: &(dyn Fn(usize) -> Option<CropBox> + Sync),
        mut on_done: impl FnMut(usize, &Path, &Result<Vec<f32>, DescriptorError>) -> ControlFlow<()>,
    ) -> Vec<Result<Vec<f32>, DescriptorError>> {
        let mut results = Vec::with_capacity(paths.len());
        self.describe_many_local(paths, crop_of, |i, p, r| {
            let r = r.map(|d| d.descriptor);
            let flow = on_done(i, p, &r);
            results.push(r);
            flow
        });
        results
    }

    /// [`Extractor::describe_many_cropped`] giving each image's [`Description`] (with its local
    /// features when the extractor has a local model) to `on_done` only.
    pub fn describe_many_local(
        &self,
        paths: &[PathBuf],
        crop_of: &(dyn Fn(usize) -> Option<CropBox> + Sync),
        mut on_done: impl FnMut(usize, &Path, Result<Description, DescriptorError>) -> ControlFlow<()>,
    ) {
        self.pipeline(paths, &|i, p| self.prepare(p, crop_of(i)).map(|x| (x, ())), |i, p, r| on_done(i, p, r.map(|(d, ())| d)));
    }

    /// [`Extractor::describe_many_local`] (no crop) that also gives the SHA-256 and metadata of each file's
    /// bytes, hashed from the read that decoded it ([`Extractor::prepare_hashed`]).
    pub(crate) fn describe_many_hashed(
        &self,
        paths: &[PathBuf],
        on_done: impl FnMut(usize, &Path, Result<(Description, FileFacts), DescriptorError>) -> ControlFlow<()>,
    ) {
        self.pipeline(paths, &|_, p| self.prepare_hashed(p, None), on_done);
    }

    /// Prepare on a separate thread, a few images ahead of the network, so the network never
    /// waits on reading and decoding; describe in input order.
    fn pipeline<T: Send>(
        &self,
        paths: &[PathBuf],
        prepare: &PrepareFn<'_, T>,
        mut on_done: impl FnMut(usize, &Path, Result<(Description, T), DescriptorError>) -> ControlFlow<()>,
    ) {
        let (tx, rx) = sync_channel::<(usize, Result<(Prepared, T), DescriptorError>)>(1);
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, p) in paths.iter().enumerate() {
                    if tx.send((i, prepare(i, p))).is_err() {
                        break;
                    }
                }
            });
            for (i, prepared) in rx.iter() {
                let flow = on_done(i, &paths[i], prepared.map(|(p, extra)| (self.describe_full(&p), extra)));
                if flow.is_break() {
                    // Dropping the receiver makes the decoding thread's next send fail.
                    break;
                }
            }
            drop(rx);
        });
    }
}

/// Reads, decodes and preprocesses input `i` (its path given), with anything else it yields.
type PrepareFn<'a, T> = dyn Fn(usize, &Path) -> Result<(Prepared, T), DescriptorError> + Sync + 'a;

/// A file that could not be described, with the reason (which names the file).
#[derive(Debug)]
pub struct FileFailure {
    /// The file, as given.
    pub path: PathBuf,
    /// Why it could not be described.
    pub error: DescriptorError,
}

/// What [`Extractor::describe_files`] produced: one row per file that was described, in input
/// order, with its name (the path as given), and every file that was not.
#[derive(Debug, Default)]
pub struct Described {
    /// The descriptors of the files that were described, in input order, each of the model's output width.
    pub rows: Vec<Vec<f32>>,
    /// `rows[i]` describes the file `names[i]` (its path, as given, in display form).
    pub names: Vec<String>,
    /// The files that could not be described, in input order.
    pub failures: Vec<FileFailure>,
}

impl Extractor {
    /// Describe every file ([`Extractor::describe_many`]) and sort the results into the rows and
    /// names of the files that were described and the failures of those that were not. A failing
    /// file does not stop the run; `on_done` sees every result as it comes, in input order.
    pub fn describe_files(
        &self,
        paths: &[PathBuf],
        crop_box: Option<CropBox>,
        on_done: impl FnMut(usize, &Path, &Result<Vec<f32>, DescriptorError>),
    ) -> Described {
        let mut out = Described::default();
        for (path, result) in paths.iter().zip(self.describe_many(paths, crop_box, on_done)) {
            match result {
                Ok(row) => {
                    out.rows.push(row);
                    out.names.push(path.display().to_string());
                }
                Err(error) => out.failures.push(FileFailure { path: path.clone(), error }),
            }
        }
        out
    }
}

/// Names file that sits beside a descriptor file: `X.npy` → `X.names.txt`.
pub fn names_path(npy: &Path) -> PathBuf {
    let stem = npy.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    npy.with_file_name(format!("{stem}.names.txt"))
}

/// Write a `.npy` of the given shape and the element type's default dtype (`<f4` for `f32`,
/// `<i8` for `i64`, …) through [`crate::atomic_file`], streaming `values` (row-major)
/// into it, readable by everyone (0644). Errors name `path`; a count of values that does not fill
/// `shape` exactly is an error and leaves any old file in place.
pub fn write_npy<T: npyz::AutoSerialize>(path: &Path, shape: &[u64], values: impl IntoIterator<Item = T>) -> std::io::Result<()> {
    atomic_file::replace_with_writer(path, Mode::Shared, |w| npy_into(w, shape, values))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

fn npy_into<T: npyz::AutoSerialize>(w: &mut impl std::io::Write, shape: &[u64], values: impl IntoIterator<Item = T>) -> std::io::Result<()> {
    let mut npy = npyz::WriteOptions::<T>::new().default_dtype().shape(shape).writer(w).begin_nd()?;
    npy.extend(values)?;
    npy.finish()
}

/// Write an [N, D] float32 `.npy` and its names file (when `names` is given) as one pair
/// ([`atomic_file::replace_pair`]): a reader sees the old pair, the new pair, or the new `.npy`
/// with no names file (which [`read_names`] reports as missing), never a `.npy` beside names
/// written for another. Without `names`, an old names file beside `path` is removed.
pub fn write_descriptors(path: &Path, rows: &[Vec<f32>], dim: usize, names: Option<&[String]>) -> Result<(), DescriptorError> {
    let np = names_path(path);
    let ferr = |p: &Path, reason: String| DescriptorError::Invalid { path: p.to_owned(), reason };
    if let Some(names) = names {
        if names.len() != rows.len() {
            return Err(ferr(&np, format!("{} names for {} rows", names.len(), rows.len())));
        }
        if let Some(bad) = names.iter().find(|n| n.contains('\n')) {
            return Err(ferr(&np, format!("name {bad:?} contains a newline and cannot be written one per line")));
        }
    }
    if let Some(r) = rows.iter().find(|r| r.len() != dim) {
        return Err(ferr(path, format!("a descriptor row has {} values, expected {dim}", r.len())));
    }
    // Which of the two files an error is about: the names file's fill records its own failures.
    let mut names_failed = false;
    let mut write_names = |w: &mut std::io::BufWriter<std::fs::File>| {
        let r = names.unwrap_or_default().iter().try_for_each(|n| writeln!(w, "{n}"));
        names_failed = r.is_err();
        r
    };
    let fill_names: Option<&mut atomic_file::Fill<'_>> = if names.is_some() { Some(&mut write_names) } else { None };
    let shape = [rows.len() as u64, dim as u64];
    let result = atomic_file::replace_pair(path, &np, Mode::Shared, |w| npy_into(w, &shape, rows.iter().flatten().copied()), fill_names);
    result.map_err(|e| ferr(if names_failed { &np } else { path }, e.to_string()))
}

/// [`write_descriptors`] streamed, for outputs too large to hold in memory (merging extraction
/// shards or parts): `fill_rows` pushes the `rows` rows of `dim` values, in order, into the sink
/// it is given; `fill_names` pushes their names, one per row, into its sink. Each is called once
/// (rows first, then names), so a caller reads its sources twice rather than holding them. The
/// pair is replaced as one ([`atomic_file::replace_pair`]); a row of the wrong length, a name
/// with a newline, a count other than `rows`, or an error returned by a fill (e.g. a source that
/// cannot be read) fails the call and leaves any old pair in place.
pub fn write_descriptors_with(
    path: &Path,
    rows: usize,
    dim: usize,
    fill_rows: impl FnOnce(&mut dyn FnMut(&[f32]) -> std::io::Result<()>) -> std::io::Result<()>,
    fill_names: impl FnOnce(&mut dyn FnMut(&str) -> std::io::Result<()>) -> std::io::Result<()>,
) -> Result<(), DescriptorError> {
    use std::io::{Error, ErrorKind};
    let np = names_path(path);
    let shape = [rows as u64, dim as u64];
    let fill_main = |w: &mut std::io::BufWriter<std::fs::File>| {
        let mut npy = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(w).begin_nd()?;
        let mut count = 0usize;
        fill_rows(&mut |row: &[f32]| {
            if row.len() != dim {
                return Err(Error::new(ErrorKind::InvalidData, format!("a descriptor row has {} values, expected {dim}", row.len())));
            }
            count += 1;
            if count > rows {
                return Err(Error::new(ErrorKind::InvalidData, format!("more than the {rows} rows announced")));
            }
            npy.extend(row.iter().copied())
        })?;
        if count != rows {
            return Err(Error::new(ErrorKind::InvalidData, format!("{count} rows given, {rows} announced")));
        }
        npy.finish()
    };
    // Which of the two files an error is about: the names file's fill records its own failures.
    let mut names_failed = false;
    let mut fill_names = Some(fill_names);
    let mut write_names = |w: &mut std::io::BufWriter<std::fs::File>| {
        let fill = fill_names.take().ok_or_else(|| Error::other("names written twice"))?;
        let mut count = 0usize;
        let r = fill(&mut |name: &str| {
            if name.contains('\n') {
                return Err(Error::new(ErrorKind::InvalidData, format!("name {name:?} contains a newline and cannot be written one per line")));
            }
            count += 1;
            writeln!(w, "{name}")
        })
        .and_then(|()| if count == rows { Ok(()) } else { Err(Error::new(ErrorKind::InvalidData, format!("{count} names for {rows} rows"))) });
        names_failed = r.is_err();
        r
    };
    let result = atomic_file::replace_pair(path, &np, Mode::Shared, fill_main, Some(&mut write_names));
    result.map_err(|source| DescriptorError::Io { path: if names_failed { np } else { path.to_owned() }, source })
}

/// Read a descriptor file and the names file beside it, checking that they belong together (as
/// many names as rows): (row-major data, rows, dim, names).
pub fn read_matrix_with_names(path: &Path) -> Result<(Vec<f32>, usize, usize, Vec<String>), DescriptorError> {
    let (data, n, d) = read_matrix(path)?;
    let names = read_names(path)?;
    if names.len() != n {
        return Err(DescriptorError::NamesMismatch { npy: path.to_owned(), names: names_path(path), rows: n, count: names.len() });
    }
    Ok((data, n, d, names))
}

/// Read a 2-D float `.npy` (f32 or f64) as row-major f32 with its (rows, cols).
pub fn read_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize), DescriptorError> {
    let ferr = |reason: String| DescriptorError::Npy { path: path.to_owned(), reason };
    // Streamed from the file so a 2 GB distractor set costs 2 GB, not twice that.
    let file = std::fs::File::open(path).map_err(|source| DescriptorError::Io { path: path.to_owned(), source })?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(|e| ferr(format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let [n, d] = shape[..] else {
        return Err(ferr(format!("expected a 2-D array [rows, dim], found shape {shape:?}")));
    };
    if d == 0 {
        return Err(ferr(format!("array of shape {shape:?} holds no values per row")));
    }
    if npy.order() != npyz::Order::C {
        return Err(ferr("Fortran-ordered arrays are not supported; save with C order".into()));
    }
    let data: Vec<f32> = match npy_type(&npy.dtype()).as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(|e| ferr(e.to_string()))?,
        "<f8" => npy.into_vec::<f64>().map_err(|e| ferr(e.to_string()))?.into_iter().map(|v| v as f32).collect(),
        other => return Err(ferr(format!("expected float32 or float64 data, found dtype '{other}'"))),
    };
    Ok((data, n as usize, d as usize))
}

/// The `.npy` type string of a plain dtype (`<f4`, `<i8`, …); empty for structured types.
pub(crate) fn npy_type(dtype: &npyz::DType) -> String {
    match dtype {
        npyz::DType::Plain(ts) => ts.to_string(),
        _ => String::new(),
    }
}

/// Read the names file beside `npy`. Callers must check its count against the `.npy`'s rows
/// (as [`read_matrix_with_names`] does).
pub fn read_names(npy: &Path) -> Result<Vec<String>, DescriptorError> {
    let np = names_path(npy);
    let text = std::fs::read_to_string(&np).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DescriptorError::NamesMissing { npy: npy.to_owned(), names: np.clone() },
        _ => DescriptorError::Io { path: np.clone(), source },
    })?;
    Ok(text.lines().map(str::to_owned).collect())
}
