"""Type stubs for the Rust extension densparse._core.

Checked against the built extension by ``python -m mypy.stubtest densparse._core`` in CI
(no allowlist). PyO3 classes cannot be subclassed unless declared ``subclass`` (``@final``
here); ``Analyzer`` can, and is a disjoint base (an instance layout of its own).
"""

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Callable, Optional, Union, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = [
    "Analyzer",
    "BM25Index",
    "CorruptIndexError",
    "DenseIndexCore",
    "InternalError",
    "ReaderPin",
    "RecordStore",
    "RecordStoreWriter",
    "SegmentReader",
    "Snapshot",
    "SparseIndex",
    "WriterLock",
    "__version__",
    "_dense_kernels",
    "_dense_stream_sum",
    "check_file",
    "collect_garbage",
    "file_digest",
    "file_digest_entry",
    "fuse",
    "fuse_batch",
    "manifest_parse",
    "manifest_read",
    "manifest_write",
    "maxsim",
    "maxsim_rerank",
    "merge_level",
    "merge_plan",
    "open_pinned",
    "pin_generation",
    "validate_filter",
]

__version__: str

class CorruptIndexError(ValueError):
    """An index file is corrupt, truncated or not of the expected kind."""

class InternalError(RuntimeError):
    """An internal error (a bug) in densparse: a check inside the Rust core failed.
    Please report it with the call that raised it."""

@disjoint_base
class Analyzer:
    def __new__(
        cls,
        language: str = "auto",
        mode: str = "default",
        hmm: bool = True,
        stopwords: Union[str, Sequence[str], None] = None,
        stemmer: Optional[str] = None,
        lowercase: bool = True,
        keep_punctuation: bool = False,
        user_dict: Union[str, PathLike[str], None] = None,
        char_ngrams: Union[str, tuple[int, int], None] = None,
        tokenizer: Optional[str] = None,
    ) -> Analyzer: ...
    def tokenize(self, text: str) -> list[str]: ...
    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]: ...
    def keywords(
        self, text: str, k: int = 10, method: str = "tfidf"
    ) -> list[tuple[str, float]]: ...
    def add_word(self, word: str, freq: Optional[int] = None, tag: Optional[str] = None) -> int: ...
    def suggest_freq(self, word: str) -> int: ...
    @property
    def config(self) -> dict: ...

_SearchResult = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
_SparseVectors = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]

# (n_docs, avgdl, df by token) of a whole collection.
_GlobalStatsTuple = tuple[int, float, Mapping[str, int]]

@final
class BM25Index:
    @staticmethod
    def from_texts(
        texts: Sequence[str],
        analyzer: Analyzer,
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        progress: Optional[Callable[[int], object]] = None,
    ) -> BM25Index: ...
    @staticmethod
    def from_tokens(
        tokens: Sequence[Sequence[str]],
        method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        progress: Optional[Callable[[int], object]] = None,
    ) -> BM25Index: ...
    @staticmethod
    def merge(
        parts: Sequence[tuple[BM25Index, Optional[npt.NDArray[Union[np.bool_, np.uint8]]]]],
    ) -> BM25Index:
        """One index over the live documents of ``parts`` ((index, mask or None), in
        order), read from their postings: no text is analysed again."""
        ...
    def get_scores(
        self, tokens: Sequence[str], global_stats: Optional[_GlobalStatsTuple] = None
    ) -> npt.NDArray[np.float32]: ...
    def search_tokens(
        self,
        queries: Sequence[Sequence[str]],
        k: int = 10,
        threads: Optional[int] = None,
        mask: Optional[npt.NDArray[Union[np.bool_, np.uint8]]] = None,
        global_stats: Optional[_GlobalStatsTuple] = None,
    ) -> _SearchResult: ...
    def search_texts(
        self,
        queries: Sequence[str],
        analyzer: Analyzer,
        k: int = 10,
        threads: Optional[int] = None,
        mask: Optional[npt.NDArray[Union[np.bool_, np.uint8]]] = None,
        global_stats: Optional[_GlobalStatsTuple] = None,
    ) -> _SearchResult: ...
    def document_vectors(self, docs: Sequence[Sequence[str]]) -> _SparseVectors: ...
    def query_vectors(self, queries: Sequence[Sequence[str]]) -> _SparseVectors: ...
    def save(self, path: Union[str, PathLike[str]], meta: str = "") -> None: ...
    @staticmethod
    def load(path: Union[str, PathLike[str]], mmap: bool = True) -> BM25Index: ...
    @property
    def meta(self) -> str: ...
    @property
    def n_docs(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def n_postings(self) -> int: ...
    @property
    def postings_bytes(self) -> int: ...
    @property
    def avgdl(self) -> float: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def k1(self) -> float: ...
    @property
    def b(self) -> float: ...
    @property
    def delta(self) -> float: ...
    def vocab(self) -> list[str]: ...
    def df(self, token: str) -> int: ...
    def doc_lens(self) -> npt.NDArray[np.uint32]: ...

# ---------------------------------------------------------------- fusion

_FusedArrays = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]

