//! Where the time goes in the DOLG-R50 trunk on the CPU: per-convolution times of the native path,
//! and the whole trunk on the native path vs burn's kernels (a development aid for the speed work).
//! Run: `cargo run --release --example profile_r50 -- CHECKPOINT [SIZE] [THREADS]`.

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use dolg::checkpoint::Checkpoint;
use dolg::kernels::cpu_resnet::profile_convs;
use dolg::model::{Backbone, BatchNorm, Dolg, Fusion};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ckpt = args.get(1).expect("checkpoint path");
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    dolg::runtime::set_threads(args.get(3).and_then(|s| s.parse().ok())).expect("threads");
    let device = Device::flex();
    let ck = Checkpoint::open(std::path::Path::new(ckpt)).unwrap();
    let (model, _) = Dolg::load(&ck, None, Fusion::Orthogonal, BatchNorm::Fold, &device).unwrap();
    let Backbone::ResNet(r) = &model.globalmodel else { panic!("ResNet checkpoint expected") };
    let trunk = r.to_cpu();

    // Per-conv times summed by label over 3 runs (after a warm-up).
    profile_convs(&trunk, size, size);
    let mut totals: Vec<(String, f64)> = Vec::new();
    for _ in 0..3 {
        for (label, t) in profile_convs(&trunk, size, size) {
            match totals.iter_mut().find(|(l, _)| *l == label) {
                Some(e) => e.1 += t / 3.0,
                None => totals.push((label, t / 3.0)),
            }
        }
    }
    let sum: f64 = totals.iter().map(|t| t.1).sum();
    for (label, t) in &totals {
        println!("{:>7.1} ms  {label}", t * 1e3);
    }
    println!("{:>7.1} ms  all convolutions (native)", sum * 1e3);

    let x = || Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 3 * size * size], [1, 3, size, size]), &device);
    // User + system CPU seconds of this process so far (Linux), to see how busy the threads are.
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) / 100.0 + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / 100.0
    };
    let native = dolg::kernels::NativeTrunk::ResNet(trunk);
    let (t, c) = (Instant::now(), cpu());
    for _ in 0..10 {
        native.forward(x(), &device);
    }
    println!("native trunk x10: {:.2} s wall, {:.2} s CPU", t.elapsed().as_secs_f64(), cpu() - c);
    for rep in 0..3 {
        let t = Instant::now();
        let (_, f4) = native.forward(x(), &device);
        let n = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (_, g4) = r.forward(x());
        g4.sum().into_scalar::<f32>();
        let b = t.elapsed().as_secs_f64();
        drop(f4);
        println!("rep {rep}: trunk native {:.0} ms, burn {:.0} ms", n * 1e3, b * 1e3);
    }
}
