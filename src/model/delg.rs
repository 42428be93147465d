//! DELG: a global descriptor and attention-selected local features from one ResNet.
//!
//! Cao, Araujo and Sim, "Unifying Deep Local and Global Features for Image Search", ECCV 2020,
//! <https://arxiv.org/abs/2001.05027>, as re-implemented in PyTorch by the DOLG authors
//! (github.com/feymanpriv/DELG, `tools/extractor.py::delg_extract` and `tools/delg_utils.py`).
//! Field names are the PyTorch module names, so checkpoint keys need no renaming table:
//! `globalmodel` (pycls ResNet, `head.pool.p` GeM, `head.fc`) → global vector from `f4`;
//! `localmodel` (`conv1` 1024→512, `bn`, `conv2` 512→1) on `f3` → L2-normalised BN output
//! (taken **before** the ReLU) and `softplus(conv2(relu(·)))` attention.
//!
//! Extraction, per scale of [`DelgParams::scales`], one network pass:
//! - global: `F.normalize(fc(GeM(f4)))`; the image's descriptor is the mean of the rows at
//!   [`DelgParams::global_scales`], L2-normalised (the authors' DOLG `evaler/infer.py` recipe;
//!   their DELG extractor discards the global branch);
//! - local: positions with attention above 260, halved until at least 1000 pass or the threshold
//!   would fall below 0.1 ([`select_by_attention`]); receptive-field boxes (RF 291, stride 16,
//!   padding 145) divided by the nominal scale in float32. All scales are then pooled: the
//!   [`DelgParams::top_k`] highest scores, greedy NMS at IoU 0.98 ([`nms`]), keypoints at the box
//!   centres in (row, col) pixels of the input image.
//!
//! `../shared/fixtures/delg-r50-random/README.md` documents every step against the authors' code,
//! with their quirks (cited below by number); `tests/integration/delg_parity.rs` checks this module against it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest, Sha256};

use super::gem::GeM;
use super::layers::{BatchNorm, Linear};
use super::local_branch::LocalBranch;
use super::local_features::LocalFeatures;
use super::resnet::ResNet;
use super::{BackboneKind, Kernels, ModelError};
use crate::checkpoint::{Checkpoint, CheckpointError, VarBuilder};
use crate::decode::BgrImage;
use crate::kernels::NativeTrunk;
use crate::preprocess::{limit_size, multiscale_inputs, FloatImage, Normalization, PreprocessError, ScaledInput};

/// Receptive field, stride and padding of `f3` in input pixels (`tools/extractor.py`).
pub(crate) const RF: f32 = 291.0;
pub(crate) const STRIDE: f32 = 16.0;
pub(crate) const PADDING: f32 = 145.0;
/// First attention threshold of the halving loop (`ATTN_THRES`).
pub(crate) const ATTENTION_THRESHOLD: f32 = 260.0;
/// The loop stops once this many positions pass (a literal in `GetDelgFeature`, not `TOP_K`) ...
pub(crate) const PER_SCALE_MIN_COUNT: usize = 1000;
/// ... or when the halved threshold would fall below this.
pub const THRESHOLD_FLOOR: f32 = 0.1;

/// The authors' extraction settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DelgParams {
    /// Image scales, one network pass each (`SCALE_LIST`).
    pub scales: Vec<f64>,
    /// Scales whose global vectors are averaged into the descriptor (the DELG paper's
    /// {1/√2, 1, √2}); one missing from `scales` costs an extra global-only pass.
    pub global_scales: Vec<f64>,
    /// Local features kept per image (`TOP_K`), highest attention first.
    pub top_k: usize,
    /// NMS drops a box whose IoU with a kept one exceeds this (`IOU_THRES`).
    pub iou_threshold: f32,
}

impl Default for DelgParams {
    // The authors' literals (0.3535, 0.7071, 1.4142): round(h * s) must match theirs.
    #[allow(clippy::approx_constant)]
    fn default() -> Self {
        Self { scales: vec![0.25, 0.3535, 0.5, 0.7071, 1.0, 1.4142, 2.0], global_scales: vec![0.7071, 1.0, 1.4142], top_k: 1000, iou_threshold: 0.98 }
    }
}

/// `globalmodel`: the pycls ResNet and its retrieval head.
#[derive(Debug)]
pub struct GlobalModel {
    /// `globalmodel.{stem, s1..s4}` (BatchNorm folded).
    pub trunk: ResNet,
    /// `globalmodel.head`: GeM and the linear reduction to the global descriptor.
    pub head: GlobalHead,
}

