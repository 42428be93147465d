//! The near-duplicate threshold measurement behind `dolg::collection::dedup::default_threshold`.
//!
//! ```text
//! cargo run --release --example dedup_bench -- make-set OUT            # OUT/images, OUT/truth.tsv
//! dolg index build --db OUT/mnv2.idx --backbone mobilenetv2 OUT/images
//! cargo run --release --example dedup_bench -- measure OUT/mnv2.idx OUT/truth.tsv
//! ```
//!
//! `make-set` takes 12 photos of `examples/landmarks/images` and writes each with 11 edits — JPEG
//! re-encodes at quality 95/75/50/30, resizes to 50 % and 25 %, centre crops keeping 90/80/70 %
//! of each side, brightness ×1.2 and ×0.8 (edits other than the re-encodes are saved at JPEG
//! quality 90) — beside a copy of the original: 12 groups of 12 near-duplicates. The other 27
//! photos are copied as they are: none is a duplicate of anything, although many show the same
//! landmark as an original (`wxbs-kyiv_2.jpg` beside the `wxbs-kyiv_1.jpg` group): different
//! photos of one place are not duplicates. `truth.tsv`: `file <TAB> group` (singletons get their
//! own group).
//!
//! `make-set-from SOURCE OUT N` does the same for a corpus source (`SOURCE/groups.csv`,
//! `SOURCE/images`): all its photos, and the 11 edits of the first photo of each of its first N
//! groups, whose other photos (the same place, another picture) are the hard negatives.
//!
//! `measure` runs `Collection::duplicates` (exact) at each threshold of a sweep and scores the
//! grouping over all pairs of photos: a pair is predicted positive when both are in one group,
//! truly positive when both come from one original. Precision, recall and F1 per threshold, then
//! the threshold of best F1 and the best precision at recall ≥ 0.9.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dolg::collection::{Collection, DedupMethod, DedupOptions, OpenMode};
use image::{DynamicImage, GenericImageView, RgbImage};

const ORIGINALS: [&str; 12] = [
    "wxbs-kyiv_1.jpg",
    "wxbs-maidan_1.jpg",
    "wxbs-submarine_1.jpg",
    "wxbs-ministry_1.jpg",
    "wxbs-kremlin_1.jpg",
    "wxbs-berlin_1.jpg",
    "wxbs-tyn_1.jpg",
    "wxbs-strahov_1.jpg",
    "wxbs-church_1.jpg",
    "wxbs-petrzin_1.jpg",
    "lg-building_1.jpg",
    "distractor_01.jpg",
];

fn save_jpeg(img: &DynamicImage, path: &Path, quality: u8) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(f, quality);
    img.to_rgb8().write_with_encoder(enc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn centre_crop(img: &DynamicImage, keep: f64) -> DynamicImage {
    let (w, h) = img.dimensions();
    let (cw, ch) = ((f64::from(w) * keep).round() as u32, (f64::from(h) * keep).round() as u32);
    img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch)
}

fn brightness(img: &DynamicImage, factor: f32) -> DynamicImage {
    let mut rgb: RgbImage = img.to_rgb8();
    for p in rgb.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (f32::from(*c) * factor).round().clamp(0.0, 255.0) as u8;
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

fn make_set(out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    files.sort();
    write_set(&files, &|name| ORIGINALS.contains(&name), out);
}

/// The labelled set of one corpus source (`SOURCE/groups.csv`, `SOURCE/images`): every photo,
/// and the edits of the first photo of each of the first `n` groups. The other photos of those
/// groups are the hard negatives: the same place, another picture.
fn make_set_from(source: &Path, out: &Path, n: usize) {
    let gt = dolg::eval::GroupsGt::load(source.join("groups.csv")).unwrap();
    let mut originals: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (image, group) in gt.images.iter().zip(&gt.group) {
        if let Some(g) = group {
            if originals.len() < n && seen.insert(g.as_str()) {
                originals.push(image);
            }
        }
    }
    let files: Vec<PathBuf> = gt.images.iter().map(|i| source.join("images").join(i)).collect();
    write_set(&files, &|name| originals.contains(&name), out);
}

fn write_set(files: &[PathBuf], is_original: &dyn Fn(&str) -> bool, out: &Path) {
    let images = out.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut truth = String::new();
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let stem = name.trim_end_matches(".jpg");
        std::fs::copy(f, images.join(name)).unwrap();
        truth.push_str(&format!("{name}\t{stem}\n"));
        if !is_original(name) {
            continue;
        }
        let img = image::ImageReader::open(f).unwrap().with_guessed_format().unwrap().decode().unwrap();
        let (w, h) = img.dimensions();
        let mut edits: Vec<(String, DynamicImage, u8)> = Vec::new();
        for q in [95u8, 75, 50, 30] {
            edits.push((format!("q{q}"), img.clone(), q));
        }
        for (label, scale) in [("half", 2), ("quarter", 4)] {
            edits.push((label.into(), img.resize_exact(w / scale, h / scale, image::imageops::FilterType::Triangle), 90));
        }
        for keep in [90, 80, 70] {
            edits.push((format!("crop{keep}"), centre_crop(&img, f64::from(keep) / 100.0), 90));
        }
        edits.push(("bright120".into(), brightness(&img, 1.2), 90));
        edits.push(("bright80".into(), brightness(&img, 0.8), 90));
        for (label, edit, q) in edits {
            let file = format!("{stem}__{label}.jpg");
            save_jpeg(&edit, &images.join(&file), q);
            truth.push_str(&format!("{file}\t{stem}\n"));
        }
    }
    std::fs::write(out.join("truth.tsv"), truth).unwrap();
    eprintln!("wrote {} and {}", images.display(), out.join("truth.tsv").display());
}

