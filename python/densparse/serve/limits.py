"""Authentication, limits and errors: the checks every request passes before a route runs,
and the one JSON shape of every error, ``{"error": ..., "error_type": ...}``."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Optional

from densparse.serve.metrics import Metrics

#: Paths answered without an API key (load balancers probe them).
OPEN_PATHS = frozenset({"/health"})


class ServiceError(Exception):
    """An error answered with ``status`` and ``{"error": message, "error_type": kind}``."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_body(message: str, kind: str) -> bytes:
    return json.dumps({"error": message, "error_type": kind}).encode()


def check_api_key(header: Optional[str], key: str) -> bool:
    """``Authorization: Bearer KEY``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())


class Guard:
    """ASGI middleware, outermost: API key (401), requests in flight (429), body size (413),
    and the per-route request metrics. Pure ASGI, so a request it turns away costs no
    routing and no body parsing."""

    def __init__(
        self,
        app: Any,
        *,
        api_key: Optional[str],
        max_concurrent_requests: int,
        payload_limit: int,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.api_key = api_key or None
        self.max_in_flight = max_concurrent_requests
        self.payload_limit = payload_limit
        self.metrics = metrics
        self.in_flight = 0  # only touched on the event loop thread

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        path = scope.get("path", "")
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            refusal = self._refuse(scope, path)
            if refusal is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                receive, refusal = await self._read_body(scope, receive)
            if refusal is not None:
                await _respond(send_status, *refusal)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            route = scope.get("route")
            # the route's template, not the raw path: unknown paths must not grow the labels
            label = getattr(route, "path", None) or ("/health" if path == "/health" else "other")
            method = scope.get("method", "")
            self.metrics.requests.labels(label, method, str(status[0])).inc()
            self.metrics.latency.labels(label, method).observe(time.perf_counter() - t0)

    def _refuse(self, scope, path: str) -> Optional[tuple[int, str, str, dict]]:
        if self.api_key and path not in OPEN_PATHS:
            header = None
            for k, v in scope.get("headers", ()):
                if k == b"authorization":
                    header = v.decode("latin-1")
                    break
            if not check_api_key(header, self.api_key):
                return (
                    401,
                    "missing or wrong API key: send Authorization: Bearer KEY",
                    "Unauthorized",
                    {"www-authenticate": "Bearer"},
                )
        if self.in_flight > self.max_in_flight and path not in OPEN_PATHS:
            return (
                429,
                f"Model is overloaded: more than {self.max_in_flight} requests in flight",
                "Overloaded",
                {"retry-after": "1"},
            )
        return None

    async def _read_body(self, scope, receive):
        """The whole body (at most ``payload_limit`` bytes), replayed to the app; a longer one
        is refused before it is parsed."""
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = 0
                if declared > self.payload_limit:
                    return receive, self._too_big()
                break
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected
                return receive, None
            body = message.get("body", b"")
            size += len(body)
            if size > self.payload_limit:
                return receive, self._too_big()
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = [False]

        async def replay():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return replay, None

    def _too_big(self) -> tuple[int, str, str, dict]:
        return (
            413,
            f"payload over the limit of {self.payload_limit} bytes",
            "Validation",
            {},
        )


async def _respond(send, status: int, message: str, kind: str, headers: dict) -> None:
    body = error_body(message, kind)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
