"""Training data for fine-tuning embedding models (FlagEmbedding format), torch-free.

A training file is JSONL, one object a line::

    {"query": str, "pos": [str, ...], "neg": [str, ...]}

with an optional ``"prompt"`` (str) and the optional bookkeeping fields ``"query_id"`` (str),
``"pos_ids"`` and ``"neg_ids"`` (lists of str, as long as ``pos`` / ``neg``) that trainers
ignore. Other keys are kept as they are.

Pairs are built from a BEIR-format dataset (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``):

* question -> document (``mode="qd"``, the default; FlagEmbedding's guidance, see
  docs/algorithms.md: it beats question -> answer): the positives of a query are its
  documents judged relevance > 0, as ``title + " " + text`` (the text alone when there is no
  title — what :meth:`densparse.Encoder.encode_corpus` and ``densparse index`` embed/index);
* question -> question (``mode="qq"``, for FAQ libraries): queries that share a relevant
  document are positives of each other (the query itself, and queries with exactly its
  text, are not).

Only relevance > 0 counts as positive (0 judgments are "judged not relevant"). Queries left
without any positive are dropped and counted (logged at INFO). Hard negatives come from
:func:`densparse.train.mining.mine_hard_negatives`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from densparse.eval import BeirDataset, load_corpus, load_qrels, load_queries
from densparse.eval._io import PathLike, json_objects, malformed, open_text

log = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "PairStats",
    "build_pairs",
    "check_qrels",
    "corpus_texts",
    "doc_text",
    "load_split",
    "qd_pairs",
    "qq_pairs",
    "read_jsonl",
    "read_pool",
    "validate_record",
    "write_jsonl",
]

#: Pair builders: question -> document, question -> question.
MODES = ("qd", "qq")
#: How many offending ids an error message lists.
SHOWN = 5

Corpus = Mapping[str, Union[str, Mapping[str, Any]]]
Qrels = Mapping[str, Mapping[str, int]]


# ---------------------------------------------------------------------------- records
def _type(v: object) -> str:
    return type(v).__name__


def _str_list(obj: Mapping[str, Any], key: str, where: str, required: bool, nonempty: bool):
    if key not in obj:
        if required:
            raise ValueError(f"{where}: missing {key!r}")
        return None
    v = obj[key]
    if not isinstance(v, list):
        raise ValueError(f"{where}: {key!r} must be a list of str, got {_type(v)}")
    if nonempty and not v:
        raise ValueError(f"{where}: {key!r} is an empty list (give at least one)")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise ValueError(f"{where}: {key}[{i}] must be a str, got {_type(s)}")
        if not s.strip():
            raise ValueError(f"{where}: {key}[{i}] is an empty string")
    return v


def validate_record(obj: object, where: str = "record", require_neg: bool = True) -> dict[str, Any]:
    """Check one training record and return it (the same object).

    Required: ``query`` a non-empty str, ``pos`` a non-empty list of non-empty str, ``neg``
    a list of non-empty str (may be empty). Optional: ``prompt`` (str), ``query_id`` (str),
    ``pos_ids`` / ``neg_ids`` (lists of str as long as ``pos`` / ``neg``). Other keys pass.
    ``require_neg=False`` accepts a record without ``neg`` (input to mining).

    Raises:
        ValueError: naming ``where`` and what is wrong (wrong types included, so a bad
            file is always one exception type).
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {_type(obj)}")
    if "query" not in obj:
        raise ValueError(f"{where}: missing 'query'")
    q = obj["query"]
    if not isinstance(q, str):
        raise ValueError(f"{where}: 'query' must be a str, got {_type(q)}")
    if not q.strip():
        raise ValueError(f"{where}: 'query' is an empty string")
    pos = _str_list(obj, "pos", where, required=True, nonempty=True)
    neg = _str_list(obj, "neg", where, required=require_neg, nonempty=False) or []
    for key in ("prompt", "query_id"):
        if key in obj and not isinstance(obj[key], str):
            raise ValueError(f"{where}: {key!r} must be a str, got {_type(obj[key])}")
    for key, texts in (("pos_ids", pos), ("neg_ids", neg)):
        if key in obj:
            ids = obj[key]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError(f"{where}: {key!r} must be a list of str")
            if len(ids) != len(texts):
                base = key[:3]
                raise ValueError(
                    f"{where}: {key!r} has {len(ids)} ids for {len(texts)} {base!r} texts"
                )
    return obj


