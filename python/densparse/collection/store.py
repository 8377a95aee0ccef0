"""The collection directory on disk: manifest, atomic commits, locks, garbage collection.

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
import shutil
import weakref
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from densparse import _core

try:  # POSIX: cross-process locks. Elsewhere a collection has no cross-process protection.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "densparse.collection"
VERSION = 2
MANIFEST = "manifest.json"
SEGMENTS = "segments"
GENERATIONS = "generations"
# A reader retries when the generation it read is retired before it could lock it; a writer
# committing without pause could make that happen again and again, but never this often.
_OPEN_ATTEMPTS = 1000
_CONTAINER_MAGIC = b"DENSPRSE"


class CollectionLockedError(RuntimeError):
    """Another writer holds the collection (open it with ``readonly=True`` to search it)."""


# ---------------------------------------------------------------- file digests
def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _container_crc(path: Path) -> Optional[int]:
    """The CRC-32 in a densparse index file's header (the loader checks it over the body)."""
    with open(path, "rb") as f:
        head = f.read(40)
    if len(head) == 40 and head[:8] == _CONTAINER_MAGIC:
        return int.from_bytes(head[32:36], "little")
    return None


def file_digest(path: Path) -> dict:
    """Size and CRC-32 of a file. For densparse index files the CRC-32 is the one in the
    file's own header (``"check": "header"``), so opening costs one read of 40 bytes here and
    the index loader's own pass over the body."""
    size = path.stat().st_size
    crc = _container_crc(path)
    if crc is not None:
        return {"size": size, "crc32": crc, "check": "header"}
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return {"size": size, "crc32": crc}


def check_file(path: Path, expected: Any) -> None:
    """Raise CorruptIndexError unless ``path`` exists with the manifest's size and digest."""
    if not isinstance(expected, dict) or not {"size", "crc32"} <= set(expected):
        raise _core.CorruptIndexError(f"{path}: the manifest's entry for it is damaged")
    if not path.is_file():
        raise _core.CorruptIndexError(f"{path}: file named by the manifest is missing")
    if path.stat().st_size != expected["size"]:
        raise _core.CorruptIndexError(
            f"{path}: size {path.stat().st_size} does not match the manifest's "
            f"{expected['size']}: the file is truncated, extended or replaced (checksum)"
        )
    header = expected.get("check") == "header"
    got = _container_crc(path) if header else file_digest(path)["crc32"]
    if got != expected["crc32"]:
        raise _core.CorruptIndexError(
            f"{path}: checksum does not match the manifest: the file is corrupt or was "
            "changed outside densparse"
        )


# ---------------------------------------------------------------- manifests
def _manifest_checksum(m: dict) -> int:
    body = {k: v for k, v in m.items() if k != "checksum"}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode("utf-8"))


def parse_manifest(f: Path, raw: bytes) -> dict:
    try:
        m = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _core.CorruptIndexError(f"{f}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise _core.CorruptIndexError(f"{f}: not a densparse collection manifest")
    version = m.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _core.CorruptIndexError(f"{f}: damaged manifest (format version {version!r})")
    if version > VERSION:
        raise _core.CorruptIndexError(
            f"{f}: format version {version} is newer than this densparse reads "
            f"({VERSION}); upgrade densparse"
        )
    if version >= 2 and m.get("checksum") != _manifest_checksum(m):
        raise _core.CorruptIndexError(f"{f}: manifest checksum mismatch: the file is damaged")
    gen = m.get("generation")
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
        raise _core.CorruptIndexError(f"{f}: damaged manifest (generation {gen!r})")
    return m


def read_manifest(path: Path) -> dict:
    f = path / MANIFEST
    if not f.exists():
        if path.exists() and not path.is_dir():
            raise _core.CorruptIndexError(f"{path} is a file, not a collection directory")
        raise FileNotFoundError(f"{path}: no collection here ({MANIFEST} missing)")
    try:
        raw = f.read_bytes()
    except OSError as e:
        raise _core.CorruptIndexError(f"{f}: unreadable manifest ({e})") from None
    return parse_manifest(f, raw)


def _write_synced(target: Path, data: bytes) -> None:
    """``data`` into ``target`` through a fsynced temporary file and a rename."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_manifest(path: Path, manifest: dict[str, Any]) -> dict:
    """Commit ``manifest`` (version 2, checksummed): the generation copy, then the switch.
    Returns the manifest as written."""
    m = {k: v for k, v in manifest.items() if k != "checksum"}
    m["version"] = VERSION
    m["checksum"] = _manifest_checksum(m)
    data = json.dumps(m, ensure_ascii=False, indent=1).encode("utf-8")
    gens = path / GENERATIONS
    gens.mkdir(exist_ok=True)
    _write_synced(gens / f"{m['generation']:08d}.json", data)
    fsync_path(gens)
    _write_synced(path / MANIFEST, data)
    fsync_path(path)
    return m


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
def _flock(fd: int, how: int) -> bool:
    """True when the lock was taken."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, how)
        return True
    except BlockingIOError:
        return False


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)  # closing drops the flock