/// `globalmodel.head`: GeM with the checkpoint's exponent, then a linear reduction.
#[derive(Debug)]
pub struct GlobalHead {
    /// `globalmodel.head.pool`: GeM over `f4`, with the checkpoint's exponent `p`.
    pub pool: GeM,
    /// `globalmodel.head.fc`: linear reduction of the pooled `f4`, 2048 → descriptor width.
    pub fc: Linear,
}

/// DELG: a pycls ResNet with a GeM retrieval head (global descriptor) and a spatial-attention local branch on `f3`.
#[derive(Debug)]
pub struct Delg {
    /// `globalmodel`: the ResNet trunk and its retrieval head.
    pub globalmodel: GlobalModel,
    /// `SpatialAttention2d(1024)`, the same module as DOLG's local branch without multi-atrous.
    pub localmodel: LocalBranch,
    /// Extraction settings (scales, top-k, NMS).
    pub params: DelgParams,
    device: Device,
    /// Native trunk ([`NativeTrunk::ResNet`]) when [`Kernels::default_for`] picks it.
    cpu_trunk: Option<Arc<NativeTrunk>>,
    /// The global outputs of the last passes [`Delg::extract`] made, keyed by their input
    /// ([`GlobalMemo`]).
    memo: GlobalMemo,
}

/// Global outputs of recent passes, keyed by the SHA-256 of their exact input (size and every
/// value), so that an index storing DELG's local features runs each photo through the network
/// once: [`Delg::extract`] (the local features, 7 scales) leaves the global output of every scale
/// here, and [`Delg::forward_global`] (the index's global descriptor, its `--scales`) takes it
/// instead of running the same input again. The same input gives the same output, so a hit is
/// exact; the collection's extractor asks for the local features first, then the global vector.
/// Bounded (a pass whose global output is never asked for is dropped after [`MEMO_ENTRIES`]).
#[derive(Debug, Default)]
struct GlobalMemo(Mutex<VecDeque<([u8; 32], Vec<f32>)>>);

/// Two photos' worth of [`DelgParams::scales`].
const MEMO_ENTRIES: usize = 14;

impl GlobalMemo {
    fn key(input: &ScaledInput) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((input.height as u64).to_le_bytes());
        h.update((input.width as u64).to_le_bytes());
        let mut buf = Vec::with_capacity(4 * 4096);
        for chunk in input.chw.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            h.update(&buf);
        }
        h.finalize().into()
    }

    fn put(&self, key: [u8; 32], global: Vec<f32>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MEMO_ENTRIES {
            m.pop_front();
        }
        m.push_back((key, global));
    }

    fn take(&self, key: &[u8; 32]) -> Option<Vec<f32>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = m.iter().position(|(k, _)| k == key)?;
        m.remove(i).map(|(_, g)| g)
    }
}

/// One network pass at one scale.
pub struct DelgScale {
    /// `f3` [1, 1024, h, w].
    pub f3: Tensor<4>,
    /// `fc(GeM(f4))`, not normalised.
    pub global: Vec<f32>,
    /// Attention [h·w], row-major.
    pub attention: Vec<f32>,
    /// `att · normalize(bn_out)`, channel-major [dim, h·w] (the authors' `local_feature`).
    pub local_feature: Vec<f32>,
    /// `f3`'s height and width.
    pub height: usize,
    /// `f3`'s width.
    pub width: usize,
}

/// The attention selection made at one scale.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSelection {
    /// The image scale of this pass.
    pub scale: f64,
    /// `f3`'s (height, width).
    pub f3_hw: [usize; 2],
    /// Times the threshold was halved; the threshold used is `260 / 2^halvings`.
    pub halvings: u32,
    /// The attention threshold used, `260 / 2^halvings`.
    pub threshold: f32,
    /// Positions selected, before the top-k and NMS.
    pub selected: usize,
    /// The attention map [h·w], row-major.
    pub attention: Vec<f32>,
}

/// What [`Delg::extract`] returns for one image.
#[derive(Debug, Clone)]
pub struct DelgOutput {
    /// The image's global descriptor, L2-normalised.
    pub global: Vec<f32>,
    /// The normalised global vector of every scale of [`DelgParams::scales`], in order.
    pub global_per_scale: Vec<Vec<f32>>,
    /// The local features: every scale's selections pooled, the top-k by attention after NMS; (row, col) in input-image pixels.
    pub local: LocalFeatures,
    /// One per scale of [`DelgParams::scales`], in order.
    pub per_scale: Vec<ScaleSelection>,
}

