"""Readers for datasets in the BEIR layout.

A BEIR dataset is a folder holding::

    corpus.jsonl        one JSON object a line: {"_id": str, "title": str, "text": str}
    queries.jsonl       one JSON object a line: {"_id": str, "text": str}
    qrels/<split>.tsv   "query-id<TAB>corpus-id<TAB>score" with a header line

Each file may also be gzipped (``corpus.jsonl.gz``...). Identifiers are always kept as
strings (``"0012"`` and ``"12"`` are different documents), and extra JSON fields such as
``metadata`` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import PathLike, add_judgment, json_objects, malformed, numbered_lines

__all__ = ["BeirDataset", "load_beir", "load_corpus", "load_qrels", "load_queries"]


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset.

    Attributes:
        corpus: ``{doc_id: {"title": str, "text": str}}`` for every document of the corpus.
        queries: ``{query_id: text}`` for the queries that appear in the split's qrels only.
        qrels: ``{query_id: {doc_id: relevance}}`` as read from ``qrels/<split>.tsv``
            (judgements of 0 are kept).
    """

    corpus: dict[str, dict[str, str]] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)

    def __repr__(self) -> str:  # the default repr would print the whole corpus
        n_pairs = sum(len(d) for d in self.qrels.values())
        return (
            f"BeirDataset(corpus={len(self.corpus)} docs, queries={len(self.queries)}, "
            f"qrels={len(self.qrels)} queries / {n_pairs} pairs)"
        )


def _find(folder: Path, name: str) -> Path:
    """Return ``folder/name``, or its gzipped twin when only that exists."""
    plain = folder / name
    gz = folder / (name + ".gz")
    if not plain.is_file() and gz.is_file():
        return gz
    return plain


def _id_field(obj: dict[str, Any], path: PathLike, lineno: int) -> str:
    if "_id" not in obj:
        raise malformed(path, lineno, "missing '_id' field")
    value = obj["_id"]
    # Some exports write numeric ids as JSON numbers; the id is still the string form.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise malformed(path, lineno, f"'_id' must be a string, got {value!r}")
    return str(value)


def _str_field(obj: dict[str, Any], key: str, path: PathLike, lineno: int, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise malformed(path, lineno, f"missing '{key}' field")
        return ""
    if not isinstance(value, str):
        got = type(value).__name__
        raise malformed(path, lineno, f"'{key}' must be a string, got {got}")
    return value


def load_corpus(path: PathLike) -> dict[str, dict[str, str]]:
    """Read a BEIR ``corpus.jsonl`` into ``{doc_id: {"title": str, "text": str}}``.

    ``title`` may be absent or null (read as ``""``); ``_id`` and ``text`` are required.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not a JSON object, lacks a field, or repeats an id; the
            message names the file and the line.
    """
    corpus: dict[str, dict[str, str]] = {}
    for lineno, obj in json_objects(path):
        doc_id = _id_field(obj, path, lineno)
        if doc_id in corpus:
            raise malformed(path, lineno, f"duplicate document id {doc_id!r}")
        corpus[doc_id] = {
            "title": _str_field(obj, "title", path, lineno, required=False),
            "text": _str_field(obj, "text", path, lineno, required=True),
        }
    return corpus


def load_queries(path: PathLike) -> dict[str, str]:
    """Read BEIR queries into ``{query_id: text}``.

    ``*.jsonl`` (optionally ``.gz``) files hold ``{"_id", "text"}`` objects; a ``*.tsv`` file
    is read as ``query_id<TAB>text`` lines (the MS MARCO layout).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line or a repeated id; the message names the file and line.
    """
    queries: dict[str, str] = {}
    name = Path(path).name.removesuffix(".gz")
    if name.endswith(".tsv"):
        for lineno, line in numbered_lines(path):
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise malformed(path, lineno, f"expected 'query_id<TAB>text', got {line!r}")
            qid, text = parts
            if qid in queries:
                raise malformed(path, lineno, f"duplicate query id {qid!r}")
            queries[qid] = text
        return queries
    for lineno, obj in json_objects(path):
        qid = _id_field(obj, path, lineno)
        if qid in queries:
            raise malformed(path, lineno, f"duplicate query id {qid!r}")
        queries[qid] = _str_field(obj, "text", path, lineno, required=True)
    return queries


def _parse_int(text: str) -> int:
    """Parse a relevance grade; ``"1.0"`` is accepted as 1, ``"1.5"`` is not."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # raises ValueError for non-numbers
        if not value.is_integer():
            raise ValueError(f"relevance must be an integer, got {text!r}") from None
        return int(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV into ``{query_id: {doc_id: relevance}}``.

    Lines are ``query-id<TAB>corpus-id<TAB>score``. The header line
    (``query-id corpus-id score``) is optional: the first line is taken as a header when its
    score column is not a number at all. Lines without tabs are split on whitespace. Repeating a
    pair with the same score is allowed; with a different score it is an error.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line without exactly three columns, a non-integer score, or a
            contradicting duplicate; the message names the file and the line.
    """
    qrels: dict[str, dict[str, int]] = {}
    first = True
    for lineno, line in numbered_lines(path):
        parts = line.split("\t")
        if len(parts) != 3:
            parts = line.split()
        if len(parts) != 3:
            raise malformed(
                path, lineno, f"expected 3 columns 'query-id<TAB>corpus-id<TAB>score', got {line!r}"
            )
        qid, doc_id, score_text = (p.strip() for p in parts)
        try:
            score = _parse_int(score_text)
        except ValueError:
            if first and not _is_number(score_text):  # a header: "query-id corpus-id score"
                first = False
                continue
            raise malformed(path, lineno, f"score must be an integer, got {score_text!r}") from None
        first = False
        if not qid or not doc_id:
            raise malformed(path, lineno, f"empty query or document id in {line!r}")
        add_judgment(qrels, qid, doc_id, score, path, lineno)
    return qrels


def load_beir(path: PathLike, split: str = "test") -> BeirDataset:
    """Load one split of a BEIR dataset folder.

    Reads ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (each may be gzipped)
    and keeps only the queries judged in that split.

    Args:
        path: the dataset folder (e.g. ``.../scifact``).
        split: the qrels file to read (``"test"``, ``"dev"``, ``"train"``...).

    Raises:
        FileNotFoundError: the folder or one of the three files is missing; the message
            lists the splits that do exist when the qrels file is the one missing.
        ValueError: a malformed file, or qrels naming a query absent from the queries file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: BEIR dataset folder not found")
    qrels_path = _find(folder / "qrels", f"{split}.tsv")
    if not qrels_path.is_file():
        qrels_dir = folder / "qrels"
        found = (
            sorted(p.name.split(".")[0] for p in qrels_dir.glob("*.tsv*"))
            if qrels_dir.is_dir()
            else []
        )
        raise FileNotFoundError(
            f"{qrels_path}: no qrels for split {split!r} (available: {', '.join(found) or 'none'})"
        )
    qrels = load_qrels(qrels_path)
    all_queries = load_queries(_find(folder, "queries.jsonl"))
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        shown = ", ".join(repr(q) for q in missing[:5])
        raise ValueError(
            f"{qrels_path}: {len(missing)} judged queries are not in queries.jsonl (e.g. {shown})"
        )
    # Keep the qrels' query order: it is the order evaluation reports them in.
    queries = {qid: all_queries[qid] for qid in qrels}
    corpus = load_corpus(_find(folder, "corpus.jsonl"))
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)
