"""Fan-out of a session's events to its subscribers, each with its own bounded queue.

Publishing never waits: a subscriber that falls behind has its PARTIALs coalesced
(only the latest is kept) and, once its backlog of other events passes the bound, is
marked overflowed and ended by its handler (RESOURCE_EXHAUSTED; it can resume by
seq). The pipeline and the other subscribers never wait for it.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from appliance.subtitles.events import EventKind, SubtitleEvent


class SlowSubscriber(Exception):
    """The subscriber's backlog passed its bound."""


class SubscriptionEnded(Exception):
    """The subscription was ended from outside (its push stream failed, say); the message says why."""


class Subscriber:
    def __init__(self, include_partials: bool, max_backlog: int):
        self.include_partials = include_partials
        self.max_backlog = max_backlog
        self._queue: deque[SubtitleEvent] = deque()
        self._partial: SubtitleEvent | None = None
        self._wake = asyncio.Event()
        self.failure: Exception | None = None  # set: the handler must end the call
        self.on_failure: Callable[[Exception], None] | None = None  # the handler's hook into `fail`
        self.closed = False
        self.coalesced = 0  # partials dropped because a newer one replaced them
        self.last_seq = 0  # last seq handed to the client

    def offer(self, event: SubtitleEvent) -> None:
        if event.kind == EventKind.PARTIAL:
            if not self.include_partials:
                return
            if self._partial is not None:
                self.coalesced += 1
            self._partial = event
        elif len(self._queue) >= self.max_backlog:
            if self.failure is None:
                self.fail(SlowSubscriber(f"{self.backlog} events behind"))
            return
        else:
            self._queue.append(event)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def fail(self, failure: Exception) -> None:
        self.failure = failure
        if self.on_failure is not None:
            self.on_failure(failure)
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def next(self) -> SubtitleEvent | None:
        """The next event in seq order; None once closed and drained."""
        while True:
            if self.failure is not None:
                raise self.failure
            head = self._queue[0] if self._queue else None
            partial = self._partial
            if partial is not None and partial.seq <= self.last_seq:
                partial = self._partial = None  # superseded by what was already sent
            if head is not None and (partial is None or head.seq < partial.seq):
                event = self._queue.popleft()
            elif partial is not None:
                event, self._partial = partial, None
            elif self.closed:
                return None
            else:
                self._wake.clear()
                await self._wake.wait()
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
        for subscriber in self.subscribers:
            subscriber.offer(event)

    def close(self) -> None:
        self.closed = True
        for subscriber in self.subscribers:
            subscriber.close()
