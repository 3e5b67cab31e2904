"""Dynamic batching for the HTTP service: the images of concurrent requests share one forward pass.

Requests hand their network inputs to `Batcher.read` on the event loop. One task takes every image
waiting (up to `max_batch`) as soon as the model is free and runs the model in its own worker thread,
off the event loop. It waits at most `max_wait_ms` for more only while other requests are still being
received or decoded (`receiving`): a lone request never waits, and under load the images that arrive
during one forward pass share the next.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lstm_ocr.reader import Constraints, Reader, Reading

log = logging.getLogger("lstm_ocr_serve")


@dataclass
class _Job:
    inputs: np.ndarray  # (n, width, height) uint8
    constraints: Constraints
    future: asyncio.Future


class Batcher:
    """Runs `reader` on batches of the images that requests submit; `run()` is its task."""

    def __init__(self, reader: Reader, max_batch: int, max_wait_ms: float):
        self.reader, self.max_batch, self.max_wait = reader, max_batch, max_wait_ms / 1000
        self._queue: deque[tuple[float, _Job]] = deque()
        self._changed = asyncio.Event()
        self._receiving = 0
        self._stopping = False
        self._model = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batches = self.images = 0

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Marks a request whose images are being received or decoded: a batch may wait for them."""
        self._receiving += 1
        try:
            yield
        finally:
            self._receiving -= 1
            self._changed.set()

    async def read(self, inputs: np.ndarray, constraints: Constraints) -> list[Reading]:
        """The readings of network inputs (n, width, height), once a batch has run them."""
        loop = asyncio.get_running_loop()
        job = _Job(inputs, constraints, loop.create_future())
        self._queue.append((loop.time(), job))
        self._changed.set()
        return await job.future

    async def _wait(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _take(self) -> list[_Job] | None:
        loop = asyncio.get_running_loop()
        while not self._queue:
            if self._stopping:
                return None
            await self._wait(None)
        deadline = self._queue[0][0] + self.max_wait
        while (sum(len(job.inputs) for _, job in self._queue) < self.max_batch and self._receiving > 0
               and not self._stopping and loop.time() < deadline):
            await self._wait(deadline - loop.time())
        jobs, count = [], 0
        while self._queue and (not jobs or count + len(self._queue[0][1].inputs) <= self.max_batch):
            job = self._queue.popleft()[1]
            if job.future.done():  # its request was abandoned (cancelled): nothing to compute
                continue
            jobs.append(job)
            count += len(job.inputs)
        return jobs

    def _run_model(self, jobs: list[_Job]) -> list[list[Reading]]:
        """In the model's thread: one forward pass (or several of `reader.batch_size`), then one decoding
        of the jobs that share constraints (most share none): decoding costs per call, not per image."""
        inputs = np.concatenate([job.inputs for job in jobs])
        size = self.reader.batch_size
        probs = np.concatenate([self.reader.probabilities(inputs[start:start + size])
                                for start in range(0, len(inputs), size)])
        ends = np.cumsum([len(job.inputs) for job in jobs])
        rows = [np.arange(end - len(job.inputs), end) for job, end in zip(jobs, ends, strict=True)]
        found: list[list[Reading]] = [[] for _ in jobs]
        for constraints in dict.fromkeys(job.constraints for job in jobs):
            sharing = [k for k, job in enumerate(jobs) if job.constraints == constraints]
            readings = self.reader.decode(probs[np.concatenate([rows[k] for k in sharing])], constraints)
            for k in sharing:
                found[k], readings = readings[:len(rows[k])], readings[len(rows[k]):]
        return found

    async def run(self) -> None:
        """Serve batches until `stop()`, finishing what is queued."""
        loop = asyncio.get_running_loop()
        while (jobs := await self._take()) is not None:
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._model, self._run_model, jobs)
            except Exception as error:  # handed to each waiting request, which answers 500; logged once here
                log.error("the model failed on a batch of %d images: %s: %s", sum(len(job.inputs) for job in jobs),
                          type(error).__name__, " ".join(str(error).split())[:300])
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
            else:
                for job, readings in zip(jobs, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(readings)
            self.batches += 1
            self.images += sum(len(job.inputs) for job in jobs)
        self._model.shutdown(wait=False)

    def stop(self) -> None:
        """Let `run()` end once the queue is empty."""
        self._stopping = True
        self._changed.set()
