"""onnxruntime sessions: provider choice, threads, graph optimisation, IO binding.

``provider="auto"`` uses CUDA only when onnxruntime's ``CUDAExecutionProvider`` is listed,
the NVIDIA driver library can be loaded (no driver means no GPU: CUDA is not even tried, so
onnxruntime-gpu prints none of its library-load errors), *and* a session actually comes up on
it (onnxruntime-gpu lists CUDA even on machines without a GPU or without the CUDA libraries,
then falls back to CPU). Otherwise the CPU provider, chosen quietly: the provider is logged on
the ``densparse.models`` logger at INFO level, the reason CUDA was not used at DEBUG level.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger("densparse.models")

PROVIDERS = ("auto", "cpu", "cuda")
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
_ORT_TYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError(
            "densparse encoders need onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu on Linux x86_64; never both)"
        ) from e
    return ort


def _session_options(ort, threads: Optional[int]):
    """Full graph optimisation, sequential execution, and memory settings for dynamic shapes.

    ``enable_mem_pattern`` is switched off: onnxruntime records one memory pattern per input
    shape, and length-sorted batches have a new shape almost every call, so the patterns only
    add peak memory (measured: MiniLM-L6, 200 SciFact docs, peak RSS 1.6 GB -> 1.0 GB at the
    old 16k-token budget, same CPU time). The CPU arena stays on: without it every large
    activation is a fresh mmap + page faults (measured +70% CPU time); its growth is bounded
    by the per-batch token budget instead (see :mod:`densparse.models.batching`).

    Intra-op threads do not spin while waiting for work (``session.intra_op.allow_spinning=0``):
    encoder batches are long matrix products, so spinning saves nothing measurable, and on a
    machine shared with other work it burns the cores those threads wait on (measured, 2 threads,
    128 SciFact docs on a busy 2-core machine: 15.4-15.9 -> 13.4-13.9 CPU-s, 8.0-8.3 -> 9.1-9.5
    docs/s).
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_mem_pattern = False
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


def _no_gpu_reason() -> Optional[str]:
    """Why no CUDA device can be used here (``None`` when one may be): the driver library
    (``libcuda.so.1`` / ``nvcuda.dll``) does not load, or ``CUDA_VISIBLE_DEVICES`` hides every
    device. Cheap, prints nothing."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            ctypes.CDLL(name)
            return None
        except OSError:
            continue
    return "no NVIDIA driver (libcuda cannot be loaded): no GPU on this machine"


@contextlib.contextmanager
def _stderr_to_debug_log():
    """Send what native code writes to file descriptor 2 to the DEBUG log instead (onnxruntime
    prints CUDA library-load failures from C++, past Python's logging)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("onnxruntime while trying CUDA: %s", text)


def _cuda_session(ort, path: str, so, device_id: int):
    """A session on CUDA, or ``None`` and the reason when CUDA cannot be used."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None, "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    reason = _no_gpu_reason()
    if reason:
        return None, reason
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None and importlib.util.find_spec("nvidia") is not None:
        with contextlib.suppress(Exception):  # CUDA/cuDNN from nvidia-* wheels, if any
            preload(directory="")
    # A failed CUDA load is logged by onnxruntime at ERROR level and then falls back to CPU;
    # that fallback is expected here, so quieten the default logger during the attempt.
    ort.set_default_logger_severity(4)
    try:
        with _stderr_to_debug_log():
            sess = ort.InferenceSession(
                path,
                so,
                providers=[
                    ("CUDAExecutionProvider", {"device_id": device_id}),
                    "CPUExecutionProvider",
                ],
            )
    except Exception as e:
        return None, f"CUDA session failed: {e}"
    finally:
        ort.set_default_logger_severity(2)
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        return (
            None,
            "CUDAExecutionProvider did not come up (no GPU, or CUDA/cuDNN libraries missing)",
        )
    return sess, ""


class OnnxModel:
    """One ONNX graph in an onnxruntime session.

    Args:
        path: the ``.onnx`` file (external data files next to it are found by onnxruntime).
        provider: ``"auto"``, ``"cpu"`` or ``"cuda"``. ``"cuda"`` raises RuntimeError when CUDA
            does not come up; ``"auto"`` falls back to CPU.
        device_id: CUDA device ordinal.
        threads: intra-op threads (``None``: onnxruntime's default, one per physical core).
    """

    def __init__(
        self,
        path: Path,
        provider: str = "auto",
        device_id: int = 0,
        threads: Optional[int] = None,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
            raise ValueError(f"device_id must be a non-negative int, got {device_id!r}")
        ort = _import_ort()
        so = _session_options(ort, threads)
        self.path = Path(path)
        sess, why = None, ""
        if provider in ("auto", "cuda"):
            sess, why = _cuda_session(ort, str(self.path), so, device_id)
            if sess is None and provider == "cuda":
                raise RuntimeError(f"provider='cuda' requested but unavailable: {why}")
        if sess is None:
            try:
                sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise ValueError(f"onnxruntime cannot load {self.path}: {e}") from e
        self.session = sess
        self.provider = "cuda" if sess.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.device_id = device_id
        if self.provider == "cuda":
            log.info("densparse encoder: CUDAExecutionProvider on device %d", device_id)
        else:
            log.info("densparse encoder: CPUExecutionProvider")
            if why:
                log.debug("CUDA not used: %s", why)
        self.inputs = {i.name: _ORT_TYPES.get(i.type, np.int64) for i in sess.get_inputs()}
        unknown = [n for n in self.inputs if n not in KNOWN_INPUTS]
        if unknown or "input_ids" not in self.inputs:
            raise ValueError(
                f"{self.path}: graph inputs {list(self.inputs)} are not supported; expected "
                f"input_ids plus any of {KNOWN_INPUTS[1:]}"
            )
        self.outputs = tuple(o.name for o in sess.get_outputs())
        self.output_shapes = {o.name: o.shape for o in sess.get_outputs()}

    def run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        outputs: Sequence[str],
        token_type_ids: Optional[np.ndarray] = None,
    ):
        """Run on a padded batch; returns the named outputs as float32 numpy arrays.
        ``token_type_ids`` (segment ids of sentence pairs) default to zeros."""
        feeds = {}
        for name, dtype in self.inputs.items():
            if name == "input_ids":
                arr = input_ids
            elif name == "attention_mask":
                arr = attention_mask
            elif name == "token_type_ids":
                arr = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            else:  # position_ids
                arr = np.broadcast_to(np.arange(input_ids.shape[1]), input_ids.shape)
            feeds[name] = np.ascontiguousarray(arr, dtype=dtype)
        names = list(outputs)
        if self.provider == "cuda":
            binding = self.session.io_binding()
            for name, arr in feeds.items():
                binding.bind_cpu_input(name, arr)
            for name in names:
                binding.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            res = binding.copy_outputs_to_cpu()
        else:
            res = self.session.run(names, feeds)
        # fp16 graphs: pool in float32
        return [np.asarray(r, dtype=np.float32) for r in res]
