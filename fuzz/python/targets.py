"""Atheris fuzz targets for the Python entry points that parse user data.

Run one target (from the repository root, with densparse and atheris installed)::

    python fuzz/python/targets.py records -max_total_time=60 fuzz/python/corpus/records
    python fuzz/python/targets.py filters -max_total_time=60 fuzz/python/corpus/filters
    python fuzz/python/targets.py readers -max_total_time=60 fuzz/python/corpus/readers

Each input must give a result or one of the documented exceptions (ValueError, TypeError,
KeyError, with CorruptIndexError a ValueError); anything else (AttributeError, IndexError,
RecursionError, PanicException, InternalError, a crash) is a finding and stops the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import densparse
    from densparse import _core
    from densparse.collection import filters as pyfilters
    from densparse.collection import records as pyrecords
    from densparse.eval import beir, trec

EXPECTED = (ValueError, TypeError, KeyError)


def json_value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    """A JSON-like value (and a few non-JSON ones a caller might pass) from the fuzzer's bytes."""
    kind = fdp.ConsumeIntInRange(0, 11 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 12))
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in (4, 5):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 6:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 6))
    if kind in (7, 8):
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 9:
        return tuple(json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    keys = [
        "$and",
        "$or",
        "$not",
        "$in",
        "$nin",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$eq",
        "$ne",
        "$exists",
        "year",
        "tags",
        "a.b",
        "id",
        "text",
        "metadata",
        "views",
        "dense",
        "sparse",
        "colbert",
        "",
    ]
    out = {}
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        key = (
            keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]
            if fdp.ConsumeBool()
            else fdp.ConsumeUnicodeNoSurrogates(4)
        )
        out[key] = json_value(fdp, depth + 1)
    return out


def fuzz_records(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    recs = json_value(fdp)
    if fdp.ConsumeBool() and isinstance(recs, dict):
        recs = [recs]
    try:
        checked = pyrecords.validate_records(recs, None, None)  # type: ignore[arg-type]
    except EXPECTED:
        return
    w = _core.RecordStoreWriter()
    try:
        for r in checked:
            w.add(r.id, r.text, r.views, r.metadata, r.sparse)
        store = w.finish()
    except EXPECTED:
        return
    for d in range(len(store)):
        store.text(d), store.views(d), store.metadata(d), store.sparse(d)
    with contextlib.suppress(EXPECTED):
        store.filter(
            {"$or": [{"year": {"$gte": 2000}}, {"tags": {"$in": ["x", 1]}}, {"a.b": None}]}
        )


def fuzz_filters(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    spec = json_value(fdp)
    py_ok = rust_ok = True
    try:
        pyfilters.validate(spec)  # type: ignore[arg-type]
    except EXPECTED:
        py_ok = False
    try:
        _core.validate_filter(spec)
    except EXPECTED:
        rust_ok = False
    if rust_ok:
        # A filter the core accepts must evaluate on a store without errors of other kinds.
        with contextlib.suppress(EXPECTED):
            STORE.filter(spec)
    del py_ok  # the Python check may be stricter; both only raise the documented kinds


def _store() -> _core.RecordStore:
    w = _core.RecordStoreWriter()
    w.add("a", "x", [], {"year": 2001, "tags": ["x", "y"], "a": {"b": 1}})
    w.add("b", "y", [], {"year": 1999.5, "tags": "x", "ok": True, "z": None})
    w.add("c", "z", [], {})
    return w.finish()


STORE = _store()


READERS = [
    beir.load_qrels,
    beir.load_corpus,
    beir.load_queries,
    trec.read_run,
    trec.read_qrels_trec,
]


def fuzz_readers(data: bytes) -> None:
    fd, path = tempfile.mkstemp(suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        for read in READERS:
            with contextlib.suppress(EXPECTED):
                read(path)
    finally:
        os.unlink(path)


TARGETS = {"records": fuzz_records, "filters": fuzz_filters, "readers": fuzz_readers}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus dirs]")
    target = TARGETS[sys.argv.pop(1)]
    assert densparse.__version__
    json.dumps(None)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
