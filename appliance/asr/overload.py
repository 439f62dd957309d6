"""Past capacity, degrade rooms by policy instead of letting every room lag (issue 14).

Pure: plain numbers in (each decode's lag, the decoder's busy intervals, times), decisions
out; no clock, no I/O. The scheduler feeds it and applies the decisions; the session reads
each room's `RoomLoad` to report it.

Levels, each cheaper than the last: greedy decodes everywhere (flushes and forced commits
too), then a doubled step (half the decodes), then a tripled step with no partials published
(a third of the decodes; words still become final by the time guard, about a step later).
Never "decode only where words end": under continuous speech that waits for the 15 s forced
commit, and the room's finals stop rather than slow. The newest room is degraded first, so
rooms already admitted keep their service; recovery goes the other way, oldest first, and only
when the decoder has headroom, so a recovery does not at once push the box back over.
One change at most every `hold` seconds: a change takes a few decodes to show in the lags.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import IntEnum


class Degradation(IntEnum):
    NONE = 0
    GREEDY = 1  # tentative decodes with beam 1
    LONG_STEP = 2  # and the step doubled
    NO_PARTIALS = 3  # a tripled step, and partials not published


@dataclass(frozen=True)
class OverloadConfig:
    lag_high: float = 1.0  # s from a decode request to its result: beyond it the room is falling behind
    lag_low: float = 0.6  # s: every room under it (and the decoder under busy_low) lets one recover
    busy_low: float = 0.75  # fraction of the decoder's time in use over `window`
    hold: float = 3.0  # s between two changes
    window: float = 5.0  # s over which decoder use is measured
    smoothing: float = 0.3  # weight of the newest lag in each room's moving average
    max_level: Degradation = Degradation.NO_PARTIALS

    def __post_init__(self) -> None:
        if not 0 < self.lag_low < self.lag_high:
            raise ValueError("overload: need 0 < lag_low < lag_high")
        if not 0 < self.busy_low <= 1 or not 0 < self.smoothing <= 1:
            raise ValueError("overload: busy_low and smoothing must be in (0, 1]")
        if self.hold < 0 or self.window <= 0:
            raise ValueError("overload: hold must be >= 0 and window > 0")


@dataclass
class RoomLoad:
    """One room's view of the shared decoder, as a session reports it."""

    level: Degradation = Degradation.NONE
    lag_seconds: float = 0.0  # moving average: decode request to result (queue, gather, compute)
    decodes: int = 0
    batched_decodes: int = 0  # decodes that shared their model call with other rooms
    degradations: int = 0  # times this room was moved to a cheaper level
    last_decode: float | None = None  # when its newest lag was observed (the policy's clock)

    @property
    def greedy(self) -> bool:
        return self.level >= Degradation.GREEDY

    @property
    def step_factor(self) -> float:
        return {Degradation.LONG_STEP: 2.0, Degradation.NO_PARTIALS: 3.0}.get(self.level, 1.0)

    @property
    def partials(self) -> bool:
        return self.level < Degradation.NO_PARTIALS


@dataclass
class OverloadPolicy:
    config: OverloadConfig = field(default_factory=OverloadConfig)
    concurrency: int = 1  # batches the decoder runs at once: full use is concurrency x window
    rooms: dict[Hashable, RoomLoad] = field(default_factory=dict)  # in admission order
    _busy: deque[tuple[float, float]] = field(default_factory=deque)
    _changed_at: float = float("-inf")

    def join(self, key: Hashable) -> RoomLoad:
        return self.rooms.setdefault(key, RoomLoad())

    def leave(self, key: Hashable) -> None:
        self.rooms.pop(key, None)

    def observe(self, key: Hashable, lag: float, batch_size: int = 1, now: float | None = None) -> None:
        room = self.join(key)
        room.last_decode = now
        a = self.config.smoothing
        room.lag_seconds = lag if room.decodes == 0 else (1 - a) * room.lag_seconds + a * lag
        room.decodes += 1
        room.batched_decodes += batch_size > 1

    def busy(self, start: float, end: float) -> None:
        """The decoder ran a batch from `start` to `end`."""
        self._busy.append((start, end))

    def utilization(self, now: float) -> float:
        """Fraction of the decoder's capacity in use over the last `window` seconds."""
        since = now - self.config.window
        while self._busy and self._busy[0][1] <= since:
            self._busy.popleft()
        used = sum(max(0.0, min(end, now) - max(start, since)) for start, end in self._busy)
        return used / (self.config.window * self.concurrency)

    def decide(self, now: float) -> tuple[Hashable, Degradation] | None:
        """At most one change: (room, its new level), applied to `rooms`; None when nothing changes."""
        config = self.config
        if now - self._changed_at < config.hold or not self.rooms:
            return None
        loads = list(self.rooms.items())
        # A degraded room decodes seldom, so its lag is as old as its last decode: only rooms that
        # decoded within the window speak for the box now (the decoder's use covers the others).
        recent = [r for _, r in loads if r.last_decode is None or now - r.last_decode <= config.window]
        if any(r.lag_seconds > config.lag_high for r in recent):
            for key, room in reversed(loads):  # newest first
                if room.level < config.max_level:
                    return self._set(key, room, Degradation(room.level + 1), now)
            return None
        if all(r.lag_seconds < config.lag_low for r in recent) and self.utilization(now) < config.busy_low:
            for key, room in loads:  # oldest first
                if room.level > Degradation.NONE:
                    return self._set(key, room, Degradation(room.level - 1), now)
        return None

    def _set(self, key: Hashable, room: RoomLoad, level: Degradation, now: float) -> tuple[Hashable, Degradation]:
        room.degradations += level > room.level
        room.level = level
        self._changed_at = now
        return key, level
