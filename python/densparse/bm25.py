"""BM25 over analysed text: the Python face of the Rust index."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from densparse import _core
from densparse._progress import Progress, wants_progress
from densparse.analysis import Analyzer

log = logging.getLogger(__name__)

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
Query = Union[str, Sequence[str]]
SparseVector = tuple[np.ndarray, np.ndarray]
_FORMAT = "densparse.bm25"


def _analyzer_from_config(cfg: dict) -> Analyzer:
    """Rebuild an Analyzer from ``Analyzer.config`` (as saved with an index)."""
    ngrams = cfg.get("char_ngrams")
    user_dict = cfg.get("user_dict")
    tmp = None
    if cfg.get("user_dict_text") is not None:
        # The dictionary's words travel inside the index file, not by path.
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as tmp:
            tmp.write(cfg["user_dict_text"])
        user_dict = tmp.name
    try:
        a = Analyzer(
            language=cfg["language"],
            mode=cfg["mode"],
            hmm=cfg["hmm"],
            stopwords=cfg["stopwords"],
            stemmer=cfg["stemmer"],
            lowercase=cfg["lowercase"],
            keep_punctuation=cfg["keep_punctuation"],
            user_dict=user_dict,
            char_ngrams=tuple(ngrams) if ngrams else None,
        )
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    for word, freq, tag in cfg.get("added_words", []):
        a.add_word(word, freq, tag)
    return a


class BM25:
    """A BM25 index over a corpus of texts or token lists.

    Args:
        method: ``"lucene"`` (default), ``"robertson"``, ``"atire"``, ``"bm25l"`` or ``"bm25+"``
            (formulas as bm25s computes them; REFERENCE.md section 1).
        k1, b, delta: BM25 parameters (delta is used by bm25l and bm25+ only).
        analyzer: how texts become tokens; ``None`` means ``Analyzer()`` (language ``"auto"``).

    Scores equal bm25s's on the same tokens. Search is exact (MaxScore pruning
    never changes results); ties are broken by lower document id. Every long
    call releases the GIL, so one index serves many Python threads.
    """

    def __init__(
        self,
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        analyzer: Optional[Analyzer] = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(
                f"unknown BM25 method {method!r}: expected one of {', '.join(METHODS)}"
            )
        if analyzer is not None and not isinstance(analyzer, Analyzer):
            raise TypeError(f"analyzer must be a densparse.Analyzer, not {type(analyzer).__name__}")
        self.method, self.k1, self.b, self.delta = method, float(k1), float(b), float(delta)
        self.analyzer = analyzer if analyzer is not None else Analyzer()
        self._index: Optional[_core.BM25Index] = None

    # ------------------------------------------------------------ indexing
    def index(
        self, corpus: Sequence[Union[str, Sequence[str]]], show_progress: Optional[bool] = None
    ) -> BM25:
        """Index ``corpus``: a list of texts (analysed in parallel) or of token lists.

        Document ids are positions in ``corpus``. Returns ``self``.
        """
        if isinstance(corpus, (str, bytes)):
            raise TypeError("corpus must be a list of texts or of token lists, not a single string")
        corpus = list(corpus)
        if not corpus:
            raise ValueError("cannot index an empty corpus: give at least one document")
        enabled = wants_progress(show_progress, len(corpus))
        log.info(
            "indexing %d documents with BM25 (%s, k1=%g, b=%g)",
            len(corpus),
            self.method,
            self.k1,
            self.b,
        )
        params = dict(method=self.method, k1=self.k1, b=self.b, delta=self.delta)
        with Progress(len(corpus), "BM25 index", enabled) as tick:
            if isinstance(corpus[0], str):
                self._index = _core.BM25Index.from_texts(
                    corpus, self.analyzer, progress=tick, **params
                )
            else:
                self._index = _core.BM25Index.from_tokens(corpus, progress=tick, **params)
        log.info(
            "indexed %d documents: %d terms, %d postings in %d bytes",
            self._index.n_docs,
            self._index.vocab_size,
            self._index.n_postings,
            self._index.postings_bytes,
        )
        return self

    @property
    def _idx(self) -> _core.BM25Index:
        if self._index is None:
            raise RuntimeError("this BM25 has no index yet: call .index(corpus) or BM25.load(path)")
        return self._index

    # ------------------------------------------------------------ querying
    def _tokens(self, query: Query, what: str = "query") -> list[str]:
        if isinstance(query, str):
            if not query.strip():
                raise ValueError(f"{what} is empty")
            return self.analyzer.tokenize(query)
        if isinstance(query, (list, tuple)):
            if not query:
                raise ValueError(f"{what} is an empty token list")
            for i, t in enumerate(query):
                if not isinstance(t, str):
                    raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")
            return list(query)
        raise TypeError(f"{what} must be a str or a list of str tokens, not {type(query).__name__}")

    def get_scores(self, query: Query) -> np.ndarray:
        """BM25 score of every document for one query (text or tokens): float32 [N]."""
        return self._idx.get_scores(self._tokens(query))

    def search(
        self, queries: Union[Query, Sequence[Query]], k: int = 10, threads: Optional[int] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for one query or a list of queries.

        Args:
            queries: a text, a token list, or a list of either.
            k: hits per query; k' = min(k, N) come back (documents that match
                nothing fill in with score 0, by id).
            threads: worker threads for a batch (None: all cores).

        Returns:
            (ids int64, scores float32): shape [Q, k'] for a list of queries,
            [k'] for a single query. Order: score descending, then id ascending.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, not {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        idx = self._idx
        if isinstance(queries, str):
            ids, scores = idx.search_tokens([self._tokens(queries)], k=int(k), threads=threads)
            return ids[0], scores[0]
        if not isinstance(queries, (list, tuple)):
            raise TypeError(f"queries must be a str or a list, not {type(queries).__name__}")
        if not queries:
            raise ValueError("queries is empty")
        if all(isinstance(q, str) for q in queries):
            # A flat list of str is a list of query texts (one token list must
            # be nested: [["a", "b"]]); analysis then runs in parallel in Rust.
            for i, q in enumerate(queries):
                if not q.strip():
                    raise ValueError(f"queries[{i}] is empty")
            return idx.search_texts(list(queries), self.analyzer, k=int(k), threads=threads)
        tokens = [self._tokens(q, f"queries[{i}]") for i, q in enumerate(queries)]
        return idx.search_tokens(tokens, k=int(k), threads=threads)

    # ------------------------------------------------------------ sparse vectors
    def encode_documents(self, texts: Sequence[Query]) -> list[SparseVector]:
        """Documents as BM25 sparse vectors over this index's vocabulary:
        (term ids int64, weights float32) with weight = idf * tf part. The dot
        product with :meth:`encode_queries` is the BM25 score (for bm25l and
        bm25+, minus a per-query constant that does not change rankings)."""
        return self._idx.document_vectors([self._doc_tokens(t, i) for i, t in enumerate(texts)])

    def encode_queries(self, texts: Sequence[Query]) -> list[SparseVector]:
        """Queries as sparse vectors: (term ids int64, counts float32)."""
        return self._idx.query_vectors([self._doc_tokens(t, i) for i, t in enumerate(texts)])

    def _doc_tokens(self, t: Query, i: int) -> list[str]:
        if isinstance(t, str):
            return self.analyzer.tokenize(t)
        if isinstance(t, (list, tuple)):
            return self._tokens(list(t), f"texts[{i}]") if t else []
        raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str or a token list")

    # ------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to one file (written to a temporary file, then renamed: an
        existing file is never left half-written)."""
        cfg = dict(self.analyzer.config)
        if cfg.get("user_dict"):
            cfg["user_dict_text"] = Path(cfg["user_dict"]).read_text(encoding="utf-8")
        meta = json.dumps(
            {"format": _FORMAT, "version": _core.__version__, "analyzer": cfg}, ensure_ascii=False
        )
        self._idx.save(os.fspath(path), meta)
        log.info("saved BM25 index to %s", path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True) -> BM25:
        """Load an index saved by :meth:`save` (memory-mapped by default)."""
        idx = _core.BM25Index.load(os.fspath(path), mmap=mmap)
        try:
            meta = json.loads(idx.meta)
            if meta.get("format") != _FORMAT:
                raise ValueError
            analyzer = _analyzer_from_config(meta["analyzer"])
        except (ValueError, KeyError, TypeError) as e:
            raise _core.CorruptIndexError(f"{path}: index metadata is unreadable ({e!r})") from None
        self = cls(method=idx.method, k1=idx.k1, b=idx.b, delta=idx.delta, analyzer=analyzer)
        self._index = idx
        return self

    # ------------------------------------------------------------ facts
    @property
    def n_docs(self) -> int:
        """Number of indexed documents."""
        return self._idx.n_docs

    def __len__(self) -> int:
        return self.n_docs if self._index is not None else 0

    @property
    def vocab_size(self) -> int:
        return self._idx.vocab_size

    def vocab(self) -> list[str]:
        """Terms in term-id order (the index space of the sparse vectors)."""
        return self._idx.vocab()

    def stats(self) -> dict:
        """Sizes: documents, terms, postings, bytes and bytes per posting."""
        i = self._idx
        return {
            "n_docs": i.n_docs,
            "vocab_size": i.vocab_size,
            "n_postings": i.n_postings,
            "postings_bytes": i.postings_bytes,
            "bytes_per_posting": i.postings_bytes / max(i.n_postings, 1),
            "avgdl": i.avgdl,
        }

    def __repr__(self) -> str:
        n = self._index.n_docs if self._index is not None else 0
        params = f"method={self.method!r}, k1={self.k1}, b={self.b}, delta={self.delta}"
        return f"BM25({params}, n_docs={n})"
