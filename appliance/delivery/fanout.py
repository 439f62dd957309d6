"""Fan-out of a session's events to its subscribers, each with its own bounded queue.

Publishing never waits: a subscriber that falls behind has its PARTIALs coalesced
(only the latest of each cue is kept, and none once the cue's FINAL is queued) and, once its
backlog of other events passes a bound (by count, by encoded bytes, or by the age of the
oldest event it has not taken, a write in progress included), is marked overflowed and ended
by its handler (RESOURCE_EXHAUSTED; it can resume by seq). The age bound is also checked by
`Fanout.expire`, so a subscriber that stalls when nothing more is published (the session
has ended, say) is ended too. The pipeline and the other subscribers never wait for it.
"""
from __future__ import annotations

import asyncio
import operator
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from appliance.delivery.eventlog import EventLog
from appliance.subtitles.events import EventKind, SubtitleEvent


_seq = operator.attrgetter("seq")


class SlowSubscriber(Exception):
    """The subscriber's backlog passed its bound."""


class SubscriptionEnded(Exception):
    """The subscription was ended from outside (its push stream failed, say); the message says why."""


@dataclass(frozen=True)
class Backlog:
    """How far a subscriber may fall behind before it is ended."""

    events: int = 256  # non-partial events queued
    seconds: float = 10.0  # age of the oldest event not yet taken, or of the write in progress
    bytes: int = 1 << 20  # queued events, as `size` measures them


class Subscriber:
    def __init__(self, include_partials: bool, max_backlog: int | Backlog,
                 size: Callable[[SubtitleEvent], int] = lambda event: 0,
                 clock: Callable[[], float] = time.monotonic):
        self.include_partials = include_partials
        self.limits = max_backlog if isinstance(max_backlog, Backlog) else Backlog(events=max_backlog)
        self.max_backlog = self.limits.events
        self.size = size  # the handler's measure of an event (its wire bytes)
        self.clock = clock
        self._queue: deque[SubtitleEvent] = deque()
        self._queued_at: deque[tuple[float, int]] = deque()  # (when offered, size) of each queued event
        self.queued_bytes = 0
        self._partials: dict[str, SubtitleEvent] = {}  # latest unsent PARTIAL per open cue
        self._partial_since: dict[str, float] = {}  # when each cue's first untaken PARTIAL came
        self.writing_since: float | None = None  # set by the handler while a write is in progress
        # What `next` awaits while nothing is queued: a bare future, woken once. At 1,000
        # subscribers an asyncio.Event per subscriber (its waiter list, loop lookup and a new
        # future per wait) was a measurable part of each event's fan-out.
        self._waiter: asyncio.Future[None] | None = None
        self.failure: Exception | None = None  # set: the handler must end the call
        self.on_failure: Callable[[Exception], None] | None = None  # the handler's hook into `fail`
        self.closed = False
        self.coalesced = 0  # partials dropped because a newer one replaced them
        self.last_seq = 0  # last seq handed to the client

    def offer(self, event: SubtitleEvent, now: float | None = None) -> None:
        # Per cue, not per subscriber: one update can show words in two cues (one filled up,
        # the next begun), and the first cue's words must not wait for its FINAL.
        if self.failure is not None:
            return
        now = self.clock() if now is None else now
        if event.kind == EventKind.PARTIAL:
            if not self.include_partials:
                return
            if self._partials.pop(event.cue_id, None) is not None:
                self.coalesced += 1
            self._partials[event.cue_id] = event
            self._partial_since.setdefault(event.cue_id, now)
        else:
            size = self.size(event)
            if len(self._queue) >= self.limits.events:
                self.fail(SlowSubscriber(f"{self.backlog} events behind"))
                return
            if self.queued_bytes + size > self.limits.bytes:
                self.fail(SlowSubscriber(f"{self.queued_bytes + size} bytes behind"))
                return
            if event.kind == EventKind.FINAL and self._partials.pop(event.cue_id, None) is not None:
                self._partial_since.pop(event.cue_id, None)
                self.coalesced += 1  # the FINAL shows all its words
            self._queue.append(event)
            self._queued_at.append((now, size))
            self.queued_bytes += size
        if not self.expire(now):
            self._wake()

    def lag(self, now: float) -> float:
        """Age of the oldest event not yet taken, or of the write in progress (0: none waiting)."""
        oldest = self._queued_at[0][0] if self._queued_at else now
        if self.writing_since is not None and self.writing_since < oldest:
            oldest = self.writing_since
        if self._partial_since:
            oldest = min(oldest, *self._partial_since.values())
        return max(0.0, now - oldest)

    def expire(self, now: float) -> bool:
        """End the subscriber if what waits for it is older than the bound; True if it did."""
        if self.failure is None and self.lag(now) > self.limits.seconds:
            self.fail(SlowSubscriber(f"{self.lag(now):.1f} s behind"))
        return self.failure is not None

    def close(self) -> None:
        self.closed = True
        self._wake()

    def fail(self, failure: Exception) -> None:
        self.failure = failure
        if self.on_failure is not None:
            self.on_failure(failure)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def next(self) -> SubtitleEvent | None:
        """The next event in seq order; None once closed and drained."""
        while True:
            if self.failure is not None:
                raise self.failure
            head = self._queue[0] if self._queue else None
            partial = min(self._partials.values(), key=_seq) if self._partials else None
            if partial is not None and partial.seq <= self.last_seq:
                del self._partials[partial.cue_id]  # superseded by what was already sent
                self._partial_since.pop(partial.cue_id, None)
                continue
            if head is not None and (partial is None or head.seq < partial.seq):
                event = self._queue.popleft()
                self.queued_bytes -= self._queued_at.popleft()[1]
            elif partial is not None:
                event = self._partials.pop(partial.cue_id)
                self._partial_since.pop(partial.cue_id, None)
            elif self.closed:
                return None
            else:
                # Nothing queued and the check above ran in this loop turn: whatever is offered
                # next comes after this waiter exists and wakes it.
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
                continue
            self.last_seq = event.seq
            return event


