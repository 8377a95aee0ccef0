"""Tokenisation and length-sorted, token-budgeted batches.

Texts are tokenised with the ``tokenizers`` library (truncation at the model's max length, no
padding: a tokenizer.json that ships fixed padding, like the shared int8 MiniLM's 128, is
overridden). Batches are formed over the texts sorted by token count, longest first, and each
batch holds at most ``batch_size`` texts and at most ``max_tokens_per_batch`` tokens
*including padding* (rows x longest row), so little compute is spent on padding and long texts
do not blow up memory. Results are put back in the caller's order.

The default budget (``"auto"``) depends on where the graph runs. On CPU it is small
(:data:`CPU_MAX_TOKENS`, e.g. 8 rows of 256 tokens): a CPU gains nothing from bigger batches
(the matrix products are already large enough at a few rows, and smaller activations stay in
cache) while peak memory grows with rows x heads x length^2 for the attention scores.
Measured with MiniLM-L6 (int8 weights) on 200 SciFact documents, one thread: budget 16384 ->
21.4 CPU-s and 1.6 GB peak RSS; 2048 -> 18.8-19.9 CPU-s and 0.39 GB. On CUDA bigger batches
keep the GPU busy: :data:`DEFAULT_MAX_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from densparse._progress import Progress, wants_progress

#: Token budget per batch (rows x padded length) on CUDA, and the ceiling of ``"auto"``.
DEFAULT_MAX_TOKENS = 16384
#: Token budget per batch on CPU for ``max_tokens_per_batch="auto"``.
CPU_MAX_TOKENS = 2048
#: Inputs from which a model call shows a progress bar on a terminal when show_progress=None.
PROGRESS_THRESHOLD = 2000


def resolve_budget(max_tokens_per_batch, provider: str) -> Optional[int]:
    """``"auto"`` -> :data:`CPU_MAX_TOKENS` on CPU, :data:`DEFAULT_MAX_TOKENS` on CUDA; an int
    or ``None`` (no budget) as given."""
    if isinstance(max_tokens_per_batch, str):
        if max_tokens_per_batch != "auto":
            raise ValueError(
                "max_tokens_per_batch must be a positive int, None or 'auto', "
                f"got {max_tokens_per_batch!r}"
            )
        return CPU_MAX_TOKENS if provider == "cpu" else DEFAULT_MAX_TOKENS
    return max_tokens_per_batch


def load_tokenizer(path: Path):
    """Load a tokenizer.json, with any fixed padding/truncation it ships switched off."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError("densparse encoders need the tokenizers package") from e
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise ValueError(f"cannot read tokenizer {path}: {e}") from e
    tok.no_padding()
    tok.no_truncation()
    return tok


def find_pad_id(tokenizer, default: int = 0) -> int:
    """The id of ``[PAD]`` (BERT) or ``<pad>`` (XLM-R) in a ``tokenizers.Tokenizer``, else
    ``default``."""
    for token in ("[PAD]", "<pad>"):
        i = tokenizer.token_to_id(token)
        if i is not None:
            return int(i)
    return default


def check_max_length(max_length: Any, positions: Optional[int], minimum: int = 2) -> int:
    """``max_length`` when it is an int >= ``minimum`` within the model's ``positions``
    (``None``: unknown), else ValueError."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < minimum:
        raise ValueError(f"max_length must be an int >= {minimum}, got {max_length!r}")
    if positions is not None and max_length > positions:
        raise ValueError(f"max_length={max_length} exceeds the model's {positions} positions")
    return max_length


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single str (wrap it in a list)")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")
    return out


def tokenize(tokenizer, texts: Sequence[str], max_length: Optional[int]):
    """Encodings (with special tokens), truncated to ``max_length`` tokens when given."""
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length)
    try:
        return tokenizer.encode_batch(list(texts), add_special_tokens=True)
    finally:
        tokenizer.no_truncation()


def plan_batches(
    lengths: Sequence[int], batch_size: int, max_tokens_per_batch: Optional[int]
) -> list[np.ndarray]:
    """Indices of each batch: sorted by length (longest first, ties by position), at most
    ``batch_size`` rows and ``rows * longest <= max_tokens_per_batch`` (a single row longer
    than the budget still forms its own batch)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens_per_batch is not None and (
        not isinstance(max_tokens_per_batch, int)
        or isinstance(max_tokens_per_batch, bool)
        or max_tokens_per_batch < 1
    ):
        raise ValueError(
            f"max_tokens_per_batch must be a positive int or None, got {max_tokens_per_batch!r}"
        )
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    budget = max_tokens_per_batch or np.iinfo(np.int64).max
    batches, start, n = [], 0, len(order)
    while start < n:
        longest = max(int(lens[order[start]]), 1)
        rows = max(1, min(batch_size, budget // longest, n - start))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id rows: (input_ids int64 [b, L], attention_mask int64 [b, L])."""
    width = max((len(r) for r in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, r in enumerate(ids):
        input_ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return input_ids, mask


def pad_values(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """Right-pad rows of ints with zeros to ``width`` (token_type_ids): int64 [b, width]."""
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def run_batches(
    lengths: Sequence[int],
    batch_size: int,
    budget: Optional[int],
    show_progress: Optional[bool],
    fn: Callable[[np.ndarray], Sequence[Any]],
    desc: str,
    unit: str = "text",
) -> list:
    """Call ``fn(rows)`` on the length-sorted batches of :func:`plan_batches` (``rows`` = the
    indices of a batch; ``fn`` returns one result per row) and return the results in the
    original order, advancing a progress bar (counting ``unit``) per batch: with
    ``show_progress=None`` on a terminal for :data:`PROGRESS_THRESHOLD`+ inputs."""
    out: list = [None] * len(lengths)
    batches = plan_batches(lengths, batch_size, budget)
    enabled = wants_progress(show_progress, len(lengths), PROGRESS_THRESHOLD)
    with Progress(len(lengths), desc, enabled, unit) as tick:
        for rows in batches:
            for i, r in zip(rows, fn(rows)):
                out[i] = r
            if tick is not None:
                tick(len(rows))
    return out
