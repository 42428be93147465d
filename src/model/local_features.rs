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
    /// Image scale each keypoint was found at (1.0 for single-scale detectors).
    pub scales: Vec<f32>,
}

impl LocalFeatures {
    /// An empty set of `dim`-wide features.
    pub fn empty(dim: usize) -> Self {
        Self { dim, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.locations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// Descriptor of keypoint `i`.
    pub fn descriptor(&self, i: usize) -> &[f32] {
        &self.descriptors[i * self.dim..(i + 1) * self.dim]
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
    XFeat { net: Box<super::xfeat::XFeat>, params: super::xfeat::XFeatParams },
}

impl LocalModel {
    /// The name an index records (`LocalConfig::extractor`) and `--local` takes.
    pub fn name(&self) -> &'static str {
        match self {
            LocalModel::XFeat { .. } => "xfeat",
        }
    }

    /// Width of its descriptors.
    pub fn dim(&self) -> usize {
        match self {
            LocalModel::XFeat { .. } => super::xfeat::DIM,
        }
    }

    /// Local features of an image as decoded and oriented (locations in its pixels).
    pub fn extract(&self, image: &crate::decode::BgrImage) -> LocalFeatures {
        match self {
            LocalModel::XFeat { net, params } => net.extract(image, params),
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
    /// every global model.
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
