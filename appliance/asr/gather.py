"""Gathering concurrent calls into batches, on the callers' own threads.

The decode scheduler's concurrency, without a thread of its own: each caller (an executor
thread of the daemon) queues its item; the oldest queued caller leads, waiting at most
`gather` seconds (stretched under load: STRETCH) for the other rooms that are due, then runs
the batch for everyone while the others wait on their results. While a batch runs, new
arrivals queue and leave together in the next one, so under load batches form by themselves
(continuous batching, the shape of sherpa-onnx's `decode_streams`). At most `concurrency`
batches run at once.

The leader waits only for rooms likely to ask before its window closes (`RoomTiming.due_by`):
a room that has just had its result (a room behind comes straight back: without this, two
busy rooms alternate, each arriving just after the other's batch left), or one whose usual
interval between calls brings it back in time. A room in a running batch (at most one
decode in flight per room) or quiet for a while is not waited for, so a lone room never waits.
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
# Under load a room answered by a batch of D seconds comes back behind by D and takes a while
# (its queued audio through the VAD on the event loop) to call again: the window stretches to
# this fraction of the last batch's duration (at most MAX_STRETCH), a small wait against a
# whole model call saved. Measured: a fixed 50 ms window left 6 busy rooms in batches of 2.
STRETCH = 0.3
MAX_STRETCH = 0.3  # seconds


@dataclass
class _Call(Generic[T]):
    item: T
    key: Hashable
    arrived: float
    done: bool = False
    result: object = None
    error: BaseException | None = None


@dataclass
class RoomTiming:
    """When a room asked and was answered (monotonic seconds): the leader's guess of its next call."""

    last_arrival: float | None = None
    last_done: float | None = None
    period: float | None = None  # moving average of the interval between its calls

    def arrive(self, now: float, active_for: float = ACTIVE_FOR) -> None:
        if self.last_arrival is not None and now - self.last_arrival <= active_for:  # not across a pause
            gap = now - self.last_arrival
            self.period = gap if self.period is None else 0.7 * self.period + 0.3 * gap
        self.last_arrival = now

    def due_by(self, now: float, deadline: float, horizon: float, active_for: float = ACTIVE_FOR) -> bool:
        """Whether this room (not queued, not in flight) is likely to call before `deadline`.

        `horizon`: how recent an answer counts as "just answered" (the gather window)."""
        if self.last_arrival is None or now - self.last_arrival > active_for:
            return False  # quiet: not speaking, or gone
        if self.last_done is not None and self.last_done >= self.last_arrival and now - self.last_done <= horizon:
            return True  # just answered: a room behind calls again at once
        if self.period is None:
            return True  # opened, no rhythm yet
        return self.last_arrival + self.period <= deadline


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
        self._rooms: dict[Hashable, RoomTiming] = {}
        self._last_seconds = 0.0  # duration of the last batch

    def join(self, key: Hashable) -> None:
        """A room that opened: expected to be due soon."""
        with self._cond:
            self._rooms[key] = RoomTiming(last_arrival=time.monotonic())

    def forget(self, key: Hashable) -> None:
        """A room that closed: the leader no longer waits for it."""
        with self._cond:
            self._rooms.pop(key, None)

    def _awaited(self, now: float, deadline: float) -> bool:
        """Whether a room not yet queued is worth waiting for (the lock is held)."""
        if len(self._pending) >= self.max_batch:
            return False
        queued = {c.key for c in self._pending}
        return any(key not in queued and key not in self._in_flight
                   and room.due_by(now, deadline, self.window, self.active_for)
                   for key, room in self._rooms.items())

    @property
    def window(self) -> float:
        """The gather window now: the configured one, stretched under load (see STRETCH)."""
        return max(self.gather, min(MAX_STRETCH, STRETCH * self._last_seconds)) if self.gather else 0.0

    def call(self, item: T, key: Hashable = None) -> R:
        """Run `item` in the next batch; returns its result or raises its error (only its own)."""
        now = time.monotonic()
        call = _Call(item, key, now)
        with self._cond:
            self._rooms.setdefault(key, RoomTiming()).arrive(now, self.active_for)
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
        deadline = call.arrived + self.window
        while (now := time.monotonic()) < deadline and self._awaited(now, deadline):
            self._cond.wait(deadline - now)
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
        done = time.monotonic()
        seconds = done - started
        with self._cond:
            self._last_seconds = seconds
            for c, result in zip(batch, results):
                if c.key in self._rooms:
                    self._rooms[c.key].last_done = done
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
