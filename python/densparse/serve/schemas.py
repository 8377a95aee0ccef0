"""Request and response bodies of every route, as pydantic models (they make the OpenAPI
schema, and validation errors name the field)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

Inputs = Union[StrictStr, list[StrictStr]]


class _Body(BaseModel):
    # unknown fields are refused: a misspelt option should not be silently ignored
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------- errors
class ErrorResponse(BaseModel):
    """Every error: a message and its kind (text-embeddings-inference's ``error_type``)."""

    error: str
    error_type: str


# ----------------------------------------------------------------- TEI
class EmbedRequest(_Body):
    inputs: Inputs = Field(description="one text or a list of texts")
    normalize: bool = Field(True, description="L2-normalise the vectors")
    truncate: bool = Field(
        False, description="cut texts at the model's max length (else: 413 when longer)"
    )
    truncation_direction: Literal["Right", "right"] = Field(
        "Right", description="only Right (the end of a text is cut) is supported"
    )
    prompt_name: Optional[Literal["query"]] = Field(
        None, description='"query": prepend the model family\'s query instruction'
    )
    dimensions: Optional[int] = Field(
        None, ge=1, description="keep the first N dimensions (Matryoshka), renormalised"
    )


class EmbedSparseRequest(_Body):
    inputs: Inputs
    truncate: bool = False
    truncation_direction: Literal["Right", "right"] = "Right"
    prompt_name: Optional[Literal["query"]] = None
    bm25: Optional[str] = Field(
        None,
        description="name of a served BM25 index (--bm25): its BM25 vectors instead of the "
        "model's (index = term id in that index's vocabulary)",
    )
    bm25_kind: Literal["query", "document"] = Field(
        "query", description="BM25 query vectors (term counts) or document vectors (weights)"
    )


class SparseValue(BaseModel):
    index: int
    value: float


class RerankRequest(_Body):
    query: StrictStr
    texts: list[StrictStr] = Field(min_length=1)
    raw_scores: bool = Field(False, description="logits instead of sigmoid scores")
    return_text: bool = False
    truncate: bool = True
    truncation_direction: Literal["Right", "right"] = "Right"
    top_n: Optional[int] = Field(None, ge=1, description="only the best N")


class RankHit(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class TokenizeRequest(_Body):
    inputs: Inputs
    add_special_tokens: bool = True


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: Optional[int] = None
    stop: Optional[int] = None


class Info(BaseModel):
    model_id: Optional[str]
    model_dtype: Optional[str]
    model_type: dict[str, Any]
    model_family: Optional[str]
    reranker_id: Optional[str]
    max_input_length: Optional[int]
    max_batch_tokens: int
    max_concurrent_requests: int
    max_client_batch_size: int
    payload_limit: int
    provider: Optional[str]
    collections: list[str]
    bm25: list[str]
    read_only: bool
    version: str


# ----------------------------------------------------------------- OpenAI
class OpenAIEmbeddingRequest(_Body):
    # OpenAI also takes token arrays; those ids come from the client's (tiktoken) tokenizer and
    # mean nothing to this model, so they are refused with a message (see routes)
    input: Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]
    model: Optional[str] = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)
    user: Optional[str] = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: Union[list[float], str]
    index: int


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# ----------------------------------------------------------------- collections
class SparseVectorIn(_Body):
    indices: list[StrictInt]
    values: list[Union[StrictFloat, StrictInt]]


SparseIn = Union[SparseVectorIn, dict[str, Union[StrictFloat, StrictInt]]]
Vector = list[Union[StrictFloat, StrictInt]]


class SearchRequest(_Body):
    text: Optional[StrictStr] = Field(
        None, description="query text: BM25, and the collection's encoder when it has one"
    )
    dense: Optional[Vector] = Field(None, description="query vector [dense_dim]")
    sparse: Optional[SparseIn] = Field(None, description="{indices, values} or {token id: weight}")
    mode: Literal["hybrid", "bm25", "dense", "sparse"] = "hybrid"
    fusion: Literal["rrf", "weighted", "m3"] = "rrf"
    weights: Optional[dict[str, float]] = None
    filter: Optional[dict[str, Any]] = Field(None, description="metadata filter")
    k: int = Field(10, ge=1, le=10_000)
    candidates: int = Field(100, ge=1, le=100_000)
    rrf_k: int = Field(60, ge=1)
    normalization: Literal["minmax", "dbsf", "none"] = "minmax"
    rerank: bool = Field(False, description="re-score with the service's reranker")
    rerank_candidates: int = Field(100, ge=1, le=10_000)


class SearchHit(BaseModel):
    id: str
    score: float
    scores: dict[str, Optional[float]]
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class RecordIn(_Body):
    id: StrictStr = Field(min_length=1)
    text: StrictStr = ""
    views: Optional[list[StrictStr]] = None
    dense: Optional[Union[Vector, list[Vector]]] = Field(
        None, description="[dim] or [1 + len(views), dim]; computed by the encoder when absent"
    )
    sparse: Optional[SparseIn] = None
    colbert: Optional[list[Vector]] = None
    metadata: Optional[dict[str, Any]] = None


class UpsertRequest(_Body):
    records: list[RecordIn] = Field(min_length=1)


class UpsertResponse(BaseModel):
    upserted: int
    documents: int


class DeleteRequest(_Body):
    ids: list[StrictStr] = Field(min_length=1)


class DeleteResponse(BaseModel):
    deleted: int
    documents: int


class SparseVectorOut(BaseModel):
    indices: list[int]
    values: list[float]


class Document(BaseModel):
    id: str
    text: str
    views: Optional[list[str]] = None
    metadata: dict[str, Any]
    dense: Optional[Union[list[float], list[list[float]]]] = None
    sparse: Optional[SparseVectorOut] = None
    colbert: Optional[list[list[float]]] = None


class CollectionInfo(BaseModel):
    name: str
    documents: int
    dense_dim: Optional[int]
    encoder: Optional[str]
    writable: bool
    segments: int


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    error: Optional[str] = None
