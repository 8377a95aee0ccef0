"""``densparse serve``: an HTTP service for embeddings, sparse vectors, reranking and
Collection search, in the request shapes of text-embeddings-inference and OpenAI.

Needs the ``serve`` extra (``pip install "densparse[serve]"``: FastAPI, uvicorn,
prometheus_client). Imported lazily, so ``densparse.serve.cli`` (argparse only) loads
without it."""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from densparse.serve.app import create_app

        return create_app
    if name == "ServeConfig":
        from densparse.serve.service import ServeConfig

        return ServeConfig
    raise AttributeError(f"module 'densparse.serve' has no attribute {name!r}")
