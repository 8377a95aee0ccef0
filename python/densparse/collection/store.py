"""The collection directory on disk: manifest, atomic commits, the writer lock, cleanup.

Layout::

    PATH/manifest.json            the committed state (replaced atomically on commit)
    PATH/writer.lock              held (flock) by the one process that may write
    PATH/segments/<name>/         one immutable segment: records.jsonl, bm25.idx, dense.idx, ...
    PATH/segments/<name>/live-<generation>.npy   its deletion marks, when it has any

A commit writes every new file first (each fsynced), then a new manifest to a temporary
file, fsyncs it, renames it over ``manifest.json`` and fsyncs the directory. A process killed
at any point leaves either the old manifest or the new one, and both name only complete
files. Files no manifest names any more are removed after the switch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from densparse import _core
from densparse.collection.segment import check_file, file_digest, fsync_path

FORMAT = "densparse.collection"
VERSION = 1
MANIFEST = "manifest.json"
SEGMENTS = "segments"


def read_manifest(path: Path) -> dict:
    f = path / MANIFEST
    if not f.exists():
        if path.exists() and not path.is_dir():
            raise _core.CorruptIndexError(f"{path} is a file, not a collection directory")
        raise FileNotFoundError(f"{path}: no collection here ({MANIFEST} missing)")
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _core.CorruptIndexError(f"{f}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise _core.CorruptIndexError(f"{f}: not a densparse collection manifest")
    if m.get("version", 0) > VERSION:
        raise _core.CorruptIndexError(
            f"{f}: format version {m.get('version')} is newer than this densparse reads "
            f"({VERSION}); upgrade densparse"
        )
    return m


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path / f"{MANIFEST}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    fsync_path(path)


def write_live(directory: Path, generation: int, live: np.ndarray) -> tuple[str, dict]:
    """Deletion marks of one segment, as packed bits in a new file."""
    name = f"live-{generation:08d}.npy"
    tmp = directory / (name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.packbits(live), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)
    return name, file_digest(directory / name)


def read_live(directory: Path, name: str, digest: dict, n_docs: int) -> np.ndarray:
    check_file(directory / name, digest)
    try:
        bits = np.load(directory / name, allow_pickle=False)
        live = np.unpackbits(bits, count=n_docs).astype(bool)
    except (ValueError, OSError) as e:
        raise _core.CorruptIndexError(
            f"{directory / name}: unreadable deletion marks ({e})"
        ) from None
    return live


def collect_garbage(path: Path, manifest: dict) -> None:
    """Remove segment directories and deletion files the manifest does not name."""
    root = path / SEGMENTS
    if not root.exists():
        return
    named = {s["name"]: s for s in manifest["segments"]}
    for entry in root.iterdir():
        seg = named.get(entry.name)
        if seg is None:
            shutil.rmtree(entry, ignore_errors=True)
            continue
        for f in entry.iterdir():
            if f.name.startswith("live-") and f.name != seg.get("live"):
                f.unlink(missing_ok=True)
    for f in path.iterdir():
        if f.name.startswith(f"{MANIFEST}.tmp"):
            f.unlink(missing_ok=True)


class WriterLock:
    """An exclusive, non-blocking lock on the collection for one writing process."""

    def __init__(self, path: Path) -> None:
        self._path = path / "writer.lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no cross-process lock
            pass
        except OSError:
            os.close(fd)
            raise RuntimeError(
                f"{self._path.parent}: another process is writing to this collection; "
                "open it with readonly=True to search it"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
