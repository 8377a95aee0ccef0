"""Every code block of the README (and of the docs pages listed in DOCS) runs as written.

Blocks run in order, one working directory per file, with small generated inputs there:

- ```python blocks are executed (each in a fresh namespace, so each must be self-contained);
- ```bash blocks: every ``densparse ...`` command runs (``python -m densparse``) and must exit 0;
  ``pip install ...`` is skipped (the install under test is the one running these tests);
  ``export VAR=value`` sets the variable for the rest of the block. Any other command makes the
  test fail unless the block is marked not-run.

A block that genuinely cannot run here (a download, a GPU) is marked by an HTML comment on the
line above its fence: ``<!-- not-run: the reason -->``; ``MAX_NOT_RUN`` keeps those few.

Inputs a block needs are made on first mention (see ``FIXTURES``): a path named in a block that
does not exist yet is prepared, unless the block itself writes it. To support a new block, add
its inputs to ``FIXTURES`` (name -> function(workdir) returning None, or a reason to skip).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest

from conftest import REPO, SHARED, subprocess_env

DOCS = [
    "README.md",
    "docs/getting-started.md",
    "docs/howto/cli.md",
    "docs/howto/hybrid.md",
    "docs/concepts/analysis.md",
    "docs/concepts/bm25.md",
    "docs/concepts/vectors.md",
    "docs/concepts/evaluation.md",
]
#: Blocks marked not-run, over all files in DOCS: keep it small.
MAX_NOT_RUN = 3

NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(path: Path) -> list[tuple[int, str, str, Optional[str]]]:
    """(line, language, code, not-run reason) of every fenced block of a Markdown file."""
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        note = NOT_RUN.search(lines[start - 1]) if start > 0 else None
        out.append((start + 1, lang, "\n".join(lines[start + 1 : j]), note and note.group(1)))
        i = j + 1
    return out


# ---------------------------------------------------------------------------- fixtures
SAMPLE = REPO / "python" / "densparse" / "data"
MINILM_INT8 = SHARED / "models" / "minilm-l6-int8-onnx"
MINILM_FP32 = SHARED / "models" / "minilm-l6-fp32"


def _my_dataset(work: Path) -> Optional[str]:
    """A BEIR folder from the package's bilingual sample: train and test qrels splits."""
    d = work / "my-dataset"
    (d / "qrels").mkdir(parents=True)
    shutil.copy(SAMPLE / "sample_corpus.jsonl", d / "corpus.jsonl")
    queries = [json.loads(line) for line in (SAMPLE / "sample_queries.jsonl").open("rb")]
    with open(d / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps({"_id": q["_id"], "text": q["text"]}, ensure_ascii=False) + "\n")
    half = len(queries) // 2
    for split, part in (("train", queries[:half]), ("test", queries[half:])):
        rows = [f"{q['_id']}\t{doc}\t1" for q in part for doc in q["relevant"]]
        (d / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n", "utf-8"
        )
    return None


def _link(src: Path, dst: Path) -> Optional[str]:
    if not src.exists():
        return f"needs {src} (the shared models folder is not present on this machine)"
    shutil.copytree(src, dst)
    return None


def _minilm_onnx(work: Path) -> Optional[str]:
    """The README exports this; where that cannot run, the shared int8 export stands in."""
    return _link(MINILM_INT8, work / "minilm-onnx")


def _minilm_checkpoint(work: Path) -> Optional[str]:
    for mod in ("torch", "transformers", "onnx"):
        try:
            __import__(mod)
        except ImportError:
            return f"needs {mod} (the export/train extras) to use a PyTorch checkpoint"
    return _link(MINILM_FP32, work / "all-MiniLM-L6-v2")


def _cross_encoder_checkpoint(work: Path) -> Optional[str]:
    """A tiny random BERT cross-encoder with the layout of a real one (as test_reranker's)."""
    try:
        from test_reranker import make_bert_reranker
    except (ImportError, pytest.skip.Exception) as e:
        return f"needs torch and transformers to build a cross-encoder checkpoint ({e})"
    if not (work / "ms-marco-MiniLM-L6-v2").exists():
        make_bert_reranker(work / "ms-marco-MiniLM-L6-v2")
    return None


def _reranker_onnx(work: Path) -> Optional[str]:
    """The README exports this; where that cannot run, the export is made here."""
    reason = _cross_encoder_checkpoint(work)
    if reason:
        return reason
    from densparse.export import export_model

    export_model(work / "ms-marco-MiniLM-L6-v2", work / "reranker-onnx", kind="reranker")
    return None


