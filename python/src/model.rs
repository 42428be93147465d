//! `dolg.Model`: a loaded model (DOLG checkpoint or pretrained backbone) that turns images into
//! descriptors, as `dolg extract` does.

use std::ops::ControlFlow;
use std::path::PathBuf;

use dolg::decode::{BgrImage, DecodeLimits};
use dolg::descriptors::{DescriptorError, Extractor};
use dolg::spec::{LoadedModel, ModelOptions, ModelSpec};
use numpy::{PyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::{bad_choice, lib_err, list_files, matrix, value_enum, DolgError};

/// A descriptor model: a DOLG checkpoint (`weights`) or a pretrained backbone (`backbone`, e.g.
/// "mobilenetv2", fetched once with `dolg fetch-weights mobilenetv2`), with the options that
/// change the descriptors. Arguments and defaults are those of `dolg extract`: `scales` (default
/// the authors' 0.3535, 0.5, 0.7071, 1.0, 1.4142), `max_size` (longest side before the pyramid,
/// 0 = no limit), `ignore_orientation`, `scale_combine` ("mean" or "max"), `arch` and `fusion`
/// overrides, `max_side` (decoder limit), `device` ("cpu"). `threads` sizes the process-wide
/// worker pool, once per process: a later, different count raises `ValueError` naming the size
/// it has (the same count is accepted). `cpu_kernels` ("auto", "portable" or "burn", as
/// `dolg --cpu-kernels`) chooses the CPU kernels, likewise once per process.
#[pyclass(frozen, module = "dolg._dolg")]
pub struct Model {
    pub(crate) spec: ModelSpec,
    pub(crate) loaded: LoadedModel,
    pub(crate) device: burn::tensor::Device,
}

/// One image to describe: a file, or pixels already decoded (BGR, as the library holds them).
enum Item {
    Path(PathBuf),
    Pixels(BgrImage),
}

/// The pixels of a uint8 [H, W, 3] array, copied once into BGR order (any strides accepted).
fn pixels(obj: &Bound<'_, PyAny>, i: usize, bgr: bool) -> PyResult<BgrImage> {
    let Ok(array) = obj.extract::<PyReadonlyArray3<'_, u8>>() else {
        let shape = obj.getattr("shape").map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
        let dtype = obj.getattr("dtype").map(|s| s.to_string()).unwrap_or_else(|_| obj.get_type().to_string());
        return Err(PyTypeError::new_err(format!("images[{i}]: expected a uint8 array of shape (H, W, 3) or a path, got {dtype} with shape {shape}")));
    };
    let &[h, w, c] = array.shape() else { unreachable!("3-D") };
    if c != 3 || h == 0 || w == 0 {
        return Err(PyValueError::new_err(format!("images[{i}]: expected shape (H, W, 3) with H, W > 0, got ({h}, {w}, {c})")));
    }
    let mut data = Vec::with_capacity(h * w * 3);
    match array.as_slice() {
        Ok(s) => data.extend_from_slice(s),
        // Strided views (a crop, a channel flip) are gathered in the same single pass.
        Err(_) => data.extend(array.as_array().iter().copied()),
    }
    if !bgr {
        data.chunks_exact_mut(3).for_each(|px| px.swap(0, 2));
    }
    Ok(BgrImage { width: w, height: h, data })
}

/// Whether `obj` is one image (a path or a 3-D array) rather than a collection of them.
fn is_single(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyString>()
        || obj.hasattr("__fspath__").unwrap_or(false)
        || obj.getattr("ndim").and_then(|n| n.extract::<usize>()).is_ok_and(|n| n == 3)
}

fn item(obj: &Bound<'_, PyAny>, i: usize, bgr: bool) -> PyResult<Item> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        return Ok(Item::Path(obj.extract::<PathBuf>()?));
    }
    pixels(obj, i, bgr).map(Item::Pixels)
}

impl Model {
    pub(crate) fn extractor(&self) -> &Extractor {
        &self.loaded.extractor
    }

    fn dim_(&self) -> usize {
        self.extractor().model.out_dim()
    }
}

