"""The ASGI application: :func:`create_app`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from densparse.serve.limits import Guard, ServiceError
from densparse.serve.routes import router
from densparse.serve.service import ServeConfig, Service

log = logging.getLogger(__name__)

_KINDS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}


def _error(status: int, message: str, kind: str, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": kind}, status, headers=headers)


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else "body"


def create_app(config: Optional[ServeConfig] = None, **settings: Any) -> FastAPI:
    """The service as an ASGI application, to run with any ASGI server
    (``uvicorn.run(create_app(model="minilm-onnx/"))``) or mount in another app.

    Give a :class:`ServeConfig`, or its fields as keyword arguments. Models and collections
    given as paths are loaded in the background when the server starts (``/health``
    answers 503 until then); at shutdown, after the server drained its requests, pending
    collection writes are committed and the collections opened here are closed.

    Raises:
        ValueError: a bad setting.
    """
    if config is not None and settings:
        raise TypeError("give a ServeConfig or keyword settings, not both")
    cfg = config if config is not None else ServeConfig(**settings)
    service = Service(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    import densparse

    app = FastAPI(
        title="densparse",
        version=densparse.__version__,
        description="Embeddings, sparse vectors, reranking and Collection search over local "
        "models, in the shapes of text-embeddings-inference and OpenAI.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.include_router(router)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, e: ServiceError) -> JSONResponse:
        return _error(e.status, e.message, e.kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        msgs = [f"{_field(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in e.errors()]
        return _error(422, "; ".join(msgs[:5]) or "invalid request", "Validation")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = _KINDS.get(e.status_code, "Validation" if e.status_code < 500 else "Backend")
        return _error(e.status_code, str(e.detail), kind, getattr(e, "headers", None))

    @app.exception_handler(KeyError)
    async def key_error(request: Request, e: KeyError) -> JSONResponse:
        return _error(404, str(e.args[0]) if e.args else "not found", "NotFound")

    @app.exception_handler(ValueError)
    async def value_error(request: Request, e: ValueError) -> JSONResponse:
        return _error(422, str(e), "Validation")

    @app.exception_handler(TypeError)
    async def type_error(request: Request, e: TypeError) -> JSONResponse:
        return _error(422, str(e), "Validation")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        # the trace goes to the server log, never to the client
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=e)
        return _error(500, "internal error (see the server log)", "Backend")

    app.add_middleware(
        Guard,
        api_key=cfg.api_key,
        max_concurrent_requests=cfg.max_concurrent_requests,
        payload_limit=cfg.payload_limit,
        metrics=service.metrics,
    )
    return app
