//! Self-contained HTML page of search results: each query beside its ranked results, thumbnails
//! embedded as base64 JPEG so the file can be mailed or opened anywhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use dolg::index::NamedHit;

pub(crate) const THUMB: u32 = 180;

pub(crate) fn thumbnail(path: &Path) -> Option<String> {
    let img = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.decode().ok()?;
    let mut out = Vec::new();
    img.thumbnail(THUMB, THUMB).into_rgb8().write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).ok()?;
    Some(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(out)))
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn short(name: &str) -> String {
    Path::new(name).file_name().map_or_else(|| name.to_owned(), |f| f.to_string_lossy().into_owned())
}

pub fn write_html(out: &Path, queries: &[(serde_json::Value, Option<PathBuf>)], results: &[Vec<NamedHit>]) -> anyhow::Result<()> {
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    let mut thumb = |p: &str| cache.entry(p.to_owned()).or_insert_with(|| thumbnail(Path::new(p))).clone();
    let cell = |src: Option<String>, caption: &str, class: &str| {
        let img = src.map_or_else(|| "<div class=\"missing\">no preview</div>".to_owned(), |s| format!("<img src=\"{s}\" alt=\"\">"));
        format!("<figure class=\"{class}\">{img}<figcaption>{caption}</figcaption></figure>")
    };
    let mut rows = String::new();
    for ((label, path), hits) in queries.iter().zip(results) {
        let qname = label.as_str().map_or_else(|| format!("query row {label}"), str::to_owned);
        let qsrc = path.as_ref().and_then(|p| thumb(&p.display().to_string()));
        rows.push_str("<section><div class=\"row\">");
        rows.push_str(&cell(qsrc, &format!("<b>query</b><br>{}", escape(&short(&qname))), "query"));
        for (i, h) in hits.iter().enumerate() {
            rows.push_str(&cell(thumb(&h.name), &format!("#{} &middot; {:.3}<br>{}", i + 1, h.score, escape(&short(&h.name))), "hit"));
        }
        rows.push_str("</div></section>\n");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dolg search results</title>\n<style>\n\
body{{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}}\n\
section{{margin-bottom:20px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}}\n\
.row{{display:flex;gap:10px;overflow-x:auto}}\nfigure{{margin:0;text-align:center;font-size:12px;min-width:{THUMB}px}}\n\
figure img{{max-width:{THUMB}px;max-height:{THUMB}px;border-radius:4px}}\n.query{{border-right:3px solid #3a7;padding-right:10px}}\n\
.missing{{width:{THUMB}px;height:120px;background:#eee;line-height:120px;color:#888}}\n</style></head><body>\n\
<h1>dolg search results</h1>\n<p>Each row: the query (left) and its results, best first, with cosine similarity.</p>\n{rows}</body></html>\n"
    );
    dolg::atomic_file::write(out, dolg::atomic_file::Mode::Shared, html.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}
