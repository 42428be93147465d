//! `dolg._dolg`: the Python extension module, a thin layer over the `dolg` library (pyo3 +
//! numpy). The pure-Python package `dolg` (python/dolg) re-exports it with type stubs.
//!
//! * Every library error is raised as `dolg.DolgError` with the library's message (which names
//!   the file, key or value at fault); wrong argument types raise `TypeError`, bad option values
//!   `ValueError`.
//! * Heavy work (loading a model, describing images, searching, adding, evaluating) runs with the
//!   GIL released (`Python::detach`), so other Python threads go on meanwhile. Numpy inputs are
//!   read while the GIL is held (they belong to Python) and copied once into the library's own
//!   buffer; results are moved into numpy arrays without a copy.
//! * The numbers are the CLI's: the same library calls with the same defaults (`dolg extract`,
//!   `dolg search`, `dolg index ...`, `dolg eval ...`), checked by python/tests.

mod collection;
mod eval;
mod model;

use std::path::PathBuf;

use numpy::ndarray::{Array2, Array3};
use numpy::{IntoPyArray, PyArray2, PyArray3};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _dolg,
    DolgError,
    PyException,
    "An error reported by the dolg library: a file that cannot be read or decoded, a checkpoint that does not fit the model, an index that is locked or damaged, ... The message names what is at fault."
);

/// A library error as a Python `DolgError` carrying the library's message.
pub(crate) fn lib_err(e: impl Into<dolg::Error>) -> PyErr {
    DolgError::new_err(e.into().to_string())
}

/// A `ValueError` for an option value outside `choices`.
pub(crate) fn bad_choice(what: &str, value: &str, choices: &[&str]) -> PyErr {
    PyValueError::new_err(format!("{what}={value:?}: expected one of {}", choices.join(", ")))
}

/// Parse a command-line enum spelling (`"mobilenetv2"`, `"hnsw"`, ...) as the CLI does.
pub(crate) fn value_enum<T: clap::ValueEnum>(what: &str, value: &str) -> PyResult<T> {
    T::from_str(value, true).map_err(|_| {
        let names: Vec<String> = T::value_variants().iter().map(dolg::spec::value_enum::name).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        bad_choice(what, value, &names)
    })
}

/// Row-major `[rows, cols]` values moved into a numpy array (no copy).
pub(crate) fn matrix<T: numpy::Element>(py: Python<'_>, values: Vec<T>, rows: usize, cols: usize) -> Bound<'_, PyArray2<T>> {
    Array2::from_shape_vec((rows, cols), values).expect("rows * cols values").into_pyarray(py)
}

/// A `serde_json` value as the Python object `json.loads` makes of it (dicts, lists, floats).
pub(crate) fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| DolgError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Expand images and folders into the list of images exactly as the CLI does (folders searched
/// recursively in sorted order; hidden entries skipped; links inside folders not followed unless
/// asked). Paths the walk had to skip are reported as Python warnings, as the CLI prints them.
pub(crate) fn list_files(py: Python<'_>, paths: &[PathBuf], options: &dolg::inputs::WalkOptions) -> PyResult<Vec<PathBuf>> {
    let listing = py.detach(|| dolg::inputs::list_inputs(paths, options)).map_err(lib_err)?;
    if !listing.problems.is_empty() {
        let warnings = py.import("warnings")?;
        for p in &listing.problems {
            warnings.call_method1("warn", (format!("skipped {}: {}", p.path.display(), p.error),))?;
        }
    }
    Ok(listing.files)
}

/// The images that `dolg extract PATHS...` would describe, in its order: files as given, folders
/// searched recursively (sorted, hidden entries skipped unless `include_hidden`), `exclude` glob
/// patterns left out. Returns the paths as strings, spelled as the CLI's names file spells them.
#[pyfunction]
#[pyo3(signature = (paths, *, exclude=None, follow_links=false, include_hidden=false))]
fn list_images(py: Python<'_>, paths: Vec<PathBuf>, exclude: Option<Vec<String>>, follow_links: bool, include_hidden: bool) -> PyResult<Vec<String>> {
    use dolg::inputs::{Hidden, Links, WalkOptions};
    let options = WalkOptions {
        links: if follow_links { Links::Follow } else { Links::Skip },
        hidden: if include_hidden { Hidden::Include } else { Hidden::Skip },
        exclude: exclude.unwrap_or_default(),
        files_from: None,
    };
    Ok(list_files(py, &paths, &options)?.iter().map(|p| p.display().to_string()).collect())
}

/// Decode an image file with dolg's decoder (the one `Model.describe` uses): a uint8 array
/// [H, W, 3], RGB (BGR with `bgr=True`), turned upright as its EXIF orientation says unless
/// `ignore_orientation`. `Model.describe([read_image(p)])` equals `Model.describe([p])`.
#[pyfunction]
#[pyo3(signature = (path, *, bgr=false, ignore_orientation=false))]
fn read_image(py: Python<'_>, path: PathBuf, bgr: bool, ignore_orientation: bool) -> PyResult<Bound<'_, PyArray3<u8>>> {
    use dolg::decode::{decode_file_oriented, DecodeLimits, Orientation};
    let orientation = if ignore_orientation { Orientation::Ignore } else { Orientation::Apply };
    let mut img = py.detach(|| decode_file_oriented(&path, &DecodeLimits::default(), orientation)).map_err(lib_err)?;
    if !bgr {
        img.data.chunks_exact_mut(3).for_each(|px| px.swap(0, 2));
    }
    Ok(Array3::from_shape_vec((img.height, img.width, 3), img.data).expect("decoder output is H*W*3").into_pyarray(py))
}

/// (width, height) of an image file as stored, read from its header without decoding the pixels
/// (before any EXIF orientation).
#[pyfunction]
fn image_size(py: Python<'_>, path: PathBuf) -> PyResult<(u32, u32)> {
    py.detach(|| {
        let reader = image::ImageReader::open(&path).and_then(|r| r.with_guessed_format());
        let reader = reader.map_err(|e| DolgError::new_err(format!("{}: {e}", path.display())))?;
        reader.into_dimensions().map_err(|e| DolgError::new_err(format!("{}: {e}", path.display())))
    })
}

#[pymodule]
fn _dolg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DolgError", m.py().get_type::<DolgError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_class::<collection::Collection>()?;
    m.add_function(wrap_pyfunction!(list_images, m)?)?;
    m.add_function(wrap_pyfunction!(read_image, m)?)?;
    m.add_function(wrap_pyfunction!(image_size, m)?)?;
    m.add_function(wrap_pyfunction!(eval::eval_revisited, m)?)?;
    m.add_function(wrap_pyfunction!(eval::eval_groups, m)?)?;
    Ok(())
}
