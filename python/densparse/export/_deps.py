"""Lazy imports of the export-only dependencies (torch, transformers, onnx)."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "densparse[export]"'


def require(name: str) -> ModuleType:
    """Import ``name`` or raise an ImportError that says how to install the export extra."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"densparse export needs {name.split('.')[0]}, which is not installed: {INSTALL_HINT}"
        ) from e


def require_all() -> None:
    """Fail early, before any work, when torch / transformers / onnx are missing."""
    for name in ("torch", "transformers", "onnx"):
        require(name)
