#!/usr/bin/env bash
# Checks that the four builds the test suite makes (`cargo test`, `cargo build --bin dolg`, the
# Python extension built by maturin, and the `cuda` binary) resolve every shared dependency with
# the same features, so they share one set of compiled artefacts instead of rebuilding burn and
# every proc macro
# (see the "workspace hack" comment in Cargo.toml). Prints the differences and exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
features() { cargo tree "$@" -f '{p} [{f}]' --prefix none | sed 's/ (\*)$//' | sort -u; }
features -p dolg -e normal,build,dev > "${TMPDIR:-/tmp}/dolg-features-test"
features -p dolg -e normal,build > "${TMPDIR:-/tmp}/dolg-features-bin"
features -p dolg-python -e normal,build > "${TMPDIR:-/tmp}/dolg-features-python"
features -p dolg -e normal,build --features cuda > "${TMPDIR:-/tmp}/dolg-features-cuda"
# A crate present in only one build is fine (ureq in the tests, pyo3 in the extension); one present
# in two with different features is a rebuild.
python3 - "${TMPDIR:-/tmp}"/dolg-features-{test,bin,python,cuda} <<'PY'
import sys, collections
seen = collections.defaultdict(dict)
for path in sys.argv[1:]:
    for line in open(path):
        name, _, feats = line.rstrip("\n").rpartition(" [")
        # A crate may appear with several feature sets (a build dependency and a normal one):
        # compare the whole set of them.
        seen[name].setdefault(path.rsplit("-", 1)[1], set()).add(feats.rstrip("]"))
# The workspace's own packages are built per configuration on purpose (the extension without
# `serve` and `train`); only dependencies must agree.
bad = {n: v for n, v in seen.items() if len({frozenset(f) for f in v.values()}) > 1 and " (/" not in n}
for name, v in sorted(bad.items()):
    print(f"{name}: " + "; ".join(f"{k} " + " | ".join(f"[{x}]" for x in sorted(f)) for k, f in sorted(v.items())))
print(f"{len(seen)} crates, {len(bad)} resolved with different features")
sys.exit(1 if bad else 0)
PY
