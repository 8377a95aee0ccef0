"""BM25 over analysed text: the Python face of the Rust index."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np

from densparse import _core
from densparse._checks import (
    check_choice,
    check_k,
    check_mask,
    check_opt_positive,
    check_path,
    check_real,
)
from densparse._progress import Progress, wants_progress
from densparse.analysis import Analyzer

log = logging.getLogger(__name__)

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
Query = Union[str, Sequence[str]]
SparseVector = tuple[np.ndarray, np.ndarray]
_FORMAT = "densparse.bm25"


class GlobalStats(NamedTuple):
    """Corpus statistics of a whole collection, for scoring one segment of it.

    With these, a segment's scores equal (float32, to ~1e-6 relative) what one
    index over the whole collection gives the segment's documents.

    Attributes:
        n_docs: documents in the collection (>= 1).
        avgdl: average document length over the collection: give exactly
            ``total_tokens / n_docs`` (sum of the segments' ``total_tokens``
            over the sum of their ``n_docs``) for bit-exact length normalisation.
        df: document frequency over the collection by token, at least for the
            query tokens (sum of the segments' dfs); a missing token counts as
            df 0, i.e. absent from the collection. A df above ``n_docs`` is a
            ValueError.

    The collection may count fewer documents than this segment holds, or a
    smaller df than the segment's own: statistics over live documents only,
    with the deleted ones of this segment masked out of the search (a token of
    df 0 then scores as one the collection lacks).
    """

    n_docs: int
    avgdl: float
    df: dict[str, int]


def _check_stats(stats: object) -> Optional[tuple[int, float, dict[str, int]]]:
    """Validate global statistics and return them as the plain tuple the core takes."""
    if stats is None:
        return None
    if not isinstance(stats, tuple) or len(stats) != 3:
        raise TypeError("stats must be a GlobalStats or a tuple (n_docs, avgdl, df)")
    n, avgdl, df = stats
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"stats.n_docs must be an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"stats.n_docs must be >= 1, got {n}")
    if isinstance(avgdl, bool) or not isinstance(avgdl, (int, float, np.integer, np.floating)):
        raise TypeError(f"stats.avgdl must be a float, not {type(avgdl).__name__}")
    avgdl = float(avgdl)
    if not (np.isfinite(avgdl) and avgdl > 0):
        raise ValueError(f"stats.avgdl must be a finite number > 0, got {avgdl}")
    if not isinstance(df, dict):
        raise TypeError(f"stats.df must be a dict[str, int], not {type(df).__name__}")
    clean: dict[str, int] = {}
    for t, d in df.items():
        if not isinstance(t, str):
            raise TypeError(f"stats.df keys must be str, not {type(t).__name__}")
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"stats.df[{t!r}] must be an int, not {type(d).__name__}")
        if d < 0:
            raise ValueError(f"stats.df[{t!r}] must be >= 0, got {d}")
        clean[t] = int(d)
    return int(n), avgdl, clean


def _analyzer_from_config(cfg: dict) -> Analyzer:
    """Rebuild an Analyzer from ``Analyzer.config`` (as saved with an index)."""
    ngrams = cfg.get("char_ngrams")
    user_dict = cfg.get("user_dict")
    stemmer = cfg["stemmer"]
    # Indexes saved before the tokenizer setting were built with UAX #29
    # words and the older Snowball English: queries must be cut the same way.
    tokenizer = cfg.get("tokenizer", "uax29")
    if "tokenizer" not in cfg and stemmer == "english":
        stemmer = "english_legacy"
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
            stemmer=stemmer,
            lowercase=cfg["lowercase"],
            keep_punctuation=cfg["keep_punctuation"],
            user_dict=user_dict,
            char_ngrams=tuple(ngrams) if ngrams else None,
            tokenizer=tokenizer,
        )
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    for word, freq, tag in cfg.get("added_words", []):
        a.add_word(word, freq, tag)
    return a


def _sequence(x: object, what: str) -> list:
    """A list of items (a bare str, bytes or dict is refused: it would be taken item by item)."""
    if isinstance(x, (str, bytes, dict)) or not hasattr(x, "__iter__"):
        raise TypeError(f"{what} must be a list, not {type(x).__name__}")
    return list(x)  # type: ignore[call-overload]


class BM25:
    """A BM25 index over a corpus of texts or token lists.

    Args:
        method: ``"lucene"`` (default), ``"robertson"``, ``"atire"``, ``"bm25l"`` or ``"bm25+"``
            (formulas as bm25s computes them; docs/algorithms.md, "BM25 variants").
        k1, b, delta: BM25 parameters (delta is used by bm25l and bm25+ only).
        analyzer: how texts become tokens; ``None`` means ``Analyzer()`` (language ``"auto"``).

    Scores equal bm25s's on the same tokens. Search is exact (MaxScore pruning
    never changes results); ties are broken by lower document id. Every long
    call releases the GIL, so one index serves many Python threads.

    ``search(..., mask=...)`` restricts results to a set of documents (exactly,
    before the top-k). An index can also serve as one segment of a larger
    collection: :meth:`search_with_stats` and ``get_scores(query, stats=...)``
    score with the collection's :class:`GlobalStats` (N, avgdl, df), giving
    what one index over the whole collection would give these documents.
    """

    def __init__(
        self,
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        analyzer: Optional[Analyzer] = None,
    ) -> None:
        check_choice(method, METHODS, "BM25 method")
        if analyzer is not None and not isinstance(analyzer, Analyzer):
            raise TypeError(f"analyzer must be a densparse.Analyzer, not {type(analyzer).__name__}")
        self.method = method
        self.k1, self.b, self.delta = (
            check_real(k1, "k1"),
            check_real(b, "b"),
            check_real(delta, "delta"),
        )
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
        corpus = _sequence(corpus, "corpus")
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

    def get_scores(self, query: Query, stats: Optional[GlobalStats] = None) -> np.ndarray:
        """BM25 score of every document for one query (text or tokens): float32 [N].

        Args:
            query: a text or a token list.
            stats: optional :class:`GlobalStats` of a whole collection this index
                is one segment of: the scores are then those one index over the
                collection gives these documents (see :meth:`search_with_stats`).
        """
        return self._idx.get_scores(self._tokens(query), global_stats=_check_stats(stats))

    def search(
        self,
        queries: Union[Query, Sequence[Query]],
        k: int = 10,
        threads: Optional[int] = None,
        mask: Optional[np.ndarray] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for one query or a list of queries.

        Args:
            queries: a text, a token list, or a list of either.
            k: hits per query; k' = min(k, N) come back (documents that match
                nothing fill in with their base score — 0, or for bm25l/bm25+
                the constant of absent terms — by id).
            threads: worker threads for a batch (None: all cores).
            mask: optional 1-D numpy array of dtype bool or uint8 over document
                ids: document d may be returned iff ``d < len(mask)`` and
                ``mask[d]`` is true/non-zero (so a shorter mask excludes the
                documents past its end, and an empty one excludes all). The
                filter applies before the top-k: a row holds the best k'
                eligible documents, and when fewer than k' are eligible it is
                padded at the end with id -1 and score -inf. Wrong dtype or a
                non-array: TypeError; not 1-D: ValueError.

        Returns:
            (ids int64, scores float32): shape [Q, k'] for a list of queries,
            [k'] for a single query. Order: score descending, then id ascending.
        """
        return self._search(queries, k, threads, check_mask(mask), None)

    def search_with_stats(
        self,
        queries: Union[Query, Sequence[Query]],
        k: int,
        stats: GlobalStats,
        mask: Optional[np.ndarray] = None,
        threads: Optional[int] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of this index as one segment of a larger collection.

        Low-level building block of a multi-segment collection: each segment
        is searched with the collection's statistics and the per-segment
        top-k lists are merged (by score desc, then global id asc) into the
        exact top-k of one index over the whole collection.

        Args:
            queries, k, threads, mask: as in :meth:`search` (ids are this
                index's local ids; padding with -1 / -inf likewise).
            stats: :class:`GlobalStats` (or a tuple ``(n_docs, avgdl, df)``)
                of the whole collection. idf uses the global df and N, length
                normalisation the global avgdl; query tokens this segment
                lacks still add, for bm25l/bm25+, the constant of absent terms
                if the collection has them (df > 0), exactly as one index would.
                Bad values raise TypeError/ValueError.

        Returns:
            (ids int64, scores float32) as in :meth:`search`.
        """
        checked = _check_stats(stats)
        if checked is None:
            raise TypeError("stats must be a GlobalStats or a tuple (n_docs, avgdl, df), not None")
        return self._search(queries, k, threads, check_mask(mask), checked)

    def _search(
        self,
        queries: Union[Query, Sequence[Query]],
        k: int,
        threads: Optional[int],
        mask: Optional[np.ndarray],
        stats: Optional[tuple[int, float, dict[str, int]]],
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        idx = self._idx
        threads = check_opt_positive(threads, "threads")
        opts = dict(k=int(k), threads=threads, mask=mask, global_stats=stats)
        if isinstance(queries, str):
            ids, scores = idx.search_tokens([self._tokens(queries)], **opts)
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
            return idx.search_texts(list(queries), self.analyzer, **opts)
        # A non-empty list goes as it is: the extension checks its items (a non-str raises
        # the same TypeError, "queries[i][j] is int, expected str") without a Python loop.
        tokens = [
            q if type(q) is list and q else self._tokens(q, f"queries[{i}]")
            for i, q in enumerate(queries)
        ]
        return idx.search_tokens(tokens, **opts)

    def doc_freqs(self, tokens: Sequence[str]) -> dict[str, int]:
        """Document frequency in this index of each token (0 if absent): the
        per-segment part of :attr:`GlobalStats.df`."""
        idx = self._idx
        tokens = _sequence(tokens, "tokens")
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens[{i}] must be a str, not {type(t).__name__}")
        return {t: idx.df(t) for t in tokens}

    # ------------------------------------------------------------ sparse vectors
    def encode_documents(self, texts: Sequence[Query]) -> list[SparseVector]:
        """Documents as BM25 sparse vectors over this index's vocabulary:
        (term ids int64, weights float32) with weight = idf * tf part. The dot
        product with :meth:`encode_queries` is the BM25 score (for bm25l and
        bm25+, minus a per-query constant that does not change rankings)."""
        texts = _sequence(texts, "texts")
        return self._idx.document_vectors([self._doc_tokens(t, i) for i, t in enumerate(texts)])

    def encode_queries(self, texts: Sequence[Query]) -> list[SparseVector]:
        """Queries as sparse vectors: (term ids int64, counts float32)."""
        texts = _sequence(texts, "texts")
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
        self._idx.save(check_path(path), meta)
        log.info("saved BM25 index to %s", path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True) -> BM25:
        """Load an index saved by :meth:`save` (memory-mapped by default)."""
        idx = _core.BM25Index.load(check_path(path), mmap=bool(mmap))
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
    def total_tokens(self) -> int:
        """Sum of all document lengths (tokens indexed); avgdl = total_tokens / n_docs."""
        return self._idx.total_tokens

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
            "total_tokens": i.total_tokens,
        }

    def __repr__(self) -> str:
        n = self._index.n_docs if self._index is not None else 0
        params = f"method={self.method!r}, k1={self.k1}, b={self.b}, delta={self.delta}"
        return f"BM25({params}, n_docs={n})"
