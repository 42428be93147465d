//! Decode image files as `dolg` does and write the pixels as `.npy` (uint8, [height, width, 3],
//! BGR), for comparison with OpenCV/Pillow (`scripts/check_decode_cv2.py`).
//! Run: `cargo run --release --example decode_dump -- [--ignore-orientation] [--max-size N] OUT_DIR FILE...`
//! For each FILE, OUT_DIR/<file name>.npy, or OUT_DIR/<file name>.err holding the error message.
//! With `--max-size N` the image size policy (`preprocess::limit_size`) is applied after decoding.

use std::path::{Path, PathBuf};

use dolg::decode::{decode_file_oriented, DecodeLimits, Orientation};
use dolg::descriptors::write_npy;
use dolg::preprocess::limit_size;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut orientation = Orientation::Apply;
    let mut max_size = None;
    loop {
        match args.first().map(String::as_str) {
            Some("--ignore-orientation") => {
                orientation = Orientation::Ignore;
                args.remove(0);
            }
            Some("--max-size") => {
                max_size = Some(args[1].parse::<u32>().expect("--max-size N"));
                args.drain(..2);
            }
            _ => break,
        }
    }
    let (out, files) = args.split_first().expect("usage: decode_dump [--ignore-orientation] [--max-size N] OUT_DIR FILE...");
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();
    for f in files {
        let path = Path::new(f);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match decode_file_oriented(path, &DecodeLimits::default(), orientation) {
            Ok(img) => {
                let img = limit_size(img, max_size);
                write_npy(&out.join(format!("{name}.npy")), &[img.height as u64, img.width as u64, 3], img.data).unwrap();
            }
            Err(e) => std::fs::write(out.join(format!("{name}.err")), e.to_string()).unwrap(),
        }
    }
}
