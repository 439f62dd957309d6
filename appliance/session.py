"""One room: source → VAD → streaming ASR → cue assembly → event log → fan-out.

`Pipeline` drives the audio stages in order on the event loop; the heavy decode runs
in the executor the daemon owns, awaited (never polled), one at a time per room.
The replay harness runs the same Pipeline the daemon's `Session` runs.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from appliance.asr.policy import Decision
from appliance.asr.stream import AsrStream
from appliance.audio.frames import AudioFrame, CaptureClock
from appliance.config import SAMPLE_RATE
from appliance.service.eventlog import EventLog
from appliance.service.fanout import Fanout
from appliance.subtitles.assembler import CueAssembler
from appliance.subtitles.events import EventKind, SessionState, SubtitleEvent


@dataclass(frozen=True)
class Update:
    decision: Decision
    emitted: float  # time.monotonic() when the decision was made
    audio_seconds: float  # audio received when it was made


@dataclass
class Pipeline:
    source: AsyncIterable[list[AudioFrame]]
    asr: AsrStream
    executor: Executor | None = None
    clock: Callable[[], float] = time.monotonic
    capture: CaptureClock = field(default_factory=CaptureClock)
    audio_seconds: float = 0.0
    heartbeat: Callable[[], None] | None = None  # called once per loop turn (watchdog)

    async def updates(self) -> AsyncIterator[Update]:
        loop = asyncio.get_running_loop()
        async for frames in self.source:
            for frame in frames:
                self.capture.add(frame)
                self.asr.push(frame.samples)
                self.audio_seconds = frame.end / SAMPLE_RATE
            if self.heartbeat:
                self.heartbeat()
            if self.asr.due():
                decision = await loop.run_in_executor(self.executor, self.asr.update)
                yield Update(decision, self.clock(), self.audio_seconds)
        decision = await loop.run_in_executor(self.executor, self.asr.finish)
        yield Update(decision, self.clock(), self.audio_seconds)


@dataclass
class Session:
    """A room as subscribers see it: its pipeline's events, sequenced, retained, fanned out."""

    session_id: str
    source_kind: str  # "microphone" | "push" | "replay"
    pipeline: Pipeline
    log: EventLog
    fanout: Fanout = field(default_factory=Fanout)
    assembler: CueAssembler = field(default_factory=CueAssembler)
    state: SessionState = SessionState.STARTING
    message: str = ""
    language: str | None = None
    on_state: Callable[[Session], None] | None = None  # health and metrics follow the state

    def publish(self, event: SubtitleEvent) -> SubtitleEvent:
        event = self.log.publish(event)
        self.fanout.publish(event)
        return event

    def set_state(self, state: SessionState, message: str = "") -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self.publish(SubtitleEvent(EventKind.SESSION_STATE, state=state, message=message))
            if self.on_state:
                self.on_state(self)

    async def stop(self) -> None:
        """Stop the source; `run` then finalises what was heard and ends the session."""
        await self.pipeline.source.aclose()

    async def run(self) -> None:
        """Run the pipeline to the end of its source; subscribers are closed at the end."""
        self.set_state(SessionState.RUNNING)
        try:
            async for update in self.pipeline.updates():
                for event in self.assembler.update(update.decision):
                    self.publish(event)
            for event in self.assembler.finish():
                self.publish(event)
            self.set_state(SessionState.ENDED, "end of audio")
        finally:
            self.fanout.close()
