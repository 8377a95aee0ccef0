"""BGE-M3 head weights (``sparse_linear``, ``colbert_linear``) without torch.

``densparse export`` writes both heads *into* the ONNX graph (named outputs ``dense``,
``sparse``, ``colbert``), so exported directories need nothing from here. For graphs that
expose only ``last_hidden_state``, the heads are applied in numpy from weights stored next to
the graph as any of:

- ``sparse_linear.safetensors`` (tensors ``weight`` and ``bias``),
- ``sparse_linear.npz`` (arrays ``weight`` and ``bias``),
- ``sparse_linear.weight.npy`` and ``sparse_linear.bias.npy``,

and the same for ``colbert_linear``. FlagEmbedding's ``sparse_linear.pt`` / ``colbert_linear.pt``
are torch pickles that cannot be read without torch: convert them (or export with
``densparse export``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Optional

import numpy as np

HEADS = ("sparse_linear", "colbert_linear")

_ST_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as numpy arrays (F32/F16/BF16/F64)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def head_files(model_dir: Path, name: str) -> list[Path]:
    d = Path(model_dir)
    cands = [
        d / f"{name}.safetensors",
        d / f"{name}.npz",
        d / f"{name}.weight.npy",
        d / f"{name}.pt",
    ]
    return [p for p in cands if p.is_file()]


def load_head(model_dir: Path, name: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(weight [out, in], bias [out]) of a linear head, or ``None`` when no file exists."""
    d = Path(model_dir)
    files = head_files(d, name)
    if not files:
        return None
    path = files[0]
    if path.suffix == ".safetensors":
        t = read_safetensors(path)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            t = {k: z[k] for k in z.files}
    elif path.name.endswith(".weight.npy"):
        t = {"weight": np.load(path, allow_pickle=False)}
        bias = d / f"{name}.bias.npy"
        if bias.is_file():
            t["bias"] = np.load(bias, allow_pickle=False)
    else:
        raise ValueError(
            f"{path} is a torch pickle, which densparse reads without torch only after "
            f"conversion: save its weight and bias as {name}.safetensors or {name}.npz, or "
            "export the model with `densparse export` (which puts the heads into the graph)"
        )
    t = {k.split(".")[-1]: v for k, v in t.items()}  # tolerate "sparse_linear.weight" keys
    if "weight" not in t:
        raise ValueError(f"{path}: no 'weight' tensor (found {sorted(t)})")
    w = np.asarray(t["weight"], dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"{path}: weight must be 2-D [out, in], got shape {w.shape}")
    b = np.asarray(t.get("bias", np.zeros(w.shape[0])), dtype=np.float32).reshape(-1)
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"{path}: bias has {b.shape[0]} values for {w.shape[0]} outputs")
    return w, b


def linear(h: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """h @ W.T + b over the last axis."""
    w, b = head
    if h.shape[-1] != w.shape[1]:
        raise ValueError(f"head expects hidden size {w.shape[1]}, the model gives {h.shape[-1]}")
    return (h @ w.T + b).astype(np.float32, copy=False)
