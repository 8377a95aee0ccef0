"""encode: vectors for a Ray Dataset's texts, one densparse Encoder per actor."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Union

from densparse.distributed._ray import ray

log = logging.getLogger("densparse.distributed")


class EncodeBatches:
    """The callable class ``map_batches`` runs: loads the Encoder once per actor, then
    encodes each batch's texts (the Encoder's own token-budget batching inside)."""

    def __init__(
        self,
        model: str,
        column: str,
        query: bool,
        outputs: Optional[tuple[str, ...]],
        encode_kwargs: dict,
        threads: Optional[int] = None,
        provider: str = "auto",
    ) -> None:
        from densparse.collection.encoding import produces
        from densparse.models import Encoder

        t0 = time.perf_counter()
        self.encoder = Encoder.from_pretrained(model, provider=provider, threads=threads)
        self.column = column
        self.query = query
        self.kw = encode_kwargs
        dense, sparse = produces(self.encoder)
        fam = self.encoder.family
        default = tuple(n for n, on in (("dense", dense), ("sparse", sparse)) if on)
        self.outputs = default if outputs is None else tuple(outputs)
        bad = set(self.outputs) - {"dense", "sparse", "colbert"}
        if bad or not self.outputs:
            raise ValueError(f"outputs must be among dense, sparse, colbert, got {outputs!r}")
        if "colbert" in self.outputs and fam != "bge-m3":
            raise ValueError(f"colbert vectors need a BGE-M3 model, not {fam}")
        if ("sparse" in self.outputs and not sparse) or ("dense" in self.outputs and not dense):
            raise ValueError(f"a {fam} model does not give all of {self.outputs}")
        log.info("encoder %s loaded in %.1f s", model, time.perf_counter() - t0)

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        texts = batch.column(self.column).to_pylist()
        enc = self.encoder
        fn = enc.encode_queries if self.query else enc.encode
        kw = dict(self.kw, show_progress=False)
        if enc.family == "bge-m3":
            kw.update(
                return_dense="dense" in self.outputs,
                return_sparse="sparse" in self.outputs,
                return_colbert="colbert" in self.outputs,
            )
        out = fn(texts, **kw)
        dense = sparse = colbert = None
        if isinstance(out, np.ndarray):
            dense = out
        elif isinstance(out, dict):
            dense = out.get("dense_vecs")
            sparse = out.get("lexical_weights")
            colbert = out.get("colbert_vecs")
        else:
            sparse = out
        if "dense" in self.outputs:
            rows = np.asarray(dense, dtype=np.float32)
            batch = batch.append_column("dense", pa.array(list(rows), type=pa.list_(pa.float32())))
        if "sparse" in self.outputs:
            idx = [[int(t) for t in w] for w in sparse]
            val = [[float(v) for v in w.values()] for w in sparse]
            batch = batch.append_column("sparse_indices", pa.array(idx, pa.list_(pa.int64())))
            batch = batch.append_column("sparse_values", pa.array(val, pa.list_(pa.float32())))
        if "colbert" in self.outputs:
            vecs = [np.asarray(c, dtype=np.float32).tolist() for c in colbert]
            batch = batch.append_column(
                "colbert", pa.array(vecs, type=pa.list_(pa.list_(pa.float32())))
            )
        return batch


def encode(
    ds: Any,
    model: Union[str, Any],
    column: str = "text",
    *,
    batch_size: int = 256,
    outputs: Optional[tuple[str, ...]] = None,
    query: bool = False,
    num_gpus: float = 0,
    num_cpus: Optional[float] = None,
    concurrency: Union[int, tuple[int, int]] = 1,
    threads: Optional[int] = None,
    provider: str = "auto",
    **encode_kwargs: Any,
) -> Any:
    """Add vector columns to a Ray Dataset: ``dense`` (list<float32>), ``sparse_indices`` +
    ``sparse_values`` and ``colbert``, computed from ``column`` by a densparse
    :class:`~densparse.Encoder` that each Ray actor loads once.

    Args:
        ds: a ``ray.data.Dataset`` with a text column.
        model: the model directory (or hub repo id) every actor loads; it must be readable
            where the actors run.
        batch_size: rows per Ray batch handed to an actor; inside it the Encoder batches by
            its token budget (``max_tokens_per_batch``, ``batch_size`` in ``encode_kwargs``).
        outputs: which of ``"dense"``, ``"sparse"``, ``"colbert"`` (default: what the
            model's family gives; ColBERT for BGE-M3 only when asked).
        query: encode as queries (the model's query instruction added).
        num_gpus, num_cpus, concurrency: Ray resources per actor and the number of actors
            (an int, or a (min, max) autoscaling range).
        threads, provider: onnxruntime intra-op threads (default: ``num_cpus`` when given,
            else one per core) and execution provider of each actor's Encoder.
        encode_kwargs: passed to :meth:`densparse.Encoder.encode` (``max_length``,
            ``max_tokens_per_batch``, ``normalize``, ...).

    Returns:
        A lazy ``ray.data.Dataset``: every input column plus the vectors.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if "encode_batch_size" in encode_kwargs:
        encode_kwargs["batch_size"] = encode_kwargs.pop("encode_batch_size")
    model = str(getattr(model, "model_dir", model))
    r = ray()
    if isinstance(concurrency, tuple):
        lo, hi = concurrency
        compute = r.data.ActorPoolStrategy(min_size=lo, max_size=hi)
    else:
        compute = r.data.ActorPoolStrategy(size=concurrency)
    args: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    return ds.map_batches(
        EncodeBatches,
        batch_format="pyarrow",
        batch_size=batch_size,
        fn_constructor_kwargs={
            "model": model,
            "column": column,
            "query": query,
            "outputs": None if outputs is None else tuple(outputs),
            "encode_kwargs": encode_kwargs,
            "threads": threads
            if threads is not None
            else (None if num_cpus is None else max(1, int(num_cpus))),
            "provider": provider,
        },
        compute=compute,
        **args,
    )
