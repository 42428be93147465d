//! The layering rule of `ARCHITECTURE.md` ("Which module may import which"), checked on the
//! source: every `crate::<module>` a file names (comments aside) must be at or below the file's
//! own layer, and imports within a layer only those the table allows. Test-only.

use std::collections::BTreeSet;
use std::path::Path;

/// ARCHITECTURE.md's table, bottom to top.
const LAYERS: &[&[&str]] = &[
    &["atomic_file", "failpoints", "kernels", "linalg", "runtime"],
    &["decode", "metadata", "inputs", "preprocess", "checkpoint", "pretrained"],
    &["model"],
    &["descriptors", "spatial", "rerank"],
    &["spec", "shards"],
    &["index"],
    &["collection"],
    &["eval", "train"],
    &["error", "serve"],
];

/// Imports allowed within a layer (the table's last column).
const SAME_LAYER: &[(&str, &str)] = &[
    ("kernels", "runtime"),
    ("atomic_file", "failpoints"),
    ("inputs", "decode"),
    ("preprocess", "decode"),
    ("rerank", "spatial"),
    ("train", "eval"),
    ("serve", "error"),
];

/// Violations the page lists under "Known violations (to fix)". The test fails if one is fixed
/// without being taken off this list and the page, as well as on any new one.
const KNOWN: &[(&str, &str)] = &[];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The modules a source file names as `crate::<module>`, line comments removed.
fn named_modules(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// (importing module, imported module, file) for every import the rule forbids.
fn violations(src: &Path) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().to_string_lossy().into_owned();
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
            let Some(own) = layer(&top) else { continue }; // lib.rs, main.rs, cli/, this file
            let source = std::fs::read_to_string(&path).unwrap();
            for m in named_modules(&source) {
                let Some(theirs) = layer(&m) else { continue };
                let allowed = m == top || theirs < own || (theirs == own && SAME_LAYER.contains(&(top.as_str(), m.as_str())));
                if !allowed {
                    out.insert((top.clone(), m, rel.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn every_module_is_in_the_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_owned();
        let front = ["lib", "main", "cli", "architecture"].contains(&name.as_str());
        assert!(front || layer(&name).is_some(), "src/{name}: not in ARCHITECTURE.md's table of layers (nor in LAYERS here)");
    }
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let found = violations(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let new: Vec<_> = found.iter().filter(|(a, b, _)| !KNOWN.contains(&(a.as_str(), b.as_str()))).collect();
    assert!(new.is_empty(), "imports against ARCHITECTURE.md's layers: {new:?}");
    for (a, b) in KNOWN {
        assert!(found.iter().any(|(x, y, _)| x == a && y == b), "{a} -> {b} is fixed: take it off KNOWN and ARCHITECTURE.md's known violations");
    }
}

#[test]
fn the_scan_sees_imports_and_skips_comments() {
    let src = "use crate::index::Store; // crate::train\nfn f() { crate::eval::x(); }\n/// [`crate::serve`]\n";
    let names: Vec<String> = named_modules(src).into_iter().collect();
    assert_eq!(names, ["eval", "index"]);
}