/// Describe items in order; the first failure stops the run and is returned with its position.
fn describe_items(ex: &Extractor, items: Vec<Item>) -> Result<Vec<f32>, (usize, String)> {
    let dim = ex.model.out_dim();
    let mut out = Vec::with_capacity(items.len() * dim);
    // All files: the library's pipeline, which decodes a few images ahead of the network.
    if let Some(paths) = items.iter().map(|it| if let Item::Path(p) = it { Some(p.clone()) } else { None }).collect::<Option<Vec<PathBuf>>>() {
        let mut failed = None;
        ex.describe_many_cropped(&paths, &|_| None, |i, _, r| match r {
            Ok(d) => {
                out.extend_from_slice(d);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some((i, e.to_string()));
                ControlFlow::Break(())
            }
        });
        return failed.map_or(Ok(out), Err);
    }
    for (i, it) in items.into_iter().enumerate() {
        let d = match it {
            Item::Path(p) => ex.describe_file(&p, None).map_err(|e| (i, e.to_string()))?,
            Item::Pixels(img) => {
                // The library's pipeline after decoding; the pixels are moved in, not copied.
                let prepared = ex.prepare_image(img, None).map_err(|e| (i, format!("images[{i}]: {e}")))?;
                ex.describe(&prepared)
            }
        };
        out.extend(d.descriptor);
    }
    Ok(out)
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (weights=None, backbone=None, scales=None, threads=None, *, arch=None, fusion=None, max_size=dolg::preprocess::DEFAULT_MAX_SIZE, ignore_orientation=false, scale_combine="mean", max_side=20_000, device="cpu", cpu_kernels=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        weights: Option<PathBuf>,
        backbone: Option<&str>,
        scales: Option<Vec<f64>>,
        threads: Option<usize>,
        arch: Option<&str>,
        fusion: Option<&str>,
        max_size: u32,
        ignore_orientation: bool,
        scale_combine: &str,
        max_side: u32,
        device: &str,
        cpu_kernels: Option<&str>,
    ) -> PyResult<Self> {
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads=0: give a positive number of threads, or None for all cores"));
        }
        // The library's ModelOptions, which the CLI flattens into its flags: one place builds the
        // spec from them, DELG's scales for a DELG checkpoint included.
        let options = ModelOptions {
            weights,
            backbone: backbone.map(|b| value_enum("backbone", b)).transpose()?,
            arch: arch.map(|a| value_enum("arch", a)).transpose()?,
            fusion: fusion.map(|f| value_enum("fusion", f)).transpose()?,
            scales,
            max_size,
            ignore_orientation,
            scale_combine: value_enum("scale_combine", scale_combine)?,
        };
        let spec = options.spec().map_err(lib_err)?;
        dolg::runtime::set_threads(threads).map_err(|e| PyValueError::new_err(format!("threads={}: {e}", threads.unwrap_or(0))))?;
        if let Some(k) = cpu_kernels {
            dolg::runtime::set_cpu_kernels(value_enum("cpu_kernels", k)?).map_err(|e| PyValueError::new_err(format!("cpu_kernels={k:?}: {e}")))?;
        }
        let device = dolg::kernels::device(device).map_err(PyValueError::new_err)?;
        let mut loaded = py.detach(|| spec.load(&device)).map_err(lib_err)?;
        loaded.extractor.limits = DecodeLimits { max_side, ..DecodeLimits::default() };
        Ok(Self { spec, loaded, device })
    }

    /// Descriptors of `images` as float32 [N, D] (L2-normalised rows, in order). `images` is a
    /// list whose items are file paths or uint8 arrays [H, W, 3] (RGB, or BGR with `bgr=True` as
    /// OpenCV gives them), or a single path or array. A file is decoded and turned upright as
    /// its EXIF orientation says; an array is taken as the upright image. Any image that cannot
    /// be described raises `DolgError` naming it.
    #[pyo3(signature = (images, *, bgr=false))]
    fn describe<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>, bgr: bool) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let items: Vec<Item> = if is_single(images) {
            vec![item(images, 0, bgr)?]
        } else {
            let mut items = Vec::new();
            for (i, obj) in images.try_iter().map_err(|_| PyTypeError::new_err("images: expected a list of paths or uint8 arrays"))?.enumerate() {
                items.push(item(&obj?, i, bgr)?);
            }
            items
        };
        let (ex, n) = (self.extractor(), items.len());
        let rows = py.detach(|| describe_items(ex, items)).map_err(|(_, e)| DolgError::new_err(e))?;
        Ok(matrix(py, rows, n, self.dim_()))
    }

    /// Describe image files (folders are searched recursively, as `dolg extract` does) and return
    /// `(descriptors float32 [N, D], names, failures)`: one row per file described, in input
    /// order, named by its path as `dolg extract` writes it to its names file, and
    /// `(path, error)` for each file that was not. `on_error="raise"` raises `DolgError` at the
    /// first file that cannot be described instead.
    #[pyo3(signature = (paths, *, on_error="skip"))]
    #[allow(clippy::type_complexity)]
    fn describe_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        on_error: &str,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<String>, Vec<(String, String)>)> {
        let raise = match on_error {
            "skip" => false,
            "raise" => true,
            other => return Err(bad_choice("on_error", other, &["skip", "raise"])),
        };
        let files = list_files(py, &paths, &dolg::inputs::WalkOptions::default())?;
        let ex = self.extractor();
        let (rows, names, failures) = py.detach(|| {
            let (mut rows, mut names, mut failures) = (Vec::new(), Vec::new(), Vec::new());
            ex.describe_many_cropped(&files, &|_| None, |_, path, r: &Result<Vec<f32>, DescriptorError>| match r {
                Ok(d) => {
                    rows.extend_from_slice(d);
                    names.push(path.display().to_string());
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failures.push((path.display().to_string(), e.to_string()));
                    if raise {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
            });
            (rows, names, failures)
        });
        if raise {
            if let Some((_, e)) = failures.first() {
                return Err(DolgError::new_err(e.clone()));
            }
        }
        let n = names.len();
        Ok((matrix(py, rows, n, self.dim_()), names, failures))
    }

    /// Descriptor width D.
    #[getter]
    fn dim(&self) -> usize {
        self.dim_()
    }

    /// SHA-256 (hex) of the weights file and of every option that changes the descriptors: what
    /// an index records to keep vectors of different models apart.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.loaded.fingerprint
    }

    /// The model's name, e.g. "DOLG-R50 (orthogonal fusion)".
    #[getter]
    fn name(&self) -> String {
        self.extractor().model.name()
    }

    /// Image scales of the multi-scale descriptor.
    #[getter]
    fn scales(&self) -> Vec<f64> {
        self.spec.scales.clone()
    }

    /// The model spec as an index stores it (weights path, backbone, arch, fusion, scales, ...).
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json_to_py(py, &serde_json::to_value(&self.spec).map_err(|e| DolgError::new_err(e.to_string()))?)
    }

    fn __repr__(&self) -> String {
        format!("dolg.Model({}, dim={}, scales={:?})", self.name(), self.dim_(), self.spec.scales)
    }
}