class Fanout:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.closed = False

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        if self.closed:  # the session has ended: replay what is retained, then end
            subscriber.close()

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, event: SubtitleEvent) -> None:
        now = time.monotonic()
        for subscriber in self.subscribers:
            subscriber.offer(event, now)

    def close(self) -> None:
        self.closed = True
        for subscriber in self.subscribers:
            subscriber.close()

    def expire(self, now: float) -> int:
        """End the subscribers past their age bound (see Subscriber.expire); how many were."""
        return sum(subscriber.expire(now) for subscriber in list(self.subscribers)
                   if subscriber.failure is None)

def subscribe(log: EventLog, fanout: Fanout, from_seq: int, subscriber: Subscriber) -> list[SubtitleEvent]:
    """Join `subscriber` to the session; returns the retained events after `from_seq` it must
    be sent first (partials only if it takes them). ResumeError if `from_seq` cannot be honoured.

    The backlog is read and the subscriber added in the same loop turn: nothing published
    falls in between, and nothing is in both.
    """
    backlog = log.since(from_seq)
    fanout.add(subscriber)
    return [e for e in backlog if e.kind != EventKind.PARTIAL or subscriber.include_partials]


class SlowWriteGuard:
    """Gets a handler out of a write that a subscriber marked slow will never finish.

    A client that stops reading blocks the face's write (HTTP/2 or TCP flow control). When
    the fan-out marks its subscriber slow during such a write, the handler's task is cancelled
    out of it and ends the call (RESOURCE_EXHAUSTED, or the end of an SSE stream). Other
    failures (a bad push) wait for the write: that client is reading. One guard per call, not
    a task raced against every write: at 1,000 subscribers per-write tasks were a large part
    of the fan-out cost.
    """

    def __init__(self, subscriber: Subscriber):
        self.task = asyncio.current_task()
        self.subscriber = subscriber
        self.fired = False
        subscriber.on_failure = self._failed

    def writing(self) -> SlowWriteGuard:
        """Around each write (`with guard.writing():`): while it is in progress the subscriber's
        age bound counts from its start. The guard is its own context manager: a generator-based
        one per write cost more than the rest of this bookkeeping at 1,000 subscribers."""
        return self

    def __enter__(self) -> None:
        self.subscriber.writing_since = self.subscriber.clock()

    def __exit__(self, *exc_info: object) -> None:
        self.subscriber.writing_since = None

    def _failed(self, failure: Exception) -> None:
        if self.subscriber.writing_since is not None and isinstance(failure, SlowSubscriber) and not self.fired:
            self.fired = True
            self.task.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True if it was the guard's alone (now undone), False if the call's."""
        return self.fired and self.task.uncancel() == 0