def read_jsonl(path: PathLike, require_neg: bool = True) -> list[dict[str, Any]]:
    """Read and validate a training JSONL file (``.gz`` is gunzipped).

    Every non-blank line must be a JSON object passing :func:`validate_record`
    (``require_neg=False``: ``neg`` may be absent, e.g. in a file to mine negatives for).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no record, or a line is not JSON / not an object / lacks
            a key / has a wrong type; the message says ``file:line: what``.
    """
    out: list[dict[str, Any]] = []
    for lineno, obj in json_objects(path):
        out.append(validate_record(obj, f"{path}:{lineno}", require_neg))
    if not out:
        raise ValueError(f"{path}: empty training file (no JSON lines)")
    return out


def write_jsonl(records: Iterable[Mapping[str, Any]], path: PathLike) -> int:
    """Validate ``records`` and write them as JSONL (UTF-8, ``ensure_ascii=False``; ``.gz``
    compresses). The file appears complete or not at all (temp file + rename); parent
    folders are created. Returns the number of records written.

    Raises:
        ValueError: a record is invalid (``records[i]: ...``), or there is none.
    """
    if isinstance(records, (str, bytes, Mapping)):
        raise TypeError("records must be an iterable of dicts")
    recs = [validate_record(r, f"records[{i}]") for i, r in enumerate(records)]
    if not recs:
        raise ValueError("no records to write")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp{p.suffix}")
    try:
        with open_text(tmp, "w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(recs)


def read_pool(path: PathLike) -> Union[list[str], dict[str, dict[str, str]]]:
    """Read a candidate pool for :func:`densparse.train.mining.add_hard_negatives`: JSONL
    with a ``"text"`` per line (FlagEmbedding's candidate-pool format; an optional
    ``"title"`` is joined as in :func:`doc_text`). When every line also has an ``"_id"``
    (a BEIR ``corpus.jsonl``), returns ``{id: {"title", "text"}}``, else a list of texts.

    Raises:
        ValueError: an empty file, or a line that is not an object with a str ``"text"``
            (the message says ``file:line``), or a repeated ``_id``.
    """
    items: list[tuple[object, str, str]] = []
    for lineno, obj in json_objects(path):
        text, title = obj.get("text"), obj.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise malformed(path, lineno, "'text' (and 'title') must be str")
        items.append((obj.get("_id"), title, text))
    if not items:
        raise ValueError(f"{path}: empty candidate pool file")
    if all(i is not None for i, _, _ in items):
        out: dict[str, dict[str, str]] = {}
        for i, title, text in items:
            if str(i) in out:
                raise ValueError(f"{path}: duplicate _id {i!r}")
            out[str(i)] = {"title": title, "text": text}
        return out
    return [doc_text({"title": title, "text": text}) for _, title, text in items]


# ---------------------------------------------------------------------------- datasets
def doc_text(doc: Union[str, Mapping[str, Any]]) -> str:
    """The text of a corpus entry: a str as is; a BEIR dict as ``title + " " + text``
    (stripped), or ``text`` when the title is empty — as ``Encoder.encode_corpus`` joins."""
    if isinstance(doc, str):
        return doc
    if not isinstance(doc, Mapping):
        raise TypeError(f"a corpus entry must be a str or a dict, not {_type(doc)}")
    title, text = doc.get("title") or "", doc.get("text") or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise TypeError("a corpus entry's 'title' and 'text' must be str")
    return f"{title} {text}".strip() if title else text


def corpus_texts(corpus: Corpus) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a ``{doc_id: str | {"title", "text"}}`` corpus, in its order."""
    if not isinstance(corpus, Mapping):
        raise TypeError(f"corpus must be a dict {{doc_id: text or dict}}, not {_type(corpus)}")
    ids = list(corpus)
    for i in ids:
        if not isinstance(i, str):
            raise TypeError(f"corpus ids must be str, got {_type(i)} {i!r}")
    return ids, [doc_text(corpus[i]) for i in ids]


def _listing(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def check_qrels(
    qrels: Qrels,
    queries: Mapping[str, str],
    doc_ids: Iterable[str],
    *,
    skip_unknown: bool = False,
    source: str = "qrels",
) -> dict[str, dict[str, int]]:
    """Check that every judged query is in ``queries`` and every judged document in
    ``doc_ids``; return a plain-dict copy of the qrels.

    Raises:
        ValueError: unknown ids (a few are listed), unless ``skip_unknown=True``: then their
            judgments are dropped with a ``UserWarning``.
        TypeError: qrels that are not ``{str: {str: int}}``.
    """
    if not isinstance(qrels, Mapping):
        raise TypeError(
            f"qrels must be a dict {{query_id: {{doc_id: relevance}}}}, not {_type(qrels)}"
        )
    docs = doc_ids if isinstance(doc_ids, (set, frozenset, Mapping)) else set(doc_ids)
    unknown_q: list[str] = []
    unknown_d: list[str] = []
    out: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise TypeError(f"qrels[{qid!r}] must be a dict {{doc_id: relevance}}")
        if qid not in queries:
            unknown_q.append(qid)
            continue
        row: dict[str, int] = {}
        for did, rel in judged.items():
            if isinstance(rel, bool) or not isinstance(rel, int):
                raise TypeError(f"qrels[{qid!r}][{did!r}] must be an int, got {_type(rel)}")
            if did not in docs:
                unknown_d.append(did)
                continue
            row[did] = rel
        out[qid] = row
    problems = []
    if unknown_q:
        problems.append(f"{len(unknown_q)} unknown query ids ({_listing(unknown_q)})")
    if unknown_d:
        uniq = list(dict.fromkeys(unknown_d))
        problems.append(f"{len(uniq)} unknown document ids ({_listing(uniq)})")
    if problems:
        msg = f"{source} name " + " and ".join(problems)
        if not skip_unknown:
            raise ValueError(msg + "; pass skip_unknown=True (--skip-unknown) to drop them")
        warnings.warn(msg + ": their judgments are skipped", UserWarning, stacklevel=3)
        log.warning("%s: their judgments are skipped", msg)
    return out


def load_split(path: PathLike, split: str = "train", *, skip_unknown: bool = False) -> BeirDataset:
    """Load one qrels split of a BEIR dataset folder for training.

    Like :func:`densparse.eval.load_beir`, but qrels naming unknown queries *or documents*
    are a ``ValueError`` listing a few of them — or, with ``skip_unknown=True``, dropped with
    a warning. ``queries`` holds the split's (known) queries only, in qrels order.
    """
    from densparse.eval.beir import _find

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: BEIR dataset folder not found")
    qpath = _find(folder / "qrels", f"{split}.tsv")
    if not qpath.is_file():
        qdir = folder / "qrels"
        found = sorted(p.name.split(".")[0] for p in qdir.glob("*.tsv*")) if qdir.is_dir() else []
        raise FileNotFoundError(
            f"{qpath}: no qrels for split {split!r} (available: {', '.join(found) or 'none'})"
        )
    raw = load_qrels(qpath)
    all_queries = load_queries(_find(folder, "queries.jsonl"))
    corpus = load_corpus(_find(folder, "corpus.jsonl"))
    qrels = check_qrels(raw, all_queries, corpus, skip_unknown=skip_unknown, source=str(qpath))
    queries = {q: all_queries[q] for q in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


@dataclass
class PairStats:
    """What a pair builder kept and dropped."""

    queries: int = 0  #: judged queries looked at
    kept: int = 0  #: records built
    no_positive: int = 0  #: dropped: no positive (relevance > 0, non-empty text)
    empty_query: int = 0  #: dropped: the query text is empty
    empty_positive: int = 0  #: positives dropped because their text is empty
    details: dict[str, Any] = field(default_factory=dict)


def _positive_docs(qrels: Mapping[str, Mapping[str, int]], qid: str) -> list[str]:
    return [d for d, rel in qrels[qid].items() if rel > 0]


def qd_pairs(
    corpus: Corpus,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    skip_unknown: bool = False,
    stats: PairStats | None = None,
) -> list[dict[str, Any]]:
    """Question -> document records ``{"query", "pos", "neg": [], "query_id", "pos_ids"}``,
    one per judged query with at least one positive, in qrels order (positives in qrels
    order). Documents with an empty text are never positives."""
    ids, texts = corpus_texts(corpus)
    text_of = dict(zip(ids, texts))
    qrels = check_qrels(qrels, queries, text_of, skip_unknown=skip_unknown)
    st = stats if stats is not None else PairStats()
    out = []
    for qid in qrels:
        st.queries += 1
        q = queries[qid]
        if not isinstance(q, str):
            raise TypeError(f"queries[{qid!r}] must be a str, got {_type(q)}")
        if not q.strip():
            st.empty_query += 1
            continue
        pos_ids = []
        for d in _positive_docs(qrels, qid):
            if text_of[d].strip():
                pos_ids.append(d)
            else:
                st.empty_positive += 1
        if not pos_ids:
            st.no_positive += 1
            continue
        out.append(
            {
                "query": q,
                "pos": [text_of[d] for d in pos_ids],
                "neg": [],
                "query_id": qid,
                "pos_ids": pos_ids,
            }
        )
    st.kept = len(out)
    _log_stats("question -> document", st)
    return out


def qq_pairs(
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    doc_ids: Iterable[str] | None = None,
    skip_unknown: bool = False,
    stats: PairStats | None = None,
) -> list[dict[str, Any]]:
    """Question -> question (FAQ) records: two judged queries sharing a relevant document
    (relevance > 0) are positives of each other. ``pos_ids`` are query ids. A query is not
    its own positive, nor is another query with exactly the same text. ``doc_ids`` (the
    corpus ids), when given, is checked against the qrels like in Q-D mode."""
    if doc_ids is not None:
        qrels = check_qrels(qrels, queries, doc_ids, skip_unknown=skip_unknown)
    else:
        qrels = check_qrels(
            qrels,
            queries,
            {d for j in qrels.values() if isinstance(j, Mapping) for d in j},
            skip_unknown=skip_unknown,
        )
    st = stats if stats is not None else PairStats()
    by_doc: dict[str, list[str]] = {}
    for qid in qrels:
        q = queries[qid]
        if not isinstance(q, str):
            raise TypeError(f"queries[{qid!r}] must be a str, got {_type(q)}")
        if not q.strip():
            continue
        for d in _positive_docs(qrels, qid):
            by_doc.setdefault(d, []).append(qid)
    out = []
    for qid in qrels:
        st.queries += 1
        q = queries[qid]
        if not q.strip():
            st.empty_query += 1
            continue
        pos_ids: dict[str, None] = {}
        for d in _positive_docs(qrels, qid):
            for other in by_doc.get(d, ()):
                if other != qid and queries[other].strip() != q.strip():
                    pos_ids[other] = None
        if not pos_ids:
            st.no_positive += 1
            continue
        out.append(
            {
                "query": q,
                "pos": [queries[o] for o in pos_ids],
                "neg": [],
                "query_id": qid,
                "pos_ids": list(pos_ids),
            }
        )
    st.kept = len(out)
    _log_stats("question -> question", st)
    return out


def _log_stats(what: str, st: PairStats) -> None:
    log.info(
        "%s pairs: %d of %d judged queries kept; dropped %d without a positive, %d empty",
        what,
        st.kept,
        st.queries,
        st.no_positive,
        st.empty_query,
    )


def build_pairs(
    dataset: Union[PathLike, BeirDataset],
    split: str = "train",
    mode: str = "qd",
    *,
    skip_unknown: bool = False,
    stats: PairStats | None = None,
) -> list[dict[str, Any]]:
    """Training records without negatives from a BEIR dataset folder (or a loaded
    :class:`~densparse.eval.BeirDataset`): ``mode="qd"`` (question -> document, default) or
    ``"qq"`` (question -> question). ``split`` names the qrels file when a folder is given.
    Add hard negatives with :func:`densparse.train.mining.mine_hard_negatives`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    ds = (
        dataset
        if isinstance(dataset, BeirDataset)
        else load_split(dataset, split, skip_unknown=skip_unknown)
    )
    if mode == "qd":
        return qd_pairs(ds.corpus, ds.queries, ds.qrels, skip_unknown=skip_unknown, stats=stats)
    return qq_pairs(ds.queries, ds.qrels, doc_ids=ds.corpus, skip_unknown=skip_unknown, stats=stats)
