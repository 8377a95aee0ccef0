"""Bad-input corpus: every public function and method in ``densparse.__all__`` (and every CLI
subcommand) called with each abusive value in place of each of its arguments: None, wrong
types, NaN, inf, negative, 2**64, empty, a 10 MB string, a lone surrogate, nested junk.

Each call must give a result or a clean ``Exception`` subclass: never PanicException or
InternalError, never an abort, crash or hang, and never an exception that shows the library
tripped over the value (AttributeError, IndexError, OverflowError, ...). A ValueError /
TypeError must name the argument (known gaps: tests/fixtures/bad_input_unnamed.txt, which may
only shrink). The calls run in subprocesses (batched per entry point)
under a time limit, so a crash or hang fails the case that was running, not the test run.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import densparse

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bad_input_worker.py"
sys.path.insert(0, str(HERE))
import bad_input_worker as worker  # noqa: E402

# Public methods that take no user data (or only a model directory, covered by the
# constructor), so have nothing to abuse.
NO_INPUT = {
    "BM25.vocab",
    "BM25.stats",
    "DenseIndex.ids",
    "DenseIndex.compact",
    "SparseIndex.ids",
    "SparseIndex.compact",
    "SparseIndex.stats",
    "Collection.ids",
    "Collection.stats",
    "Collection.commit",
    "Collection.reload",
    "Collection.close",
    "Collection.wait_for_merges",
    "Collection.upgrade",
    "FusedResult.count",
    "FusedResult.index",
    "Hit.count",
    "Hit.index",
}
# Constructed by Collection.create / Collection.open only (the constructor is internal).
NO_INPUT |= {"Collection"}
# Entry points that need a model on disk: their other methods are covered by tests/test_encoder.py.
MODEL_CLASSES = {"Encoder", "Reranker"}
# Their constructors are internal (from_pretrained builds them).
NO_INPUT |= MODEL_CLASSES
# Parameters not abused: progress display switches.
SKIP_PARAMS = {"show_progress", "progress"}


def public_callables() -> list[str]:
    out = []
    for name in densparse.__all__:
        obj = getattr(densparse, name)
        if inspect.isclass(obj):
            if issubclass(obj, BaseException) or name in ("FusedResult", "Hit"):
                continue
            out.append(name)
            if name in MODEL_CLASSES:
                out.append(f"{name}.from_pretrained")
                continue
            for attr, member in inspect.getmembers(obj):
                if attr.startswith("_") or isinstance(inspect.getattr_static(obj, attr), property):
                    continue
                if callable(member):
                    out.append(f"{name}.{attr}")
        elif callable(obj):
            out.append(name)
    return out


def test_every_public_entry_point_is_in_the_corpus(tmp_path) -> None:
    f = worker.Fixture(tmp_path)
    eps = worker.entry_points(f)
    missing = [n for n in public_callables() if n not in eps and n not in NO_INPUT]
    assert not missing, f"add these to tests/bad_input_worker.py: {missing}"
    for name, (_, kwargs) in eps.items():
        obj = densparse
        for part in name.split("."):
            obj = getattr(obj, part)
        params = [
            p.name
            for p in inspect.signature(obj).parameters.values()
            if p.name not in ("self", "cls")
            and p.name not in SKIP_PARAMS
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        unabused = [p for p in params if p not in kwargs]
        assert not unabused, f"{name}: parameters missing from the corpus: {unabused}"


GROUPS = [
    ["BM25", "BM25.index", "BM25.save", "BM25.load"],
    ["BM25.search", "BM25.get_scores", "BM25.search_with_stats"],
    ["BM25.doc_freqs", "BM25.encode_documents", "BM25.encode_queries"],
    [
        "Analyzer",
        "Analyzer.tokenize",
        "Analyzer.tokenize_batch",
        "Analyzer.keywords",
        "Analyzer.add_word",
        "Analyzer.suggest_freq",
    ],
    [
        "DenseIndex",
        "DenseIndex.add",
        "DenseIndex.remove",
        "DenseIndex.get",
        "DenseIndex.search",
        "DenseIndex.save",
        "DenseIndex.load",
    ],
    [
        "SparseIndex",
        "SparseIndex.add",
        "SparseIndex.remove",
        "SparseIndex.get",
        "SparseIndex.search",
        "SparseIndex.save",
        "SparseIndex.load",
    ],
    ["Collection.create", "Collection.open", "Collection.get", "Collection.delete"],
    ["Collection.add", "Collection.upsert", "Collection.merge"],
    ["Collection.search"],
    ["fuse", "maxsim", "maxsim_rerank", "Encoder.from_pretrained", "Reranker.from_pretrained"],
    ["cli"],
]


def run_group(names: list[str], timeout: float) -> tuple[list[dict], str]:
    # Offline: a model name must never start a download.
    env = dict(os.environ, PYTHONFAULTHANDLER="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # In a scratch directory: relative paths among the abusive values land there.
    scratch = tempfile.mkdtemp(prefix="densparse-bad-input-")
    try:
        p = subprocess.run(
            [sys.executable, str(WORKER), *names],
            capture_output=True,
            text=True,
            errors="replace",  # the CLI echoes undecodable arguments
            timeout=timeout,
            env=env,
            cwd=scratch,
        )
        out, err, status = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, status = "timeout", "hang"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    problem = ""
    if status != 0:
        started = [x["start"] for x in lines if "start" in x]
        problem = (
            f"worker ended with {status} during {started[-1] if started else '?'}: {err[-2000:]}"
        )
    return lines, problem


# Cases whose ValueError / TypeError does not name the argument yet (a message from Python or
# numpy itself, e.g. "'int' object is not iterable"): known gaps, listed so that the list can
# only shrink. A new case that does not name its argument fails the test.
UNNAMED_BASELINE = HERE / "fixtures" / "bad_input_unnamed.txt"


def unnamed_baseline() -> set[str]:
    if not UNNAMED_BASELINE.exists():
        return set()
    return {line for line in UNNAMED_BASELINE.read_text(encoding="utf-8").splitlines() if line}


# Their valid call needs a model on disk, which the corpus does not have: every case fails on
# the model path first, so only "clean exception, no crash" is checked for them.
NO_VALID_CALL = {"Encoder.from_pretrained", "Reranker.from_pretrained"}


def names_argument(message: str, param: str) -> bool:
    m = message.lower()
    return param.lower() in m or param.rstrip("s").lower() in m


@pytest.mark.parametrize("names", GROUPS, ids=[g[0] for g in GROUPS])
def test_abusive_values(names: list[str], tmp_path: Path) -> None:
    lines, problem = run_group(names, timeout=120)
    assert not problem, problem
    bad = []
    known_unnamed = unnamed_baseline()
    for x in lines:
        if "case" not in x:
            continue
        out = x["outcome"]
        if out.startswith(("BUG", "WRONG")):
            bad.append(f"{x['case']}: {out}")
        elif (
            out.startswith(("raised ValueError", "raised TypeError"))
            and not names_argument(out, x["param"])
            and x["case"] not in known_unnamed
            and x["case"].split("(")[0] not in NO_VALID_CALL
        ):
            bad.append(f"{x['case']}: does not name {x['param']!r}: {out}")
    done = sum("case" in x for x in lines)
    if names != ["cli"]:  # every parameter of every entry point got every value
        eps = worker.entry_points(worker.Fixture(tmp_path))
        assert done == sum(len(eps[n][1]) for n in names) * len(worker.abusive_values())
    assert done > 0
    assert not bad, f"{len(bad)} of {done} cases:\n" + "\n".join(bad)
