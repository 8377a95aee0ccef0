"""Shared fixtures: where ../shared is, and skips when it is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import densparse

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"


def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must import the densparse these tests import:
    the source tree (with its built extension) in development, the installed wheel in CI."""
    return dict(os.environ, PYTHONPATH=str(Path(densparse.__file__).resolve().parents[1]))


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when shared data is missing."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder is not present on this machine)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def stard_texts() -> list[str]:
    d = need(DATA / "stard")
    texts = []
    for name in ("corpus.jsonl", "queries.jsonl"):
        for r in read_jsonl(d / name):
            texts += [r.get("title", ""), r["text"]]
    return [t for t in texts if t]


@pytest.fixture(scope="session")
def scifact_corpus() -> list[dict]:
    return read_jsonl(need(DATA / "scifact") / "corpus.jsonl")
