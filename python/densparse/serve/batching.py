"""Dynamic batching: requests that arrive while a model is busy are merged into the next
model batch, up to a token budget (and writes to a collection into one write).

Each model has one :class:`Batcher`: an asyncio queue of jobs (one per request) and one
worker thread that runs the model. The event loop only queues and hands out results; the
model runs in the thread (onnxruntime releases the GIL), so the loop keeps answering. There is
no waiting timer: a batch is whatever queued up while the previous one ran, so a lone request
goes straight through and a busy model gets big batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from densparse.serve.metrics import Metrics

log = logging.getLogger(__name__)

#: ``run(key, items) -> results``: one result per item, in order. Jobs with equal keys (the
#: same operation and options) share one model call.
RunFn = Callable[[Hashable, list], Sequence[Any]]


class QueueFull(Exception):
    """More jobs waiting than the queue holds (answered 429)."""


@dataclass
class _Job:
    key: Hashable
    items: list
    tokens: int
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Merge concurrent jobs into model batches of at most ``max_batch_tokens`` tokens (a
    single job bigger than that runs alone) and run them in ``workers`` threads (each takes
    the next batch when it is free)."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        max_batch_tokens: int,
        max_queue: int,
        metrics: Optional[Metrics] = None,
        workers: int = 1,
    ) -> None:
        if max_batch_tokens < 1 or max_queue < 1 or workers < 1:
            raise ValueError("max_batch_tokens, max_queue and workers must be >= 1")
        self.name = name
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: Optional[asyncio.Queue[_Job]] = None
        self.workers = workers
        self._tasks: list[asyncio.Task] = []
        # per worker: the job that did not fit its last batch, first in its next one
        self._carry: dict[int, _Job] = {}
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"densparse-{name}")

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker on the running event loop."""
        if not self._tasks:
            self._queue = asyncio.Queue(self.max_queue)
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._worker(w)) for w in range(self.workers)]

    async def stop(self) -> None:
        """Stop taking jobs, fail the waiting ones, and let the model thread finish."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        waiting = list(self._carry.values())
        self._carry.clear()
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))
        self._executor.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + len(self._carry)

    # ------------------------------------------------------------ jobs
    async def submit(self, key: Hashable, items: list, tokens: int) -> list:
        """Queue ``items`` (``tokens`` of model input in all) and wait for their results."""
        if self._queue is None:
            raise RuntimeError(f"batcher {self.name} is not running")
        if not items:
            return []
        fut = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(key, items, max(int(tokens), 1), fut))
        except asyncio.QueueFull:
            raise QueueFull(f"the {self.name} queue is full ({self.max_queue} requests)") from None
        self._gauge()
        return await fut

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue.labels(self.name).set(self.waiting)

    def _take(self, worker: int, first: _Job) -> list[_Job]:
        """``first`` plus queued jobs while they fit the budget; the first that does not fit
        waits for the next batch (order is kept)."""
        assert self._queue is not None
        jobs, total = [first], first.tokens
        while True:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if total + nxt.tokens > self.max_batch_tokens:
                self._carry[worker] = nxt
                break
            jobs.append(nxt)
            total += nxt.tokens
        return jobs

    async def _worker(self, worker: int) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = self._carry.pop(worker, None)
            if first is None:
                first = await self._queue.get()
            jobs = [j for j in self._take(worker, first) if not j.future.cancelled()]
            self._gauge()
            if not jobs:
                continue
            t0 = time.perf_counter()
            outcome = await loop.run_in_executor(self._executor, self._run_jobs, jobs)
            self._observe(jobs, time.perf_counter() - t0)
            for job, (ok, value) in zip(jobs, outcome):
                if job.future.done():  # the client went away
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _observe(self, jobs: list[_Job], seconds: float) -> None:
        m = self._metrics
        if m is None:
            return
        tokens = sum(j.tokens for j in jobs)
        m.batch_inputs.labels(self.name).observe(sum(len(j.items) for j in jobs))
        m.batch_tokens.labels(self.name).observe(tokens)
        m.batch_seconds.labels(self.name).observe(seconds)
        m.tokens.labels(self.name).inc(tokens)

    def _run_jobs(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """In the model thread: one model call per key over the items of its jobs; each job
        gets its slice of the results, or the error of its group."""
        groups: dict[Hashable, list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault(j.key, []).append(i)
        out: list[tuple[bool, Any]] = [(False, None)] * len(jobs)
        for key, members in groups.items():
            try:
                results = self._call(key, [x for i in members for x in jobs[i].items])
            except Exception as e:
                if len(members) == 1:
                    out[members[0]] = (False, e)
                    continue
                # one request's bad input must not fail the others merged with it: each
                # alone, so every request gets its own answer (or error)
                log.debug("batch %s failed; running its %d jobs one by one", key, len(members))
                for i in members:
                    try:
                        out[i] = (True, self._call(key, jobs[i].items))
                    except Exception as e1:  # handed to the waiting request
                        out[i] = (False, e1)
                continue
            pos = 0
            for i in members:
                n = len(jobs[i].items)
                out[i] = (True, results[pos : pos + n])
                pos += n
        return out

    def _call(self, key: Hashable, items: list) -> list:
        results = list(self._run(key, items))
        if len(results) != len(items):
            raise RuntimeError(f"{len(results)} results for {len(items)} inputs")
        return results
