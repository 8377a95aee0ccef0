"""``densparse serve``: the subcommand's flags and the uvicorn server it runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ENV_API_KEY = "DENSPARSE_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _named(flag: str, specs: list[str], want_dir: bool) -> dict[str, str]:
    """``NAME=PATH`` flags as ``{name: path}``; the paths must exist."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} wants NAME={'DIR' if want_dir else 'PATH'}, got {spec!r}")
        if name in out:
            raise ValueError(f"{flag} {name} given twice")
        if want_dir and not Path(path).is_dir():
            raise FileNotFoundError(f"{flag} {name}: {path} is not a directory")
        if not Path(path).exists():
            raise FileNotFoundError(f"{flag} {name}: {path} does not exist")
        out[name] = path
    return out


def cmd_serve(a: argparse.Namespace) -> int:
    try:
        import uvicorn

        from densparse.serve import ServeConfig, create_app
    except ImportError as e:
        raise ImportError(
            f'densparse serve needs the serve extra: pip install "densparse[serve]" ({e})'
        ) from e
    api_key = a.api_key or os.environ.get(ENV_API_KEY) or None
    cfg = ServeConfig(
        model=a.model,
        collections=_named("--collection", a.collection or [], True),
        reranker=a.reranker,
        bm25=_named("--bm25", a.bm25 or [], False),
        api_key=api_key,
        max_batch_tokens=a.max_batch_tokens,
        max_concurrent_requests=a.max_concurrent_requests,
        max_client_batch_size=a.max_client_batch_size,
        payload_limit=a.payload_limit,
        read_only=a.read_only,
        provider=a.provider,
        threads=a.threads,
        model_workers=a.model_workers,
        commit_interval=a.commit_interval,
        model_id=a.model_id,
    )
    if a.host not in LOOPBACK and api_key is None:
        print(
            f"densparse: warning: listening on {a.host} without an API key: anyone who can "
            f"reach it can use it (--api-key or {ENV_API_KEY})",
            file=sys.stderr,
        )
    app = create_app(cfg)
    quiet = getattr(a, "quiet", None)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=a.host,
            port=a.port,
            log_level="warning" if quiet else "info",
            access_log=bool(getattr(a, "verbose", False)),
            timeout_graceful_shutdown=a.graceful_timeout,
            root_path=a.root_path,
            proxy_headers=a.forwarded_allow_ips is not None,
            forwarded_allow_ips=a.forwarded_allow_ips,
            server_header=False,
        )
    )
    service = app.state.service

    def stop(message: str) -> None:
        server.should_exit = True

    service.on_load_error = stop
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind
        raise OSError(f"the server could not start on {a.host}:{a.port}") from e
    if service.status == "failed":
        raise ValueError(f"loading failed: {service.error}")
    if not server.started:
        raise OSError(f"the server could not start on {a.host}:{a.port}")
    return 0


SERVE_DESCRIPTION = (
    "Serve an embedding model, a reranker and Collections over HTTP (FastAPI on uvicorn): the "
    "text-embeddings-inference routes (/embed, /embed_sparse, /rerank, /tokenize, /health, "
    "/info, /metrics), OpenAI's /v1/embeddings and /v1/models, and /collections/NAME/search, "
    "upsert, delete and documents. OpenAPI at /openapi.json, docs at /docs. SIGTERM drains "
    'requests in flight and commits pending writes. Needs pip install "densparse[serve]".'
)


def add_serve_parser(sub, common=(), formatter=argparse.HelpFormatter) -> None:
    s = sub.add_parser(
        "serve",
        parents=list(common),
        formatter_class=formatter,
        help="HTTP service: embeddings, sparse vectors, reranking, Collection search",
        description=SERVE_DESCRIPTION,
    )
    s.add_argument("--model", metavar="DIR", help="ONNX embedding model directory or repo id")
    s.add_argument(
        "--collection",
        metavar="NAME=DIR",
        action="append",
        help="serve the Collection in DIR as NAME (repeatable)",
    )
    s.add_argument("--reranker", metavar="DIR", help="ONNX cross-encoder directory or repo id")
    s.add_argument(
        "--bm25",
        metavar="NAME=PATH",
        action="append",
        help="serve the BM25 vectors of a saved index (a densparse index directory or .bm25 "
        "file) as NAME on /embed_sparse (repeatable)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8080, help="port to bind")
    s.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require Authorization: Bearer KEY on every route but /health "
        f"(default: ${ENV_API_KEY}, else none)",
    )
    s.add_argument(
        "--max-batch-tokens",
        type=int,
        default=16384,
        help="tokens of concurrent requests merged into one model batch",
    )
    s.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=512,
        help="requests in flight beyond this are answered 429",
    )
    s.add_argument(
        "--max-client-batch-size",
        type=int,
        default=256,
        help="inputs, records or ids per request, else 413",
    )
    s.add_argument(
        "--payload-limit", type=int, default=2_000_000, help="request body bytes, else 413"
    )
    s.add_argument(
        "--read-only", action="store_true", help="open collections read-only; writes get 403"
    )
    s.add_argument(
        "--provider", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime provider"
    )
    s.add_argument(
        "--threads",
        type=int,
        help="onnxruntime intra-op threads per model batch (default: cores / --model-workers)",
    )
    s.add_argument(
        "--model-workers",
        type=int,
        help="model batches run at once per model (default: min(cores, 4) on CPU, 1 on CUDA)",
    )
    s.add_argument(
        "--commit-interval",
        type=float,
        default=0.0,
        help="seconds between commits of collection writes; 0 = commit every write before "
        "answering it (default 0)",
    )
    s.add_argument("--model-id", help="model name in /info and /v1/models (default: DIR's name)")
    s.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds SIGTERM waits for requests in flight",
    )
    s.add_argument("--root-path", default="", help="path prefix a reverse proxy serves us under")
    s.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="trust X-Forwarded-For/-Proto from these proxy addresses (comma separated)",
    )
    s.set_defaults(func=cmd_serve)