fn pairs(sizes: impl Iterator<Item = usize>) -> u64 {
    sizes.map(|s| (s as u64) * (s as u64).saturating_sub(1) / 2).sum()
}

fn measure(db: &Path, truth_file: &Path, from: f32, to: f32, step: f32) {
    let device = dolg::kernels::device("cpu").unwrap();
    let c = Collection::open(db, OpenMode::Read, &device).unwrap();
    let truth: HashMap<String, String> =
        std::fs::read_to_string(truth_file).unwrap().lines().filter_map(|l| l.split_once('\t')).map(|(f, g)| (f.to_owned(), g.to_owned())).collect();
    let file_of = |name: &str| Path::new(name).file_name().unwrap().to_str().unwrap().to_owned();
    let (names, _) = c.export();
    assert_eq!(names.len(), truth.len(), "the index must hold exactly the set's photos");
    let mut truth_sizes: HashMap<&str, usize> = HashMap::new();
    for n in &names {
        *truth_sizes.entry(truth[&file_of(n)].as_str()).or_default() += 1;
    }
    let positives = pairs(truth_sizes.values().copied());
    let info = c.info();
    println!("# {} ({} photos, {} true duplicate pairs of {} pairs)", info.model, names.len(), positives, pairs(std::iter::once(names.len())));
    println!("threshold\tgroups\tpredicted_pairs\tprecision\trecall\tf1");
    let mut rows = Vec::new();
    let steps = ((to - from) / step).round() as usize;
    for i in 0..=steps {
        let t = from + step * i as f32;
        let groups = c.duplicates(t, &DedupOptions { method: DedupMethod::Exact, ..DedupOptions::default() }).unwrap();
        let predicted = pairs(groups.iter().map(|g| g.members.len()));
        let mut tp = 0;
        for g in &groups {
            let mut by_truth: HashMap<&str, usize> = HashMap::new();
            for m in &g.members {
                *by_truth.entry(truth[&file_of(m)].as_str()).or_default() += 1;
            }
            tp += pairs(by_truth.values().copied());
        }
        let precision = if predicted == 0 { 1.0 } else { tp as f64 / predicted as f64 };
        let recall = tp as f64 / positives as f64;
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        println!("{t:.4}\t{}\t{predicted}\t{precision:.4}\t{recall:.4}\t{f1:.4}", groups.len());
        rows.push((t, precision, recall, f1));
    }
    // Ties: the highest threshold (fewest false groups when a collection grows).
    let best = rows.iter().fold(None::<&(f32, f64, f64, f64)>, |b, r| match b {
        Some(b) if b.3 > r.3 => Some(b),
        _ => Some(r),
    });
    if let Some((t, p, r, f)) = best {
        println!("# best F1: threshold {t:.4}: precision {p:.4}, recall {r:.4}, F1 {f:.4}");
    }
    let at_recall = rows.iter().filter(|r| r.2 >= 0.9).fold(None::<&(f32, f64, f64, f64)>, |b, r| match b {
        Some(b) if b.1 > r.1 => Some(b),
        _ => Some(r),
    });
    match at_recall {
        Some((t, p, r, f)) => println!("# best precision at recall >= 0.9: threshold {t:.4}: precision {p:.4}, recall {r:.4}, F1 {f:.4}"),
        None => println!("# no threshold of the sweep reaches recall 0.9"),
    }
}

/// Time the exact self-join on `n` random unit `dim`-d vectors (plus 1 % planted near-copies).
fn join_bench(n: usize, dim: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut v: Vec<f32> = Vec::with_capacity(n * dim);
    for i in 0..n {
        let row: Vec<f32> = if i % 100 == 99 {
            (0..dim).map(|d| v[(i - 1) * dim + d] + 0.01 * rng.random_range(-1.0f32..1.0)).collect()
        } else {
            (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
        };
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.extend(row.iter().map(|x| x / norm));
    }
    let t = std::time::Instant::now();
    let pairs = dolg::collection::self_join(&v, dim, None, 0.9, dolg::collection::DEFAULT_BLOCK_ROWS);
    let s = t.elapsed().as_secs_f64();
    let macs = (n as f64) * (n as f64) * (dim as f64) / 2.0;
    println!("self_join n={n} dim={dim}: {} pairs in {s:.2} s ({:.1} GFLOP/s, {} threads)", pairs.len(), 2.0 * macs / s / 1e9, rayon::current_num_threads());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["make-set", out] => make_set(Path::new(out)),
        ["make-set-from", source, out, n] => make_set_from(Path::new(source), Path::new(out), n.parse().unwrap()),
        ["measure", db, truth] => measure(Path::new(db), Path::new(truth), 0.50, 0.99, 0.01),
        ["join-bench", n, dim] => join_bench(n.parse().unwrap(), dim.parse().unwrap()),
        ["measure", db, truth, from, to, step] => measure(Path::new(db), Path::new(truth), from.parse().unwrap(), to.parse().unwrap(), step.parse().unwrap()),
        _ => {
            eprintln!("usage: dedup_bench make-set OUT | make-set-from SOURCE_DIR OUT N_ORIGINALS | measure IDX TRUTH.tsv [FROM TO STEP] | join-bench N DIM");
            std::process::exit(2);
        }
    }
}
