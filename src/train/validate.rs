//! Retrieval validation during training: mAP on a groups CSV, exactly as `dolg eval groups`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::TrainError;
use crate::checkpoint::Checkpoint;
use crate::descriptors::Extractor;
use crate::eval::GroupsGt;
use crate::model::{Fusion, RetrievalModel};

/// Load `checkpoint` for inference and return the groups mAP (0–1) over `images`.
pub(crate) fn groups_map(checkpoint: &Path, fusion: Fusion, device: &Device, groups: &Path, images: &Path, scales: &[f64]) -> Result<f64, TrainError> {
    let model = RetrievalModel::dolg(&Checkpoint::open(checkpoint)?, None, fusion, device)?;
    let ex = Extractor::new(model, device.clone(), scales.to_vec());
    let gt = GroupsGt::load(groups)?;
    let paths: Vec<PathBuf> = gt.images.iter().map(|n| images.join(n)).collect();
    let mut rows = Vec::with_capacity(paths.len());
    for r in ex.describe_many(&paths, None, |_, _, _| {}) {
        rows.push(r?);
    }
    let dim = rows.first().map_or(0, Vec::len);
    let flat = rows.concat();
    Ok(gt.evaluate_descriptors(&flat, dim)?.map)
}
