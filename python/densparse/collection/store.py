"""The collection directory on disk: manifest, atomic commits, locks, garbage collection.

The protocol lives in the Rust core (``densparse_core::collection::store``); this module
keeps manifests as dicts for the Python side and writes the deletion marks.

Layout::

    PATH/manifest.json                the committed state (replaced atomically on commit)
    PATH/writer.lock                  held (flock) by the one process that may write
    PATH/generations/<gen>.json       a copy of every manifest that may still be in use
    PATH/generations/<gen>.lock       held shared (flock) by each reader of that generation
    PATH/segments/<name>/             one immutable segment: records, bm25.idx, dense.idx, ...
    PATH/segments/<name>/live-<gen>.npy   its deletion marks, when it has any

A commit writes every new file first (each fsynced), then the manifest's generation copy,
then a new ``manifest.json`` through a temporary file, renamed over the old one, and fsyncs
the directory. A process killed at any point leaves either the old manifest or the new one,
and both name only complete files.

Readers hold what they read: a reader takes a shared lock on its generation's lock file and
then checks that the generation's copy still exists (else it starts over from the newer
manifest). After a commit the writer removes an old generation only when it can lock it
exclusively (no reader holds it), and deletes only files that no remaining generation
names. So a reader never sees a file vanish under it, and a long-lived reader keeps its
files until it calls ``reload()`` or ``close()``.

Every file is named by the manifest with its size and CRC-32 (for densparse index files,
the CRC-32 their own header carries, which their loader verifies over the whole body), and
the manifest carries a checksum of itself: damage of any kind is ``CorruptIndexError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from densparse import _core

FORMAT = "densparse.collection"
VERSION = 2
MANIFEST = "manifest.json"
SEGMENTS = "segments"
GENERATIONS = "generations"


class CollectionLockedError(RuntimeError):
    """Another writer holds the collection (open it with ``readonly=True`` to search it)."""


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> dict:
    """Size and CRC-32 of a file. For densparse index files the CRC-32 is the one in the
    file's own header (``"check": "header"``), so opening costs one read of 40 bytes here and
    the index loader's own pass over the body."""
    return json.loads(_core.file_digest_entry(path))


def check_file(path: Path, expected: Any) -> None:
    """Raise CorruptIndexError unless ``path`` exists with the manifest's size and digest."""
    _core.check_file(path, json.dumps(expected))


def parse_manifest(f: Path, raw: bytes) -> dict:
    return json.loads(_core.manifest_parse(f, raw))


def read_manifest(path: Path) -> dict:
    return json.loads(_core.manifest_read(path))


def write_manifest(path: Path, manifest: dict[str, Any]) -> dict:
    """Commit ``manifest`` (version 2, checksummed): the generation copy, then the switch.
    Returns the manifest as written."""
    return json.loads(_core.manifest_write(path, json.dumps(manifest, allow_nan=False)))


# ---------------------------------------------------------------- deletion marks
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
    if not isinstance(name, str) or "/" in name or not name.startswith("live-"):
        raise _core.CorruptIndexError(f"{directory}: damaged manifest (deletion file {name!r})")
    check_file(directory / name, digest)
    try:
        bits = np.load(directory / name, allow_pickle=False)
        if bits.dtype != np.uint8 or bits.ndim != 1 or len(bits) != (n_docs + 7) // 8:
            raise ValueError(f"{bits.dtype}{bits.shape} for {n_docs} documents")
        live = np.unpackbits(bits, count=n_docs).astype(bool)
    except (ValueError, OSError) as e:
        raise _core.CorruptIndexError(
            f"{directory / name}: unreadable deletion marks ({e})"
        ) from None
    return live


# ---------------------------------------------------------------- locks
ReaderPin = _core.ReaderPin


def pin_generation(path: Path, generation: int) -> Optional[ReaderPin]:
    """Lock ``generation`` shared; None when it is retired."""
    return _core.pin_generation(path, generation)


def open_pinned(path: Path) -> tuple[dict, Optional[ReaderPin]]:
    """The current manifest and a pin on its generation (None for a version-1 collection,
    whose writers predate generation copies)."""
    text, pin = _core.open_pinned(path)
    return json.loads(text), pin


class WriterLock:
    """An exclusive, non-blocking lock on the collection for one writing process (released
    by :meth:`release`, or when this object is collected)."""

    def __init__(self, path: Path) -> None:
        self._dir = path
        self._lock: Optional[_core.WriterLock] = None

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.held

    def acquire(self) -> None:
        if self.held:
            return
        lock = _core.WriterLock.try_acquire(self._dir)
        if lock is None:
            raise CollectionLockedError(
                f"{self._dir}: another process is writing to this collection (or "
                "a Collection opened for writing in this process was not closed); open it "
                "with readonly=True to search it"
            )
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        self._lock = None


def collect_garbage(path: Path, manifest: dict) -> None:
    """Retire generations no reader holds, then remove segment directories and deletion
    files that no remaining generation names."""
    _core.collect_garbage(path, json.dumps(manifest))
