"""TREC run and qrels files.

A run file has one line per retrieved document, ``qid Q0 docid rank score tag``, separated
by whitespace. A TREC qrels file has ``qid iteration docid relevance`` lines. Identifiers are
kept as strings and may not contain whitespace.

Note that trec_eval ignores the rank column: it re-sorts each query by score, breaking ties
by docid in *descending* order (see :mod:`densparse.eval.metrics`). :func:`write_run`
writes ties in ascending docid order so that files are easy to read and diff; evaluation
does not depend on that choice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ._io import PathLike, add_judgment, malformed, numbered_lines, open_text

__all__ = ["read_qrels_trec", "read_run", "write_run"]

Run = Mapping[str, Mapping[str, float]]

# The same characters str.split() splits on, which is how read_run() cuts lines into columns.
_WHITESPACE = re.compile(r"\s")


def _check_token(value: object, what: str, qid: object = None) -> str:
    """Ids and the tag become whitespace-separated columns: they must be non-empty and
    free of whitespace, or the file could not be read back."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    if not value or _WHITESPACE.search(value):
        where = f" (query {qid!r})" if qid is not None else ""
        raise ValueError(f"{what} {value!r}{where} is empty or contains whitespace")
    return value


def write_run(path: PathLike, run: Run, tag: str = "densparse") -> None:
    """Write a run as a TREC run file.

    Each query's documents are written ``qid Q0 docid rank score tag``, sorted by score
    descending with ties by docid ascending, ranks counting from 1. Queries keep the order
    of ``run``. Scores are written with ``repr`` so that they read back bit for bit.

    Args:
        path: the file to write (``*.gz`` is gzipped).
        run: ``{qid: {docid: score}}``.
        tag: the run name in the last column.

    Raises:
        ValueError: an id or the tag is empty or contains whitespace, or a score is NaN.
        TypeError: an id or the tag is not a string.
    """
    _check_token(tag, "tag")
    with open_text(path, "w") as f:
        for qid, docs in run.items():
            _check_token(qid, "query id")
            scored = []
            for docid, score in docs.items():
                _check_token(docid, "document id", qid)
                s = float(score)
                if math.isnan(s):
                    raise ValueError(f"score of document {docid!r} (query {qid!r}) is NaN")
                scored.append((-s, docid))
            scored.sort()  # score descending, then docid ascending
            f.writelines(
                f"{qid} Q0 {docid} {rank} {-neg!r} {tag}\n"
                for rank, (neg, docid) in enumerate(scored, start=1)
            )


def read_run(path: PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{qid: {docid: score}}``.

    The ``Q0`` and rank columns are checked for shape but otherwise ignored, as trec_eval
    does; the order of documents in the file does not matter.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line without exactly 6 columns, a non-numeric rank or score, or the
            same document twice for one query; the message names the file and the line.
    """
    run: dict[str, dict[str, float]] = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise malformed(
                path,
                lineno,
                f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}: {line!r}",
            )
        qid, _, docid, rank, score_text, _ = parts
        try:
            int(rank)
        except ValueError:
            raise malformed(path, lineno, f"rank must be an integer, got {rank!r}") from None
        try:
            score = float(score_text)
        except ValueError:
            raise malformed(path, lineno, f"score must be a number, got {score_text!r}") from None
        if math.isnan(score):
            raise malformed(path, lineno, "score is NaN")
        docs = run.setdefault(qid, {})
        if docid in docs:
            # trec_eval refuses duplicate documents too.
            raise malformed(path, lineno, f"document {docid!r} repeated for query {qid!r}")
        docs[docid] = score
    return run


def read_qrels_trec(path: PathLike) -> dict[str, dict[str, int]]:
    """Read TREC qrels (``qid iteration docid relevance``) into ``{qid: {docid: relevance}}``.

    The iteration column is ignored. Repeating a pair with the same relevance is allowed;
    with a different one it is an error.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line without exactly 4 columns, a non-integer relevance, or a
            contradicting duplicate; the message names the file and the line.
    """
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 4:
            raise malformed(
                path,
                lineno,
                f"expected 4 columns 'qid iteration docid relevance', got {len(parts)}: {line!r}",
            )
        qid, _, docid, rel_text = parts
        try:
            rel = int(rel_text)
        except ValueError:
            raise malformed(
                path, lineno, f"relevance must be an integer, got {rel_text!r}"
            ) from None
        add_judgment(qrels, qid, docid, rel, path, lineno)
    return qrels
