"""Gathering concurrent calls into batches, on the callers' own threads.

The decode scheduler's concurrency, without a thread of its own: each caller (an executor
thread of the daemon) queues its item; the oldest queued caller leads, waiting at most
`gather` seconds for the other rooms that are due, then runs the batch for everyone while
the others wait on their results. While a batch runs, new arrivals queue and leave
together in the next one, so under load batches form by themselves (continuous batching,
the shape of sherpa-onnx's `decode_streams`). At most `concurrency` batches run at once.

"Due" rooms are the keys seen in the last `active_for` seconds that are not already in a
running batch (a room has at most one decode in flight): the leader stops gathering as soon
as they have all arrived, so a lone room never waits.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ACTIVE_FOR = 2.0  # seconds: a room that decoded this recently is expected to be due again


@dataclass
class _Call(Generic[T]):
    item: T
    key: Hashable
    arrived: float
    done: bool = False
    result: object = None
    error: BaseException | None = None


@dataclass(frozen=True)
class BatchRun:
    """What one batch was: for metrics and the overload policy."""

    keys: tuple[Hashable, ...]
    waits: tuple[float, ...]  # seconds each call spent queued before its batch started
    started: float  # monotonic
    seconds: float  # wall time of the run


class Gatherer(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch: int,
        gather: float,
        concurrency: int = 1,
        active_for: float = ACTIVE_FOR,
        on_batch: Callable[[BatchRun], None] | None = None,
    ):
        if max_batch < 1 or concurrency < 1 or gather < 0:
            raise ValueError("max_batch and concurrency must be >= 1, gather >= 0")
        self._run = run
        self.max_batch, self.gather, self.concurrency, self.active_for = max_batch, gather, concurrency, active_for
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._pending: list[_Call[T]] = []
        self._running = 0
        self._in_flight: dict[Hashable, int] = {}
        self._seen: dict[Hashable, float] = {}

    def join(self, key: Hashable) -> None:
        """A room that opened: expected to be due soon."""
        with self._cond:
            self._seen[key] = time.monotonic()

    def forget(self, key: Hashable) -> None:
        """A room that closed: the leader no longer waits for it."""
        with self._cond:
            self._seen.pop(key, None)

    def _expected(self, now: float) -> int:
        due = sum(1 for k, t in self._seen.items() if now - t <= self.active_for and k not in self._in_flight)
        return max(1, min(self.max_batch, due))

    def call(self, item: T, key: Hashable = None) -> R:
        """Run `item` in the next batch; returns its result or raises its error (only its own)."""
        now = time.monotonic()
        call = _Call(item, key, now)
        with self._cond:
            self._seen[key] = now
            self._pending.append(call)
            self._cond.notify_all()
            while not call.done:
                if self._pending and self._pending[0] is call and self._running < self.concurrency:
                    batch = self._lead(call)
                    break
                self._cond.wait()
            else:
                return self._outcome(call)
        self._execute(batch)
        return self._outcome(call)

    def _lead(self, call: _Call[T]) -> list[_Call[T]]:
        """Called with the lock held by the oldest queued call: gather, then take the batch."""
        deadline = call.arrived + self.gather
        while len(self._pending) < self._expected(time.monotonic()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._running += 1
        for c in batch:
            self._in_flight[c.key] = self._in_flight.get(c.key, 0) + 1
        self._cond.notify_all()  # the next queued call may lead a batch of its own
        return batch

    def _execute(self, batch: list[_Call[T]]) -> None:
        started = time.monotonic()
        try:
            results = list(self._run([c.item for c in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
        except BaseException as exc:  # noqa: BLE001 - delivered to every caller of this batch
            results = [exc] * len(batch)
        seconds = time.monotonic() - started
        with self._cond:
            for c, result in zip(batch, results):
                if isinstance(result, BaseException):
                    c.error = result
                else:
                    c.result = result
                c.done = True
                self._in_flight[c.key] -= 1
                if not self._in_flight[c.key]:
                    del self._in_flight[c.key]
            self._running -= 1
            self._cond.notify_all()
        if self._on_batch is not None:
            self._on_batch(BatchRun(tuple(c.key for c in batch), tuple(started - c.arrived for c in batch),
                                    started, seconds))

    @staticmethod
    def _outcome(call: _Call[T]) -> R:
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]
