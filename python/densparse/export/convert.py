"""torch -> ONNX, and saving a graph with or without external data.

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``): its BERT /
XLM-RoBERTa graphs are the ones onnxruntime's transformer optimizer knows how to fuse. Where a
torch build no longer ships it, the ``torch.export``-based exporter (needs onnxscript) is used.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Optional

from densparse.export._deps import require

log = logging.getLogger("densparse.export")

#: Initializer bytes above which the graph is saved with external data: protobuf caps a
#: serialised ModelProto at 2 GiB, so a little headroom is kept for the graph itself.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
DATA_SUFFIX = ".data"


def dummy_inputs(input_names, vocab_size: int, pad_id: int):
    """A padded two-row batch (padding matters: a trace without it may drop the mask)."""
    torch = require("torch")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, max(vocab_size, 5), (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = pad_id
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(feeds[n] for n in input_names)


def torch_to_onnx(wrapper, input_names, output_names, axes, args, path: Path, opset: int) -> None:
    """Trace ``wrapper`` on ``args`` into ``path``."""
    torch = require("torch")
    wrapper.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on transformers' shape checks
        common = dict(
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=opset,
        )
        try:
            torch.onnx.export(
                wrapper, args, str(path), do_constant_folding=True, dynamo=False, **common
            )
        except TypeError as e:  # a torch without the TorchScript exporter
            if "dynamo" not in str(e):
                raise
            log.info("TorchScript exporter unavailable; using the dynamo exporter")
            torch.onnx.export(wrapper, args, str(path), dynamo=True, **common)
    wrapper.eval()  # torch.onnx.export restores the module's previous training flag


def initializer_bytes(model) -> int:
    """Bytes held by the graph's initializers (external ones included)."""
    total = 0
    for t in model.graph.initializer:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            ext = {e.key: e.value for e in t.external_data}
            if "length" in ext:
                total += int(ext["length"])
            else:
                n = 1
                for d in t.dims:
                    n *= d
                total += n * 4
    return total


def save_graph(model, path: Path, external_data_threshold: Optional[int]) -> bool:
    """Save ``model`` to ``path``; with all tensors in one ``<name>.data`` file next to it
    when its initializers exceed the threshold. Returns whether external data was used."""
    onnx = require("onnx")
    threshold = (
        EXTERNAL_DATA_THRESHOLD if external_data_threshold is None else int(external_data_threshold)
    )
    external = initializer_bytes(model) > threshold
    data = path.with_name(path.name + DATA_SUFFIX)
    for p in (path, data):
        if p.exists():
            os.remove(p)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=0,
            convert_attribute=False,
        )
    else:
        # tensors stored externally by an earlier step must come back inline
        onnx.external_data_helper.convert_model_from_external_data(model)
        onnx.save_model(model, str(path))
    return external


def load_graph(path: Path):
    """Load an ONNX file with its external data, if any."""
    onnx = require("onnx")
    return onnx.load(str(path), load_external_data=True)
