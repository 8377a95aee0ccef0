"""The sharded collection directory: which shard owns an id, and the checksummed manifest.

Layout::

    PATH/sharded.json        the manifest: shards with their sizes, BM25 totals, a checksum
    PATH/shard-0000/         shard 0: an ordinary densparse Collection directory
    PATH/shard-0001/         ...

A document belongs to shard ``shard_of(id, n_shards)``: a hash of its id that does not
depend on the process, the machine or the Python version, so an add, upsert or delete of an
id always goes to the shard that holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from densparse import _core

FORMAT = "densparse.sharded"
VERSION = 1
MANIFEST = "sharded.json"


def shard_of(doc_id: str, n_shards: int) -> int:
    """The shard that owns ``doc_id``: the first 8 bytes of its BLAKE2b digest, modulo
    ``n_shards`` (stable across processes, unlike ``hash()``)."""
    if not isinstance(doc_id, str):
        raise TypeError(f"document ids must be str, not {type(doc_id).__name__}")
    h = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") % n_shards


def shard_name(i: int) -> str:
    return f"shard-{i:04d}"


def _checksum(body: dict) -> str:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def write_manifest(path: Path, shards: list[dict[str, Any]], config: dict) -> dict:
    """Write ``sharded.json`` atomically (temporary file, fsync, rename). ``shards``: one
    ``{"name", "documents", "rows", "total_tokens"}`` per shard, in shard order."""
    body = {
        "format": FORMAT,
        "version": VERSION,
        "densparse": _core.__version__,
        "hash": "blake2b-64 mod n_shards",
        "config": config,
        "shards": shards,
        "totals": {
            key: sum(int(s[key]) for s in shards) for key in ("documents", "rows", "total_tokens")
        },
    }
    m = {**body, "checksum": _checksum(body)}
    tmp = path / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    return m


def read_manifest(path: Path) -> dict:
    """The manifest, checked: CorruptIndexError when damaged, FileNotFoundError when the
    directory holds no sharded collection."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a sharded densparse collection (no {MANIFEST})")
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
        body = {k: v for k, v in m.items() if k != "checksum"}
        ok = m["format"] == FORMAT and m.get("checksum") == _checksum(body)
        names = [s["name"] for s in m["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise _core.CorruptIndexError(f"{f}: unreadable sharded manifest ({e!r})") from None
    if not ok:
        raise _core.CorruptIndexError(f"{f}: checksum mismatch or foreign format")
    if names != [shard_name(i) for i in range(len(names))] or not names:
        raise _core.CorruptIndexError(f"{f}: shards must be {shard_name(0)}... in order")
    if m["version"] > VERSION:
        raise _core.CorruptIndexError(
            f"{f}: format version {m['version']} is newer than this densparse reads ({VERSION})"
        )
    return m