def fuse(
    routes: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    method: str = "rrf",
    k: float = 60.0,
    weights: Optional[Sequence[float]] = None,
    normalization: str = "minmax",
    top_k: Optional[int] = None,
) -> _FusedArrays: ...
def fuse_batch(
    routes: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    method: str = "rrf",
    k: float = 60.0,
    weights: Optional[Sequence[float]] = None,
    normalization: str = "minmax",
    top_k: Optional[int] = None,
) -> list[_FusedArrays]: ...

# ---------------------------------------------------------------- dense (exact vectors, MaxSim)
@final
class DenseIndexCore:
    def __new__(cls, dim: int, dtype: str = "float32", metric: str = "ip") -> DenseIndexCore: ...
    def add(
        self, vectors: npt.NDArray[np.float32], ids: Optional[npt.NDArray[np.int64]] = None
    ) -> npt.NDArray[np.int64]: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int = 10,
        mask: Optional[npt.NDArray[np.uint8]] = None,
        threads: Optional[int] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def remove(self, ids: npt.NDArray[np.int64]) -> None: ...
    def get(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def compact(self) -> None: ...
    def ids(self) -> npt.NDArray[np.int64]: ...
    def contains(self, id: int) -> bool: ...
    def save(self, path: Union[str, PathLike[str]]) -> None: ...
    @staticmethod
    def load(path: Union[str, PathLike[str]], mmap: bool = True) -> DenseIndexCore: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def n_removed(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def is_mapped(self) -> bool: ...
    @property
    def vector_bytes(self) -> int: ...

def maxsim(
    query_vecs: npt.NDArray[np.float32],
    doc_vecs: list[npt.NDArray[np.float32]],
    threads: Optional[int] = None,
) -> npt.NDArray[np.float32]: ...
def maxsim_rerank(
    query_vecs: npt.NDArray[np.float32],
    doc_vecs: list[npt.NDArray[np.float32]],
    k: Optional[int] = None,
    threads: Optional[int] = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def _dense_stream_sum(data: npt.NDArray[np.float32], threads: Optional[int] = None) -> float: ...
def _dense_kernels() -> str: ...

@final
class SparseIndex:
    def __new__(cls, dtype: str = "float32", doc_top_n: Optional[int] = None) -> SparseIndex: ...
    def add_csr(
        self,
        indptr: npt.NDArray[np.integer],
        indices: npt.NDArray[np.integer],
        values: npt.NDArray[np.float32],
        ids: Optional[npt.NDArray[np.int64]] = None,
    ) -> npt.NDArray[np.int64]: ...
    def add_dicts(
        self, docs: list[dict], ids: Optional[npt.NDArray[np.int64]] = None
    ) -> npt.NDArray[np.int64]: ...
    def search_csr(
        self,
        indptr: npt.NDArray[np.integer],
        indices: npt.NDArray[np.integer],
        values: npt.NDArray[np.float32],
        k: int = 10,
        mask: Optional[npt.NDArray[np.uint8]] = None,
        threads: Optional[int] = None,
        query_top_n: Optional[int] = None,
        query_cut: Optional[float] = None,
    ) -> _SearchResult: ...
    def search_dicts(
        self,
        queries: list[dict],
        k: int = 10,
        mask: Optional[npt.NDArray[np.uint8]] = None,
        threads: Optional[int] = None,
        query_top_n: Optional[int] = None,
        query_cut: Optional[float] = None,
    ) -> _SearchResult: ...
    def remove(self, ids: npt.NDArray[np.int64]) -> None: ...
    def compact(self) -> None: ...
    def get(self, ids: npt.NDArray[np.int64]) -> _SparseVectors: ...
    def ids(self) -> npt.NDArray[np.int64]: ...
    def _set_dense_rows(self, rows: int) -> None: ...
    def save(self, path: Union[str, PathLike[str]]) -> None: ...
    @staticmethod
    def load(path: Union[str, PathLike[str]], mmap: bool = True) -> SparseIndex: ...
    def __len__(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def doc_top_n(self) -> Optional[int]: ...
    @property
    def vocab_size(self) -> int: ...
    def stats(self) -> dict: ...

def validate_filter(spec: object) -> None: ...
def file_digest(path: Union[str, PathLike[str]]) -> tuple[int, int]: ...

@final
class RecordStoreWriter:
    def __new__(cls) -> RecordStoreWriter: ...
    def add(
        self,
        id: str,
        text: str = "",
        views: Optional[Sequence[str]] = None,
        metadata: Optional[Mapping[str, object]] = None,
        sparse: Optional[tuple[object, object]] = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    def add_from(self, store: RecordStore, docs: object) -> None: ...
    def finish(self) -> RecordStore: ...

@final
class RecordStore:
    @staticmethod
    def open(
        path: Union[str, PathLike[str]], mmap: bool = True, verify: bool = False
    ) -> RecordStore: ...
    def save(self, path: Union[str, PathLike[str]]) -> None: ...
    def verify(self) -> None: ...
    @property
    def n_docs(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def n_views_total(self) -> int: ...
    def id(self, doc: int) -> str: ...
    def ids(self, docs: Optional[object] = None) -> list[str]: ...
    def doc_of(self, id: str) -> Optional[int]: ...
    def docs_of(self, ids: Sequence[str]) -> npt.NDArray[np.int64]: ...
    def text(self, doc: int) -> str: ...
    def texts(self, docs: Optional[object] = None) -> list[str]: ...
    def views(self, doc: int) -> list[str]: ...
    def view_counts(self, docs: Optional[object] = None) -> npt.NDArray[np.int64]: ...
    def metadata(self, doc: int) -> dict: ...
    def metadata_json(self, doc: int) -> str: ...
    def sparse(
        self, doc: int
    ) -> Optional[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]: ...
    def field_names(self) -> list[str]: ...
    def filter(self, spec: object) -> npt.NDArray[np.bool_]: ...

@final
class SegmentReader:
    def __new__(
        cls,
        records: RecordStore,
        bm25: BM25Index,
        dense: Optional[DenseIndexCore] = None,
        sparse: Optional[SparseIndex] = None,
        live: Optional[npt.NDArray[np.bool_]] = None,
    ) -> SegmentReader: ...
    @property
    def n_live(self) -> int: ...
    @property
    def n_docs(self) -> int: ...

@final
class Snapshot:
    def __new__(cls, segments: Sequence[SegmentReader], analyzer: Analyzer) -> Snapshot: ...
    def route_lists(
        self,
        text: Optional[str] = None,
        dense: Optional[npt.NDArray[np.float32]] = None,
        sparse: Optional[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = None,
        filter: Optional[object] = None,
        per_route: int = 10,
        bm25_stats: Optional[tuple[int, int, Mapping[str, int]]] = None,
    ) -> list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float32]]]: ...
    def search(
        self,
        text: Optional[str] = None,
        dense: Optional[npt.NDArray[np.float32]] = None,
        sparse: Optional[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = None,
        filter: Optional[object] = None,
        per_route: int = 10,
        top: int = 10,
        fusion: str = "rrf",
        rrf_k: float = 60.0,
        normalization: str = "minmax",
        weights: Optional[Sequence[float]] = None,
        bm25_stats: Optional[tuple[int, int, Mapping[str, int]]] = None,
    ) -> tuple[
        list[str],
        npt.NDArray[np.int64],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
    ]: ...
    def bm25_stats(self, tokens: Sequence[str]) -> tuple[int, int, dict[str, int]]: ...
    def locate(self, docno: int) -> Optional[tuple[int, int]]: ...
    def find(self, id: str) -> Optional[tuple[int, int]]: ...
    def find_many(
        self, ids: Sequence[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def __len__(self) -> int: ...

@final
class ReaderPin:
    @property
    def generation(self) -> int: ...
    def release(self) -> None: ...

@final
class WriterLock:
    @staticmethod
    def try_acquire(path: Union[str, PathLike[str]]) -> Optional[WriterLock]: ...
    def release(self) -> None: ...
    @property
    def held(self) -> bool: ...

def manifest_read(path: Union[str, PathLike[str]]) -> str: ...
def manifest_parse(path: Union[str, PathLike[str]], raw: bytes) -> str: ...
def manifest_write(path: Union[str, PathLike[str]], manifest: str) -> str: ...
def file_digest_entry(path: Union[str, PathLike[str]]) -> str: ...
def check_file(path: Union[str, PathLike[str]], expected: str) -> None: ...
def collect_garbage(path: Union[str, PathLike[str]], manifest: str) -> None: ...
def merge_plan(
    live: Sequence[int],
    total: Sequence[int],
    max_segments: int,
    factor: int = 3,
    floor_docs: int = 1,
) -> list[int]: ...
def merge_level(live_docs: int, factor: int = 3, floor_docs: int = 1) -> int: ...
def pin_generation(path: Union[str, PathLike[str]], generation: int) -> Optional[ReaderPin]: ...
def open_pinned(path: Union[str, PathLike[str]]) -> tuple[str, Optional[ReaderPin]]: ...