impl Delg {
    /// A DELG checkpoint: the pycls global head and a local attention module, and none of DOLG's
    /// fusion (`fc_t`).
    pub fn is_delg(ckpt: &Checkpoint) -> bool {
        ckpt.contains("globalmodel.head.fc.weight") && ckpt.contains("localmodel.conv1.weight") && !ckpt.contains("fc_t.weight")
    }

    /// Load for inference with the authors' [`DelgParams`] (BatchNorm folded, the native trunk
    /// on the CPU). The training heads `desc_cls.*` and `att_cls.*` are ignored; a missing or
    /// misshapen key, or any other key, is an error naming it.
    pub fn load(ckpt: &Checkpoint, device: &Device) -> Result<Self, ModelError> {
        Self::load_with_kernels(ckpt, Kernels::default_for(device), device)
    }

    /// [`Delg::load`] with the trunk's kernels chosen by the caller.
    pub(crate) fn load_with_kernels(ckpt: &Checkpoint, kernels: Kernels, device: &Device) -> Result<Self, ModelError> {
        let unknown = |reason: String| ModelError::UnknownArch { path: ckpt.path().to_owned(), reason };
        if !Self::is_delg(ckpt) {
            return Err(unknown("not a DELG checkpoint: expected 'globalmodel.head.fc.weight' and 'localmodel.conv1.weight' and no 'fc_t.weight'".into()));
        }
        let depths = match BackboneKind::detect(ckpt.keys(), "globalmodel") {
            Some(BackboneKind::ResNet(d)) => d,
            _ => return Err(unknown("expected a ResNet under 'globalmodel.s1..s4.b*'".into())),
        };
        let out_dim = match ckpt.shape("globalmodel.head.fc.weight") {
            Some(&[out, _]) => out,
            Some(s) => return Err(unknown(format!("'globalmodel.head.fc.weight' has shape {s:?}; expected [out_dim, 2048]"))),
            None => unreachable!("checked by is_delg"),
        };
        let local_dim = match ckpt.shape("localmodel.conv1.weight") {
            Some(&[dim, ..]) => dim,
            _ => unreachable!("checked by is_delg"),
        };
        let vb = VarBuilder::new(ckpt, device);
        let root = vb.root();
        let g = root.pp("globalmodel");
        let trunk = ResNet::load(depths, &g, BatchNorm::Fold)?;
        let head = GlobalHead { pool: GeM::load(&g.pp("head.pool"))?, fc: Linear::load(2048, out_dim, &g.pp("head.fc"))? };
        let localmodel = LocalBranch::load(1024, local_dim, None, true, &root.pp("localmodel"), BatchNorm::Fold)?;
        match vb.finish() {
            Ok(_) => {}
            // The attention classifier is DELG's training head; the shared ignore list knows only DOLG's.
            Err(CheckpointError::Unexpected { path, keys }) => {
                let keys: Vec<_> = keys.into_iter().filter(|(k, _)| !k.starts_with("att_cls.")).collect();
                if !keys.is_empty() {
                    return Err(CheckpointError::Unexpected { path, keys }.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        let cpu_trunk = (kernels == Kernels::Native).then(|| Arc::new(trunk.to_native()));
        Ok(Self {
            globalmodel: GlobalModel { trunk, head },
            localmodel,
            params: DelgParams::default(),
            device: device.clone(),
            cpu_trunk,
            memo: GlobalMemo::default(),
        })
    }

    /// A short human name such as `DELG-R50`.
    pub fn name(&self) -> String {
        let depths = [&self.globalmodel.trunk.s1, &self.globalmodel.trunk.s2, &self.globalmodel.trunk.s3, &self.globalmodel.trunk.s4].map(|s| s.blocks.len());
        format!("DELG-{}", BackboneKind::ResNet(depths).name())
    }

    /// Width of the global descriptor.
    pub fn global_dim(&self) -> usize {
        self.globalmodel.head.fc.bias.dims()[0]
    }

    /// Width of the local descriptors.
    pub fn local_dim(&self) -> usize {
        self.localmodel.conv1.conv.weight.dims()[0]
    }

    /// Whether the trunk runs on the native CPU path.
    pub fn kernels(&self) -> Kernels {
        if self.cpu_trunk.is_some() {
            Kernels::Native
        } else {
            Kernels::Burn
        }
    }

    fn trunk(&self, input: &ScaledInput) -> (Tensor<4>, Tensor<4>) {
        let x = Tensor::<4>::from_data(TensorData::new(input.chw.clone(), [1, 3, input.height, input.width]), &self.device);
        match &self.cpu_trunk {
            Some(native) => native.forward(x, &self.device),
            None => self.globalmodel.trunk.forward(x),
        }
    }

    fn global_head(&self, f4: Tensor<4>) -> Vec<f32> {
        let head = &self.globalmodel.head;
        host(head.fc.forward(head.pool.forward(f4)))
    }

    /// `fc(GeM(f4))` of one preprocessed scale, not normalised: taken from the last
    /// [`Delg::extract`] when it ran this exact input (`GlobalMemo`), else computed (global
    /// branch only).
    pub fn global_raw(&self, input: &ScaledInput) -> Vec<f32> {
        if let Some(g) = self.memo.take(&GlobalMemo::key(input)) {
            return g;
        }
        let (_, f4) = self.trunk(input);
        self.global_head(f4)
    }

    /// Global outputs waiting in the memo of [`Delg::global_raw`]: the passes a following
    /// global descriptor of the same photo will not run again.
    pub fn reusable_passes(&self) -> usize {
        self.memo.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `x`: [B, 3, H, W] → `fc(GeM(f4))` [B, D], not normalised: [`Delg::global_raw`] of each
    /// image, the [`super::RetrievalModel`] interface.
    pub(crate) fn forward_global(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, height, width] = x.dims();
        let data = host(x);
        let per = c * height * width;
        let rows: Vec<f32> = data.chunks(per).flat_map(|chw| self.global_raw(&ScaledInput { scale: 1.0, height, width, chw: chw.to_vec() })).collect();
        Tensor::from_data(TensorData::new(rows, [b, self.global_dim()]), &self.device)
    }

    /// The network on one preprocessed scale (the authors' `DelgExtraction.forward`).
    pub fn forward_scale(&self, input: &ScaledInput) -> DelgScale {
        let (f3, f4) = self.trunk(input);
        let [_, _, height, width] = f3.dims();
        let global = self.global_head(f4);
        let local = self.localmodel.forward(f3.clone());
        let attention = host(local.att.expect("DELG's local model has an attention conv"));
        DelgScale { f3, global, attention, local_feature: host(local.fl), height, width }
    }

    /// Global descriptor and local features of one image (BGR, 0..255, at its original size: the
    /// keypoints are in its pixels).
    pub fn extract(&self, image: &FloatImage) -> Result<DelgOutput, PreprocessError> {
        let p = &self.params;
        let dim = self.local_dim();
        let mut global_per_scale = Vec::with_capacity(p.scales.len());
        let mut per_scale = Vec::with_capacity(p.scales.len());
        let mut candidates = LocalFeatures::empty(dim);
        let mut boxes = Vec::new();
        for input in multiscale_inputs(image, &p.scales, &Normalization::DOLG)? {
            let out = self.forward_scale(&input);
            self.memo.put(GlobalMemo::key(&input), out.global.clone());
            global_per_scale.push(normalized(out.global));
            let hw = out.height * out.width;
            let (sel, halvings, threshold) = select_by_attention(&out.attention, ATTENTION_THRESHOLD, PER_SCALE_MIN_COUNT);
            // Quirk 6: boxes use the nominal scale, as float32.
            let s = input.scale as f32;
            for &i in &sel {
                let (r, c) = ((i / out.width) as f32 * STRIDE, (i % out.width) as f32 * STRIDE);
                let half = RF - 1.0 - PADDING;
                let b = [(r - PADDING) / s, (c - PADDING) / s, (r + half) / s, (c + half) / s];
                boxes.push(b);
                candidates.locations.push([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]);
                candidates.scores.push(out.attention[i]);
                candidates.scales.push(s);
                // The authors re-normalise `att · fmn`, so attention only selects (quirk 5: `fmn`
                // is the BN output before the ReLU).
                let start = candidates.descriptors.len();
                candidates.descriptors.extend((0..dim).map(|ch| out.local_feature[ch * hw + i]));
                l2_normalize(&mut candidates.descriptors[start..]);
            }
            per_scale.push(ScaleSelection {
                scale: input.scale,
                f3_hw: [out.height, out.width],
                halvings,
                threshold,
                selected: sel.len(),
                attention: out.attention,
            });
        }
        let keep = nms(&boxes, &candidates.scores, p.iou_threshold, p.top_k);
        let local = LocalFeatures {
            dim,
            locations: keep.iter().map(|&i| candidates.locations[i]).collect(),
            descriptors: keep.iter().flat_map(|&i| candidates.descriptor(i).iter().copied()).collect(),
            scores: keep.iter().map(|&i| candidates.scores[i]).collect(),
            scales: keep.iter().map(|&i| candidates.scales[i]).collect(),
        };
        let rows = p
            .global_scales
            .iter()
            .map(|&g| match p.scales.iter().position(|&s| s == g) {
                Some(i) => Ok(global_per_scale[i].clone()),
                None => Ok(normalized(self.forward_scale(&multiscale_inputs(image, &[g], &Normalization::DOLG)?[0]).global)),
            })
            .collect::<Result<Vec<_>, PreprocessError>>()?;
        Ok(DelgOutput { global: mean_normalized(&rows), global_per_scale, local, per_scale })
    }
}

impl Delg {
    /// DELG's local features of a photo as decoded and oriented, as an index stores them: the
    /// photo is first brought within `max_size` ([`limit_size`], as the global descriptor's
    /// input is; the authors' extractor runs on the original size, spec §6 bounds it by 1024),
    /// then [`Delg::extract`] runs on it, and locations are mapped back to the photo's own
    /// pixels by the per-axis size ratio (`scales` likewise: the photo scale each keypoint was
    /// found at). An image too small for the smallest scale has no features.
    pub fn extract_local(&self, image: &BgrImage, max_size: Option<u32>) -> LocalFeatures {
        let (h, w) = (image.height, image.width);
        let small = limit_size(image.clone(), max_size);
        let (fy, fx) = (h as f32 / small.height as f32, w as f32 / small.width as f32);
        match self.extract(&FloatImage::from(&small)) {
            Ok(out) => {
                let mut f = out.local;
                if (small.height, small.width) != (h, w) {
                    f.locations.iter_mut().for_each(|l| *l = [l[0] * fy, l[1] * fx]);
                    f.scales.iter_mut().for_each(|s| *s /= fy.max(fx));
                }
                f
            }
            Err(e) => {
                tracing::warn!("DELG local features: {e}; the photo gets none");
                LocalFeatures::empty(self.local_dim())
            }
        }
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

/// `x / max(‖x‖₂, 1e-12)` in place (`F.normalize`).
fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    l2_normalize(&mut v);
    v
}

/// Sum in row order, divide by the count, L2-normalise: float32 throughout, as the reference.
fn mean_normalized(rows: &[Vec<f32>]) -> Vec<f32> {
    let mut acc = vec![0f32; rows.first().map_or(0, Vec::len)];
    for r in rows {
        acc.iter_mut().zip(r).for_each(|(a, x)| *a += x);
    }
    acc.iter_mut().for_each(|a| *a /= rows.len() as f32);
    normalized(acc)
}

/// The authors' threshold-halving loop over one attention map: positions with attention strictly
/// above `t`, starting at `start` and halving while fewer than `min_count` pass and the halved
/// threshold stays at or above [`THRESHOLD_FLOOR`]. Returns the selection made with the **last
/// tested** threshold, in ascending position order, with the number of halvings and that
/// threshold. A single passing position is a one-element selection (the authors' code raises on
/// it, quirk 2).
pub fn select_by_attention(att: &[f32], start: f32, min_count: usize) -> (Vec<usize>, u32, f32) {
    let (mut t, mut halvings) = (start, 0);
    loop {
        let sel: Vec<usize> = (0..att.len()).filter(|&i| att[i] > t).collect();
        if t * 0.5 < THRESHOLD_FLOOR || sel.len() >= min_count {
            return (sel, halvings, t);
        }
        t *= 0.5;
        halvings += 1;
    }
}

/// Greedy NMS as `delg_utils.nms`: the `top_k` highest scores are taken **before** suppression,
/// then, from the highest, each kept box drops every remaining box whose IoU with it exceeds
/// `overlap` (an IoU equal to it is kept; both float32). Boxes are `[y1, x1, y2, x2]`, the IoU is
/// computed in the reference's float32 order. Returns the kept indices, highest score first: the
/// reference's `keep[:count]` (quirk 3: its zero padding is not reproduced). Equal scores keep
/// their input order (the reference's sort is unstable, quirk 4).
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], overlap: f32, top_k: usize) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len(), "one score per box");
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(top_k);
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let iou = |i: &[f32; 4], j: &[f32; 4]| {
        let w = (i[2].min(j[2]) - i[0].max(j[0])).max(0.0);
        let h = (i[3].min(j[3]) - i[1].max(j[1])).max(0.0);
        let inter = w * h;
        inter / ((area(j) - inter) + area(i))
    };
    let mut keep = Vec::new();
    while let Some((&i, rest)) = order.split_first() {
        keep.push(i);
        order = rest.iter().copied().filter(|&j| iou(&boxes[i], &boxes[j]) <= overlap).collect();
    }
    keep
}
