"""One room: source → VAD → streaming ASR → cue assembly → event log → fan-out.

`Pipeline` drives the audio stages in order on the event loop; the heavy decode runs
in the executor the daemon owns, awaited (never polled), one at a time per room.
The replay harness runs the same Pipeline the daemon's `Session` runs.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from appliance.asr.latency import FirstShown, word_latencies
from appliance.asr.policy import Decision
from appliance.asr.stream import AsrStream
from appliance.audio.frames import AudioFrame, CaptureClock
from appliance.config import SAMPLE_RATE
from appliance.service.eventlog import EventLog
from appliance.service.fanout import Fanout
from appliance.subtitles.assembler import CueAssembler
from appliance.subtitles.events import EventKind, SessionState, SubtitleEvent

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    decision: Decision
    emitted: float  # time.monotonic() when the decision was made
    audio_seconds: float  # audio received when it was made


def level_dbfs(samples) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return max(-120.0, 20.0 * math.log10(rms)) if rms > 0 else -120.0


@dataclass
class Pipeline:
    source: AsyncIterable[list[AudioFrame]]
    asr: AsrStream
    executor: Executor | None = None
    clock: Callable[[], float] = time.monotonic
    capture: CaptureClock = field(default_factory=CaptureClock)
    audio_seconds: float = 0.0
    level_dbfs: float = -120.0
    realtime_factor: float = 0.0  # decode wall time per audio second, moving average
    busy_since: float | None = None  # monotonic start of the decode in progress (the watchdog's view)
    on_decode: Callable[[float], None] | None = None  # wall seconds of each decode (metrics)

    async def updates(self) -> AsyncIterator[Update]:
        loop = asyncio.get_running_loop()
        decoded_audio = 0.0
        async for frames in self.source:
            for frame in frames:
                self.capture.add(frame)
                self.asr.push(frame.samples)
            self.audio_seconds = frames[-1].end / SAMPLE_RATE
            self.level_dbfs = level_dbfs(frames[-1].samples)
            if self.asr.due():
                started = self.busy_since = self.clock()
                decision = await loop.run_in_executor(self.executor, self.asr.update)
                self.busy_since = None
                took = self.clock() - started
                if self.on_decode:
                    self.on_decode(took)
                advanced, decoded_audio = self.audio_seconds - decoded_audio, self.audio_seconds
                if advanced > 0:
                    self.realtime_factor = 0.8 * self.realtime_factor + 0.2 * took / advanced
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
    on_latency: Callable[[str, float, float], None] | None = None  # (session, partial, final) per final word
    log_transcripts: bool = False  # config log.transcripts: what people said is private unless asked

    def publish(self, event: SubtitleEvent) -> SubtitleEvent:
        event = self.log.publish(event)
        self.fanout.publish(event)
        if self.log_transcripts and event.kind == EventKind.FINAL:
            _log.info("session %s final cue %s: %s", self.session_id, event.cue_id, event.text)
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
        shown = FirstShown()
        try:
            async for update in self.pipeline.updates():
                for event in self.assembler.update(update.decision):
                    self.publish(event)
                if self.on_latency:
                    decision = update.decision
                    for partial, final in word_latencies(shown, decision.partial, decision.final, update.emitted,
                                                         self.pipeline.capture.capture_time):
                        self.on_latency(self.session_id, partial, final)
            for event in self.assembler.finish():
                self.publish(event)
            self.set_state(SessionState.ENDED, "end of audio")
        finally:
            self.fanout.close()
