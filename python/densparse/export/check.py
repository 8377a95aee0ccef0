"""The post-export check: the ONNX graph under onnxruntime vs the torch forward pass.

Samples are a few texts of different lengths, tokenised by the exported ``tokenizer.json``,
run both as one padded batch and one by one. Per output, the largest absolute difference over
the real (unpadded) positions is reported. The check fails when it exceeds

    tolerance x max(1, largest |torch value| of that output)

so raw hidden states and logits (magnitudes of tens) are held to the same *relative* accuracy as
unit-scale outputs. Tolerances: 1e-4 for float32 (also after ``optimize``), 2e-2 for float16,
and for int8 -- whose error is a quantisation error, not a bug signal -- 0.5. Row cosines
between ONNX and torch (token rows, or whole vectors for per-text outputs) are also held:
float16 every row >= 0.999; int8 on average >= 0.95 (MiniLM-L6 int8 token rows: mean 0.993,
min 0.980; its sentence vectors keep cosine >= 0.995 to float32).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from densparse.export._deps import require

log = logging.getLogger("densparse.export")

SAMPLE_TEXTS = (
    "Hello world.",
    "A longer sample sentence, with punctuation, numbers like 1234 and several clauses, "
    "so that the padded batch has rows of clearly different lengths; it keeps going for a "
    "while to exercise more positions of the model.",
    "数据库 retrieval mixed 中文 text.",
    "Short one",
)
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.5}
MIN_COSINE = {"fp32": 0.0, "fp16": 0.999, "int8": 0.0}
MEAN_COSINE = {"fp32": 0.0, "fp16": 0.999, "int8": 0.95}


class ExportCheckError(ValueError):
    """The exported graph does not reproduce the torch model within tolerance."""


#: (query, passage) samples for cross-encoders: truncation, mixed scripts, an empty passage.
SAMPLE_PAIRS = (
    ("what is the capital of france", SAMPLE_TEXTS[1]),
    ("押金怎么退", SAMPLE_TEXTS[2]),
    ("Hello", SAMPLE_TEXTS[0]),
    ("short query", ""),
)


def sample_batches(tokenizer_path: Path, max_length: int, pad_id: int, pairs: bool = False):
    """[(input_ids, attention_mask, token_type_ids)] int64: the samples (texts, or
    (query, passage) pairs when ``pairs``) as one padded batch, then the first two alone."""
    from densparse.models.batching import load_tokenizer, pad, pad_values, tokenize

    tok = load_tokenizer(tokenizer_path)
    limit = max(2, min(max_length, 64))
    if pairs:
        from densparse.models.reranker import encode_pairs

        rows = encode_pairs(tok, list(SAMPLE_PAIRS), max(limit, 8))
    else:
        rows = [(e.ids, [0] * len(e.ids)) for e in tokenize(tok, list(SAMPLE_TEXTS), limit)]

    def batch(sel):
        input_ids, mask = pad([r[0] for r in sel], pad_id)
        return input_ids, mask, pad_values([r[1] for r in sel], input_ids.shape[1])

    return [batch(rows)] + [batch([r]) for r in rows[:2]]


#: Outputs with one row per text (no sequence axis).
PER_TEXT = ("dense",)


def _valid(arr: np.ndarray, mask: np.ndarray, per_text: bool = False) -> np.ndarray:
    """The rows of ``arr`` at real token positions (all of it for per-text outputs)."""
    if per_text:
        return arr
    if arr.ndim >= 2 and arr.shape[1] == mask.shape[1]:
        return arr[mask.astype(bool)]
    if arr.ndim >= 2 and arr.shape[1] == mask.shape[1] - 1:
        return arr[mask[:, 1:].astype(bool)]
    return arr


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row cosines (rows where either side is ~zero are skipped)."""
    if a.ndim < 2 or a.size == 0:
        return np.ones(1)
    if a.shape[-1] == 1:  # one score per row (reranker logits): compare the score vectors
        a, b = a.reshape(1, -1), b.reshape(1, -1)
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    keep = (na > 1e-6) & (nb > 1e-6)  # zero rows (relu'd sparse weights) carry no direction
    if not keep.any():
        return np.ones(1)
    return (a[keep] * b[keep]).sum(1) / (na[keep] * nb[keep])


def compare(
    wrapper,
    onnx_path: Path,
    input_names,
    output_names,
    batches,
    precision: str,
    per_text=PER_TEXT,
):
    """Run both; returns ({output: max abs diff}, {output: min row cosine}, {output: mean
    row cosine}); raises
    ExportCheckError past the tolerance."""
    torch = require("torch")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in sess.get_inputs()]
    diffs = dict.fromkeys(output_names, 0.0)
    scale = dict.fromkeys(output_names, 1.0)
    cosines = {name: [] for name in output_names}
    wrapper.eval()
    for input_ids, mask, types in batches:
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        got = sess.run(list(output_names), {n: feeds[n] for n in graph_inputs})
        with torch.no_grad():
            ref = wrapper(*(torch.from_numpy(feeds[n]) for n in input_names))
        if isinstance(ref, torch.Tensor):
            ref = (ref,)
        for name, g, r in zip(output_names, got, ref):
            r = r.numpy()
            if g.shape != r.shape:
                raise ExportCheckError(f"output {name}: ONNX shape {g.shape} != torch {r.shape}")
            whole = name in per_text
            gv = _valid(np.asarray(g, np.float32), mask, whole)
            rv = _valid(r, mask, whole)
            if not np.isfinite(gv).all():
                raise ExportCheckError(f"output {name}: the ONNX graph gives non-finite values")
            if gv.size:
                diffs[name] = max(diffs[name], float(np.abs(gv - rv).max()))
                scale[name] = max(scale[name], float(np.abs(rv).max()))
            cosines[name].append(_cosines(gv, rv))
    tol = TOLERANCE[precision]
    min_cos = {n: float(np.concatenate(c).min()) for n, c in cosines.items()}
    mean_cos = {n: float(np.concatenate(c).mean()) for n, c in cosines.items()}
    for name in output_names:
        log.info(
            "check %s: max abs diff %.3g (max |torch| %.3g), row cosine min %.6f mean %.6f",
            name,
            diffs[name],
            scale[name],
            min_cos[name],
            mean_cos[name],
        )
        if diffs[name] > tol * scale[name]:
            raise ExportCheckError(
                f"exported graph differs from torch on output {name!r}: max abs diff "
                f"{diffs[name]:.3g} > {tol} x max(1, |torch| max {scale[name]:.3g}) ({precision})"
            )
        if min_cos[name] < MIN_COSINE[precision] or mean_cos[name] < MEAN_COSINE[precision]:
            raise ExportCheckError(
                f"exported graph differs from torch on output {name!r}: row cosine min "
                f"{min_cos[name]:.5f} / mean {mean_cos[name]:.5f} below "
                f"{MIN_COSINE[precision]} / {MEAN_COSINE[precision]} ({precision})"
            )
    return diffs, min_cos, mean_cos