def _ray(work: Path) -> Optional[str]:
    """Not a file: blocks that import densparse.distributed need Ray (the ray extra)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "needs Ray (pip install 'densparse[ray]')"
    return None


#: name mentioned in a block -> function(workdir) making it (returns a reason to skip, or None)
FIXTURES: dict[str, Callable[[Path], Optional[str]]] = {
    "my-dataset/": _my_dataset,
    "minilm-onnx/": _minilm_onnx,
    "all-MiniLM-L6-v2/": _minilm_checkpoint,
    "ms-marco-MiniLM-L6-v2/": _cross_encoder_checkpoint,
    "reranker-onnx/": _reranker_onnx,
    # written by the README's `densparse finetune` command; if that was skipped, so is its use
    "runs/ft/onnx": lambda work: "needs the fine-tuned model of the skipped finetune command",
    "densparse.distributed": _ray,
}


def _writes(name: str, code: str) -> bool:
    """Whether a block itself creates ``name`` (an export's output directory)."""
    return re.search(rf"densparse export \S+ {re.escape(name)}", code) is not None


def _prepare(work: Path, code: str) -> Optional[str]:
    for name, make in FIXTURES.items():
        if name in code and not (work / name).exists() and not _writes(name, code):
            reason = make(work)
            if reason:
                return reason
    return None


# ---------------------------------------------------------------------------- running
def _commands(code: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, comments dropped, split on
    ``&&``."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out += [c.strip() for c in line.split("&&")]
    return out


def _run_bash(code: str, work: Path) -> None:
    env = subprocess_env()
    env["DENSPARSE_PROGRESS"] = "0"
    for cmd in _commands(code):
        if cmd.startswith("pip install"):
            continue
        if cmd.startswith("export ") and "=" in cmd:
            key, value = cmd[len("export ") :].split("=", 1)
            env[key.strip()] = value.strip()
            continue
        if not cmd.startswith("densparse "):
            raise AssertionError(f"cannot run {cmd!r}: mark the block not-run, or use densparse")
        args = [sys.executable, "-m", "densparse", *shlex.split(cmd)[1:]]
        r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"


def _run_python(code: str, work: Path) -> None:
    old = Path.cwd()
    os.chdir(work)
    try:
        exec(compile(code, "<block>", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(old)


BLOCKS = [
    pytest.param(doc, line, lang, code, reason, id=f"{doc}:{line}")
    for doc in DOCS
    for line, lang, code, reason in code_blocks(REPO / doc)
    if lang in ("python", "bash")
]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory) -> dict[str, Path]:
    return {doc: tmp_path_factory.mktemp(Path(doc).stem) for doc in DOCS}


@pytest.mark.parametrize(("doc", "line", "lang", "code", "reason"), BLOCKS)
def test_block_runs(doc, line, lang, code, reason, workdirs, monkeypatch):
    if reason:
        pytest.skip(f"marked not-run: {reason}")
    work = workdirs[doc]
    missing = _prepare(work, code)
    if missing:
        pytest.skip(missing)
    monkeypatch.setenv("DENSPARSE_PROGRESS", "0")
    if lang == "python":
        _run_python(code, work)
    else:
        _run_bash(code, work)


def test_few_blocks_are_not_run():
    not_run = [f"{d}:{b[0]}" for d in DOCS for b in code_blocks(REPO / d) if b[3]]
    assert len(not_run) <= MAX_NOT_RUN, not_run
    # every marker sits right above a fence (a marker elsewhere would silently do nothing)
    for doc in DOCS:
        lines = (REPO / doc).read_text(encoding="utf-8").splitlines()
        for i, text in enumerate(lines):
            if NOT_RUN.search(text):
                assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), f"{doc}:{i + 1}"


def test_readme_set_up_is_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert [b.count("\n") for b in blocks] == [1, 1], blocks  # one line each
    assert blocks[0].startswith("pip install . && densparse demo")
    test_command = blocks[1].strip()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    # CI spells pip as `python3 -m pip`, so the interpreter on PATH installs what it tests
    assert test_command in [c.replace("python3 -m pip ", "pip ") for c in ci]


def test_readme_bash_lines_paste_safely():
    """No template syntax in shell lines: a bare ``|`` or ``[...]`` runs as a pipe or a glob."""
    for doc in DOCS:
        for line, lang, code, _ in code_blocks(REPO / doc):
            if lang != "bash":
                continue
            for cmd in _commands(code):
                bare = re.sub(r"\"[^\"]*\"|'[^']*'", "", cmd)
                assert "|" not in bare and "[" not in bare, f"{doc}:{line}: {cmd}"
