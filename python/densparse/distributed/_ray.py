"""Ray, imported on first use with a clear error when the ``ray`` extra is missing."""

from __future__ import annotations

from typing import Any


def ray() -> Any:
    try:
        import ray as _ray
        import ray.data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "densparse.distributed needs Ray Data: pip install 'densparse[ray]'"
        ) from e
    return _ray
