"""Late chunking (Günther et al. 2024; docs/algorithms.md, "Late chunking").

1. Chunk boundaries are found on the text -- ``"fixed"`` (every ``chunk_size`` tokens),
   ``"sentences"`` (English ``. ! ?`` followed by a space, Chinese ``。！？；…`` and full-width
   ``！？；．``, line breaks; with ``chunk_size`` set, consecutive sentences are packed up to
   that many tokens) or ``"spans"`` (caller-given character spans) -- and mapped to token spans
   through the tokenizer's character offsets (a token belongs to the chunk its first character
   falls in; chunks holding no token are dropped, with their character span).
2. The whole document is encoded once and its token embeddings kept.
3. Special tokens: the first chunk starts at position 0 (so it includes [CLS]), the last
   chunk's end gains the trailing special token ([SEP] / </s>).
4. Chunk vector = plain mean of its token embeddings, then L2 normalisation.
5. Long documents (more tokens than the max length W) use *long late chunking*: windows of W
   tokens, each starting W - O after the previous (O = ``overlap``, default min(W // 4, 256)),
   are encoded separately; every window after the first drops its first O outputs, and the rest
   are joined into one sequence as long as the document. As in the reference implementation,
   the windows are plain slices of the document's token sequence: only the first has [CLS] and
   only the last has [SEP]. ``long_documents="truncate"`` instead encodes the first W tokens and
   drops spans starting at or past W - 1, clipping ends to W - 1 (the reference's
   ``max_length`` rule).

``late=False`` is naive chunking of the same chunks: each chunk's text encoded alone with the
model's own pooling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from densparse.models.batching import check_texts
from densparse.models.pooling import l2_normalize

if TYPE_CHECKING:
    from densparse.models.encoder import Encoder

STRATEGIES = ("fixed", "sentences", "spans")
#: Tokens per chunk of strategy="fixed" when chunk_size is not given.
DEFAULT_CHUNK_SIZE = 256
#: Late chunking pools documents in groups holding at most this many token-embedding floats
#: (~256 MB of float32), so memory does not grow with the corpus.
HIDDEN_BUDGET = 1 << 26

# An English sentence ends with . ! ? (plus closing quotes/brackets) before whitespace or the
# end; a Chinese one with 。｡！？；… or full-width ．！？； (plus closing quotes), anywhere.
_SENTENCE_END = re.compile(
    r"""(?:[.!?]+["'”’)\]]*(?=\s|$))"""
    r"""|(?:[。｡！？；…．!?;]+[”’」』）》"']*)"""
    r"""|(?:\n+)"""
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (surrounding whitespace excluded).

    English sentence ends: ``. ! ?`` followed by whitespace or the end of the text. Chinese
    sentence ends: ``。！？；…`` and their full-width / half-width forms, wherever they occur.
    A line break also ends a sentence."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        _add_stripped(text, start, end, spans)
        start = end
    _add_stripped(text, start, len(text), spans)
    return spans


def _add_stripped(text: str, s: int, e: int, out: list) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        out.append((s, e))


def token_spans_for_chars(
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    char_spans: Sequence[tuple[int, int]],
) -> list[Optional[tuple[int, int]]]:
    """Token span [first, last + 1) (positions in the full encoding) of each char span: the
    non-special tokens whose first character lies in it; ``None`` for a span with no token."""
    starts = np.array([o[0] if not sp else -1 for o, sp in zip(offsets, special)], dtype=np.int64)
    content = np.flatnonzero(starts >= 0)
    cstarts = starts[content]
    out = []
    for s, e in char_spans:
        lo = np.searchsorted(cstarts, s, side="left")
        hi = np.searchsorted(cstarts, e, side="left")
        out.append((int(content[lo]), int(content[hi - 1]) + 1) if hi > lo else None)
    return out


def fixed_chunks(
    offsets: Sequence[tuple[int, int]], special: Sequence[int], chunk_size: int
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(token span, char span) of every ``chunk_size`` consecutive non-special tokens."""
    content = [i for i, sp in enumerate(special) if not sp]
    out = []
    for k in range(0, len(content), chunk_size):
        part = content[k : k + chunk_size]
        out.append(((part[0], part[-1] + 1), (offsets[part[0]][0], offsets[part[-1]][1])))
    return out


def pack_sentences(
    sent_tokens: list[Optional[tuple[int, int]]],
    sent_chars: list[tuple[int, int]],
    chunk_size: Optional[int],
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Sentences (token span, char span) packed greedily up to ``chunk_size`` tokens
    (``None``: one sentence per chunk). Sentences without tokens are skipped."""
    out: list = []
    for tok, ch in zip(sent_tokens, sent_chars):
        if tok is None:
            continue
        if out and chunk_size is not None and tok[1] - out[-1][0][0] <= chunk_size:
            (ts, _), (cs, _) = out[-1]
            out[-1] = ((ts, tok[1]), (cs, ch[1]))
        else:
            out.append((tok, ch))
    return out


def adjust_for_special_tokens(
    token_spans: list[tuple[int, int]], n_tokens: int
) -> list[tuple[int, int]]:
    """First chunk starts at 0 (includes [CLS]); the last chunk's end gains 1 (so it includes
    the final [SEP] when the chunks reach the end of the text), within the sequence."""
    if not token_spans:
        return []
    spans = list(token_spans)
    spans[0] = (0, spans[0][1])
    s, e = spans[-1]
    spans[-1] = (s, min(e + 1, n_tokens))
    return spans


def late_chunk_pool(
    hidden: np.ndarray,
    token_spans: Sequence[tuple[int, int]],
    max_length: Optional[int] = None,
    normalize: bool = True,
) -> tuple[np.ndarray, list[int]]:
    """Mean of ``hidden[start:end]`` per span (then L2 normalised); with ``max_length``, spans
    starting at or past ``max_length - 1`` are dropped and ends clipped to it. Returns the
    vectors and the indices of the spans kept."""
    hidden = np.asarray(hidden, dtype=np.float32)
    vecs, kept = [], []
    for k, (s, e) in enumerate(token_spans):
        if max_length is not None:
            if s >= max_length - 1:
                continue
            e = min(e, max_length - 1)
        e = min(e, hidden.shape[0])
        if e - s < 1:
            continue
        vecs.append(hidden[s:e].mean(axis=0, dtype=np.float64))
        kept.append(k)
    dim = hidden.shape[1] if hidden.ndim == 2 else 0
    out = np.asarray(vecs, dtype=np.float32).reshape(len(vecs), dim)
    return (l2_normalize(out) if normalize and len(vecs) else out), kept


def window_plan(n_tokens: int, window: int, overlap: int) -> list[tuple[int, int, int]]:
    """Windows (start, end, drop) over ``n_tokens`` tokens: each ``window`` long, starting
    ``window - overlap`` after the previous, the last ending at ``n_tokens``; ``drop`` leading
    outputs (``overlap`` for every window after the first) are discarded when stitching."""
    if window < 2 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 2 and 0 <= overlap < window, got {window}, {overlap}")
    if n_tokens <= window:
        return [(0, n_tokens, 0)]
    plan, start = [], 0
    while True:
        end = min(start + window, n_tokens)
        plan.append((start, end, overlap if start > 0 else 0))
        if end >= n_tokens:
            return plan
        start += window - overlap


def stitch(outputs: Sequence[np.ndarray], plan: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Join window outputs, dropping each window's first ``drop`` rows."""
    return np.concatenate([o[d:] for o, (_, _, d) in zip(outputs, plan)], axis=0)


def _default_overlap(window: int) -> int:
    return min(window // 4, 256)


def stitched_hidden(
    enc: Encoder,
    ids: list[list[int]],
    batch_size: int,
    max_tokens_per_batch: Optional[int],
    window: Optional[int],
    overlap: Optional[int],
    show_progress: Optional[bool] = None,
) -> list[np.ndarray]:
    """Token embeddings of whole token sequences, long ones via stitched windows; all windows
    of all documents go through the encoder's length-sorted batches together."""
    if enc._hidden is None:
        raise ValueError(
            f"late chunking needs token embeddings, and this {enc.family} graph has no "
            f"last_hidden_state output (outputs: {enc.model.outputs})"
        )
    window = enc.max_length if window is None else window
    if window > enc.max_length:
        raise ValueError(f"window={window} exceeds the max length {enc.max_length}")
    overlap = _default_overlap(window) if overlap is None else overlap
    plans = [window_plan(len(r), window, overlap) for r in ids]
    pieces, owner = [], []
    for doc, (r, plan) in enumerate(zip(ids, plans)):
        for s, e, _ in plan:
            pieces.append(r[s:e])
            owner.append(doc)

    def fn(input_ids, mask):
        h = enc._hidden_batch(input_ids, mask)
        return [h[i, : int(mask[i].sum())] for i in range(h.shape[0])]

    outs = enc._run_batches(pieces, batch_size, max_tokens_per_batch, show_progress, fn, "windows")
    per_doc: list[list[np.ndarray]] = [[] for _ in ids]
    for o, doc in zip(outs, owner):
        per_doc[doc].append(o)
    return [stitch(per_doc[d], plans[d]) for d in range(len(ids))]


def chunk_embed(
    enc: Encoder,
    texts: Sequence[str],
    *,
    strategy: str,
    chunk_size: Optional[int],
    spans: Optional[Sequence[Sequence[tuple[int, int]]]],
    late: bool,
    batch_size: int,
    max_tokens_per_batch: Union[int, str, None],
    long_documents: str,
    window: Optional[int],
    overlap: Optional[int],
    normalize: bool,
    show_progress: Optional[bool],
) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """:meth:`densparse.Encoder.chunk_embed` (which documents the arguments and holds the
    defaults)."""
    texts = check_texts(texts)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if long_documents not in ("windows", "truncate"):
        raise ValueError("long_documents must be 'windows' or 'truncate'")
    if strategy == "fixed" and chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if strategy == "spans":
        if spans is None or len(spans) != len(texts):
            raise ValueError("strategy='spans' needs spans=[[(start, end), ...] per text]")
    elif spans is not None:
        raise ValueError("spans= is only used with strategy='spans'")

    encs = enc._tokenize(texts, None)
    chunks: list[list[tuple[tuple[int, int], tuple[int, int]]]] = []
    for i, (text, e) in enumerate(zip(texts, encs)):
        offsets, special = e.offsets, e.special_tokens_mask
        if strategy == "fixed":
            chunks.append(fixed_chunks(offsets, special, chunk_size))
            continue
        if strategy == "sentences":
            chars = sentence_spans(text)
        else:
            chars = []
            for s, t in spans[i]:
                if not (isinstance(s, int) and isinstance(t, int) and 0 <= s < t <= len(text)):
                    raise ValueError(
                        f"spans[{i}] holds ({s}, {t}), not a span of a {len(text)}-char text"
                    )
                chars.append((s, t))
        toks = token_spans_for_chars(offsets, special, chars)
        if strategy == "sentences":
            chunks.append(pack_sentences(toks, chars, chunk_size))
        else:
            chunks.append([(t, c) for t, c in zip(toks, chars) if t is not None])

    if not late:
        flat = [texts[i][c[0] : c[1]] for i, doc in enumerate(chunks) for _, c in doc]
        vecs = (
            enc.encode(flat, batch_size, normalize, show_progress, max_tokens_per_batch)
            if flat
            else None
        )
        out, k = [], 0
        for doc in chunks:
            n = len(doc)
            v = vecs[k : k + n] if n else np.zeros((0, enc.dim or 0), np.float32)
            out.append((np.ascontiguousarray(v, dtype=np.float32), [c for _, c in doc]))
            k += n
        return out

    ids = [e.ids for e in encs]
    if long_documents == "truncate":
        # tokenizer-style truncation: keep the final special token
        ids = [r if len(r) <= enc.max_length else r[: enc.max_length - 1] + r[-1:] for r in ids]
        window, overlap, limit = None, None, enc.max_length
    else:
        limit = None
    out = []
    # Token embeddings of a group of documents are pooled and freed before the next group, so
    # memory stays near HIDDEN_BUDGET floats whatever the corpus size.
    per_token = enc.dim or 1024
    start = 0
    while start < len(ids):
        stop, total = start, 0
        while stop < len(ids) and (
            stop == start or total + len(ids[stop]) * per_token <= HIDDEN_BUDGET
        ):
            total += len(ids[stop]) * per_token
            stop += 1
        hidden = stitched_hidden(
            enc, ids[start:stop], batch_size, max_tokens_per_batch, window, overlap, show_progress
        )
        for e, doc, h in zip(encs[start:stop], chunks[start:stop], hidden):
            tok = adjust_for_special_tokens([t for t, _ in doc], len(e.ids))
            v, kept = late_chunk_pool(h, tok, max_length=limit, normalize=normalize)
            out.append((v, [doc[k][1] for k in kept]))
        start = stop
    return out
