#!/usr/bin/env bash
# A short, bounded fuzz run over the committed corpora (fuzz/corpus, fuzz/python/corpus):
# each cargo-fuzz target and each atheris target for SECONDS (default 5). Stable toolchain only:
# `-s none` builds without a sanitizer (those need nightly); checked with `cargo +1.95.0 fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"  # longer campaigns: docs/project.md

cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
targets=$(cd fuzz && cargo fuzz list)
(cd fuzz && cargo fuzz build -s none --debug-assertions)
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    # New inputs go to a scratch directory: the committed corpus stays as it is.
    scratch=$(mktemp -d)
    (cd fuzz && cargo fuzz run -s none --debug-assertions "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 2>&1 | tail -n 12)
    rm -rf "$scratch"
done

# Atheris (Python entry points that parse user data): only where it installs from a wheel.
if python3 -m pip install --only-binary :all: "atheris>=2.3" >/dev/null 2>&1; then
    for t in records filters readers; do
        scratch=$(mktemp -d)
        python3 fuzz/python/targets.py "$t" -max_total_time="$secs" -timeout=20 \
            "$scratch" "fuzz/python/corpus/$t" 2>&1 | tail -n 4
        rm -rf "$scratch"
    done
else
    echo "atheris has no wheel for this Python: Python fuzz targets skipped"
fi
