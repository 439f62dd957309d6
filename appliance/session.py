"""One room: source → VAD → streaming ASR → events.

The session drives its stages in order on the event loop; the heavy decode runs in
the executor the daemon owns, awaited (never polled), one at a time per session.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal

from appliance.asr.policy import Decision
from appliance.asr.stream import AsrStream
from appliance.audio.frames import AudioFrame, CaptureClock
from appliance.subtitles.types import Word


@dataclass(frozen=True)
class TranscriptEvent:
    kind: Literal["partial", "final"]
    words: list[Word]
    emitted: float  # time.monotonic() when the event left the session
    stability: float = 1.0
    audio_end: float = 0.0  # audio seconds received when it was decided


@dataclass
class Session:
    session_id: str
    source: AsyncIterable[list[AudioFrame]]
    asr: AsrStream
    executor: Executor | None = None
    clock: Callable[[], float] = time.monotonic
    capture: CaptureClock = field(default_factory=CaptureClock)
    audio_seconds: float = 0.0

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        loop = asyncio.get_running_loop()
        async for frames in self.source:
            for frame in frames:
                self.capture.add(frame)
                self.asr.push(frame.samples)
                self.audio_seconds = frame.end / 16000
            if self.asr.due():
                decision = await loop.run_in_executor(self.executor, self.asr.update)
                for event in self._events(decision, partial=True):
                    yield event
        decision = await loop.run_in_executor(self.executor, self.asr.finish)
        for event in self._events(decision, partial=False):
            yield event

    def _events(self, decision: Decision, partial: bool) -> list[TranscriptEvent]:
        now, end = self.clock(), self.audio_seconds
        events = []
        if decision.final:
            events.append(TranscriptEvent("final", decision.final, now, 1.0, end))
        if partial:  # the partial always replaces the previous one, even when it becomes empty
            events.append(TranscriptEvent("partial", decision.partial, now, decision.stability, end))
        return events
