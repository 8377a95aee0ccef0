#!/usr/bin/env bash
# Packaging check: build the release abi3 wheel, install it into a fresh virtualenv (no system
# site packages) with cargo and rustc off PATH, and smoke-test the installed package from
# outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m pip install "maturin>=1.5,<2"
python3 -m maturin build --release --out "$work/dist"
wheels=("$work"/dist/densparse-*-abi3-*.whl)
[ -f "${wheels[0]}" ] || { echo "wheel_smoke: no abi3 wheel in $work/dist" >&2; exit 1; }
wheel=${wheels[0]}
echo "wheel_smoke: built $(basename "$wheel")"

python3 -m venv "$work/venv"
# PATH without any directory that holds cargo or rustc.
clean=""
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
    [ -n "$d" ] || continue
    if [ -x "$d/cargo" ] || [ -x "$d/rustc" ]; then continue; fi
    clean="${clean:+$clean:}$d"
done
export PATH="$work/venv/bin:$clean"
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    echo "wheel_smoke: cargo/rustc still on PATH" >&2
    exit 1
fi
python -m pip install --quiet "$wheel"

cd "$work"  # not the source tree: import the installed package
python - "$repo" <<'PY'
import sys
from pathlib import Path

import numpy as np

import densparse
from densparse import BM25, Analyzer, DenseIndex

repo = Path(sys.argv[1]).resolve()
where = Path(densparse.__file__).resolve()
assert repo not in where.parents, f"imported the source tree, not the wheel: {where}"

jieba = Analyzer(language="zh", stopwords=None, lowercase=False, keep_punctuation=True)
assert jieba.tokenize("我来到北京清华大学") == ["我", "来到", "北京", "清华大学"], "segmentation"
bm25 = BM25(analyzer=Analyzer())
bm25.index(["房东不退押金怎么办", "How to get a security deposit back", "老板拖欠工资"])
ids, scores = bm25.search("押金 deposit", k=2)
assert set(ids.tolist()) == {0, 1} and scores[0] > 0, (ids, scores)
dense = DenseIndex(dim=4)
dense.add(np.eye(4, dtype=np.float32))
ids, _ = dense.search(np.array([0, 0, 1, 0], np.float32), k=1)
assert ids.tolist() == [2], ids
print(f"wheel_smoke: densparse {densparse.__version__} from {where.parent} works")
PY
densparse demo | tail -n 1
densparse --help > /dev/null
echo "wheel_smoke: ok"