class ReaderPin:
    """A shared lock on one generation: while held, no writer deletes its files."""

    def __init__(self, fd: Optional[int], generation: int) -> None:
        self.generation = generation
        self._fd = fd
        self._finalizer = weakref.finalize(self, _close, fd)

    def release(self) -> None:
        self._finalizer()


def pin_generation(path: Path, generation: int) -> Optional[ReaderPin]:
    """Lock ``generation`` shared; None when it is retired (or not a version-2 manifest)."""
    gens = path / GENERATIONS
    copy = gens / f"{generation:08d}.json"
    if not copy.exists():
        return None
    try:
        fd = os.open(gens / f"{generation:08d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only file system: nobody can be deleting anything
        return ReaderPin(None, generation)
    _flock(fd, fcntl.LOCK_SH if fcntl else 0)
    # The writer deletes the copy while it holds the lock exclusively: checked after the
    # shared lock is ours, its presence means the generation's files stay.
    if not copy.exists():
        os.close(fd)
        return None
    return ReaderPin(fd, generation)


def open_pinned(path: Path) -> tuple[dict, Optional[ReaderPin]]:
    """The current manifest and a pin on its generation (None for a version-1 collection,
    whose writers predate generation copies)."""
    for _ in range(_OPEN_ATTEMPTS):
        m = read_manifest(path)
        if m["version"] < 2:
            return m, None
        pin = pin_generation(path, m["generation"])
        if pin is not None:
            return m, pin
    raise _core.CorruptIndexError(
        f"{path}: the manifest names generation copies that do not exist "
        f"({_OPEN_ATTEMPTS} attempts)"
    )


class WriterLock:
    """An exclusive, non-blocking lock on the collection for one writing process."""

    def __init__(self, path: Path) -> None:
        self._path = path / "writer.lock"
        self._fd: Optional[int] = None
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl else 0):
            os.close(fd)
            raise CollectionLockedError(
                f"{self._path.parent}: another process is writing to this collection (or "
                "a Collection opened for writing in this process was not closed); open it "
                "with readonly=True to search it"
            )
        self._fd = fd
        # A writer dropped without close() must not keep the lock for the life of the process.
        self._finalizer = weakref.finalize(self, _close, fd)

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._fd = self._finalizer = None


# ---------------------------------------------------------------- garbage collection
def _named_files(m: dict) -> tuple[set[str], set[tuple[str, str]]]:
    segs, lives = set(), set()
    for s in m.get("segments", []):
        if isinstance(s, dict) and isinstance(s.get("name"), str):
            segs.add(s["name"])
            if isinstance(s.get("live"), str):
                lives.add((s["name"], s["live"]))
    return segs, lives


def collect_garbage(path: Path, manifest: dict) -> None:
    """Retire generations no reader holds, then remove segment directories and deletion
    files that no remaining generation names."""
    gens = path / GENERATIONS
    keep = [manifest]
    current = manifest["generation"]
    for f in sorted(gens.glob("*.json")) if gens.exists() else []:
        try:
            g = int(f.stem)
        except ValueError:
            continue
        if g == current:
            continue
        lock = gens / f"{f.stem}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl else 0):
                f.unlink(missing_ok=True)  # first: a reader that locks next sees it gone
                lock.unlink(missing_ok=True)
                continue
        finally:
            os.close(fd)
        try:
            keep.append(parse_manifest(f, f.read_bytes()))
        except (_core.CorruptIndexError, OSError):
            return  # a held generation we cannot read: delete nothing rather than guess
    # Lock files left by readers that found their generation retired.
    for lock in gens.glob("*.lock") if gens.exists() else []:
        if not (gens / f"{lock.stem}.json").exists():
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl else 0):
                    lock.unlink(missing_ok=True)
            finally:
                os.close(fd)
    segs: set[str] = set()
    lives: set[tuple[str, str]] = set()
    for m in keep:
        s, lv = _named_files(m)
        segs |= s
        lives |= lv
    root = path / SEGMENTS
    if root.exists():
        for entry in root.iterdir():
            if entry.name not in segs:
                shutil.rmtree(entry, ignore_errors=True)
                continue
            for f in entry.iterdir():
                if f.name.startswith("live-") and (entry.name, f.name) not in lives:
                    f.unlink(missing_ok=True)
    for f in path.iterdir():
        if f.name.startswith(f"{MANIFEST}.tmp"):
            f.unlink(missing_ok=True)
