"""One room: source → VAD → streaming ASR → cue assembly → event log → fan-out.

`Pipeline` drives the audio stages in order on the event loop: every stage (the ASR
stream, the streaming diarizer) has the same contract — `push` (cheap, on the loop),
`due`, `update` (heavy, in the executor the daemon owns, awaited, never polled) and
`finish` — so the pipeline drives them the same way, one call at a time per room.
The replay harness runs the same Pipeline the daemon's `Session` runs. Sessions are
built whole by `appliance.build.build_session`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Protocol

from appliance.asr.latency import FirstShown, word_latencies
from appliance.asr.stream import AsrStream
from appliance.audio.frames import SILENCE_DBFS, AudioFrame, CaptureClock, level_dbfs
from appliance.config import SAMPLE_RATE, RoomAsr, SourceKind
from appliance.delivery.eventlog import EventLog
from appliance.delivery.fanout import Fanout
from appliance.diarization.labels import SpeakerLabeler, relabel
from appliance.diarization.streaming import StreamingDiarizer, StreamingUpdate
from appliance.diarization.voiceprints import EnrolledMatcher
from appliance.subtitles.assembler import CueAssembler
from appliance.subtitles.events import EventKind, SessionState, SubtitleEvent
from appliance.subtitles.names import SpeakerNames, name_problem
from appliance.subtitles.types import Decision

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    decision: Decision | None  # from the recognizer, or None
    emitted: float  # time.monotonic() when it was made
    audio_seconds: float  # audio received when it was made
    speakers: StreamingUpdate | None = None  # from the diarizer, or None


@dataclass
class Pipeline:
    source: AsyncIterable[list[AudioFrame]]
    asr: AsrStream
    executor: Executor | None = None
    clock: Callable[[], float] = time.monotonic
    diarizer: StreamingDiarizer | None = None  # per-session state on the shared diarization models
    on_decode: Callable[[float], None] | None = None  # wall seconds of each decode (metrics)
    capture: CaptureClock = field(default_factory=CaptureClock)
    # What the pipeline reports as it runs (metrics, health, the watchdog):
    audio_seconds: float = 0.0
    level_dbfs: float = SILENCE_DBFS
    realtime_factor: float = 0.0  # decode wall time per audio second, moving average
    busy_since: float | None = None  # monotonic start of the decode in progress (the watchdog's view)
    _decoded_audio: float = field(default=0.0, init=False)  # audio time of the last decode (realtime_factor)

    async def updates(self) -> AsyncIterator[Update]:
        """A source behind real time (its audio arrived while a decode ran) merges the steps of a
        batch into one decode at its end. Inside a batch, a speech region that ended is finalised
        before the next is pushed (or the next would move the buffer past it), and audio that came
        faster than real time (a file pushed flat out) is decoded at each step, as a fast replay is."""
        self._decoded_audio = 0.0
        async for frames in self.source:
            for i, frame in enumerate(frames):
                self.capture.add(frame)
                self.asr.push(frame.samples)
                if self.diarizer is not None:
                    self.diarizer.push(frame.samples)
                self.audio_seconds = frame.end / SAMPLE_RATE
                if i + 1 < len(frames) and (self.asr.region_ended or (_ahead(frames, i) and self.asr.due())):
                    async for update in self._advance():
                        yield update
            self.level_dbfs = level_dbfs(frames[-1].samples)
            async for update in self._advance():
                yield update
        yield Update(await self._run(self.asr.finish), self.clock(), self.audio_seconds)
        if self.diarizer is not None:
            yield Update(None, self.clock(), self.audio_seconds, await self._run(self.diarizer.finish))

    async def _advance(self) -> AsyncIterator[Update]:
        """The diarizer's due window first (so words that become final find their speakers), then a decode."""
        if self.diarizer is not None and self.diarizer.due():
            speakers = await self._run(self.diarizer.update)
            yield Update(None, self.clock(), self.audio_seconds, speakers)
        if self.asr.due():
            yield await self._decode()

    async def _decode(self) -> Update:
        started = self.clock()
        decision = await self._run(self.asr.update)
        took = self.clock() - started
        if self.on_decode:
            self.on_decode(took)
        advanced, self._decoded_audio = self.audio_seconds - self._decoded_audio, self.audio_seconds
        if advanced > 0:
            self.realtime_factor = 0.8 * self.realtime_factor + 0.2 * took / advanced
        return Update(decision, self.clock(), self.audio_seconds)

    @property
    def queued_seconds(self) -> float:
        """Audio the source holds that this pipeline has not taken in yet (0 for plain iterables)."""
        return getattr(self.source, "queued_seconds", 0.0)

    async def _run(self, work: Callable, *args):
        """Heavy work in the executor, awaited; `busy_since` lets the watchdog see a stuck call."""
        self.busy_since = self.clock()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)
        finally:
            self.busy_since = None


def _ahead(frames: list[AudioFrame], i: int) -> bool:
    """The batch's audio after frame `i` arrived in less than half its duration: faster than real time."""
    rest = (frames[-1].end - frames[i].end) / SAMPLE_RATE
    return frames[-1].captured_at - frames[i].captured_at < rest / 2


@dataclass(frozen=True)
class SessionInfo:
    """What every face reports of a session (the gRPC SessionInfo, the HTTP /sessions)."""

    session_id: str
    state: SessionState
    source: str
    audio_seconds: float
    last_seq: int
    subscribers: int
    final_cues: int
    message: str
    model: str = ""
    language: str = ""  # fixed, or detected from the room's speech ("" while not yet known)
    task: str = "transcribe"
    degradation: str = "none"  # what the overload policy took from the room: none, greedy, long_step, no_partials
    decode_lag_seconds: float = 0.0  # its decodes' recent delay in the shared scheduler (request to result)


class SessionHooks(Protocol):
    """What a session reports as it runs (the daemon's health and metrics implement it)."""

    def state_changed(self, session: Session) -> None: ...

    def word_latency(self, session_id: str, partial: float, final: float) -> None:
        """Per final word: seconds from its end being captured to being shown (partial) and final."""

    def label_latency(self, session_id: str, seconds: float) -> None:
        """Per word: seconds from its end being captured to its speaker label being final."""


class NoSessionHooks:
    def state_changed(self, session: Session) -> None: ...
    def word_latency(self, session_id: str, partial: float, final: float) -> None: ...
    def label_latency(self, session_id: str, seconds: float) -> None: ...


@dataclass
class Session:
    """A room as subscribers see it: its pipeline's events, sequenced, retained, fanned out."""

    session_id: str
    source_kind: SourceKind
    pipeline: Pipeline
    log: EventLog
    hooks: SessionHooks = field(default_factory=NoSessionHooks)
    fanout: Fanout = field(default_factory=Fanout)
    assembler: CueAssembler = field(default_factory=CueAssembler)
    asr: RoomAsr | None = None  # the model, language and task the room asked for
    log_transcripts: bool = False  # config log.transcripts: what people said is private unless asked
    release: Callable[[], None] | None = None  # at the end: give back the room's share of shared decoders
    names: SpeakerNames = field(default_factory=SpeakerNames)  # speaker labels -> names, applied when published
    enrolled: EnrolledMatcher | None = None  # names speakers whose voice matches an enrolled voiceprint
    state: SessionState = SessionState.STARTING
    message: str = ""
    _named_by_person: set[str] = field(default_factory=set, init=False)  # NameSpeaker's: no match renames them

    def publish(self, event: SubtitleEvent) -> SubtitleEvent:
        """An event as the pipeline made it (speaker labels), published with the speakers' names."""
        return self._emit(self.names.apply(event))

    def name_speaker(self, speaker: str, name: str) -> tuple[str, int]:
        """Name a speaker (a label, or the name it carries; empty `name`: back to its label):
        its past cues get SPEAKER_UPDATEs, later ones the name. Returns (label, updates published).
        KeyError: no such speaker; ValueError: the name cannot be one (name_problem)."""
        label = self.names.resolve(speaker)
        if label is None and self.pipeline.diarizer is not None and speaker in self.pipeline.diarizer.speakers:
            label = speaker  # heard, but in no cue yet
        if label is None:
            raise KeyError(speaker)
        if name and (problem := name_problem(name)):
            raise ValueError(problem)
        self._named_by_person.add(label)
        updates = self.names.rename(label, name)
        for event in updates:
            self._emit(event)
        return label, len(updates)

    def _match_enrolled(self) -> None:
        """Name the speakers whose voice now matches an enrolled voiceprint (once each)."""
        if self.enrolled is None or self.pipeline.diarizer is None:
            return
        given = {self.names.names[label] for label in self._named_by_person if label in self.names.names}
        for label, name in self.enrolled.matches(self.pipeline.diarizer.voices(), skip=self._named_by_person):
            if name not in given:
                for event in self.names.rename(label, name):
                    self._emit(event)

    def _emit(self, event: SubtitleEvent) -> SubtitleEvent:
        event = self.log.publish(event, self.language or "")
        self.fanout.publish(event)
        if self.log_transcripts and event.kind == EventKind.FINAL:
            _log.info("session %s final cue %s: %s", self.session_id, event.cue_id, event.text)
        return event

    @property
    def language(self) -> str | None:
        """The language the room is decoded in: fixed, or detected (None while not yet known)."""
        return self.pipeline.asr.language

    def info(self) -> SessionInfo:
        return SessionInfo(self.session_id, self.state, self.source_kind, self.pipeline.audio_seconds,
                           self.log.last_seq, len(self.fanout.subscribers), self.log.final_cues, self.message,
                           model=self.asr.model if self.asr else "", language=self.language or "",
                           task=self.pipeline.asr.task or "transcribe",
                           degradation=load.level.name.lower() if (load := self.pipeline.asr.load) else "none",
                           decode_lag_seconds=round(load.lag_seconds, 3) if load else 0.0)

    def set_state(self, state: SessionState, message: str = "") -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self.publish(SubtitleEvent(EventKind.SESSION_STATE, state=state, message=message))
            self.hooks.state_changed(self)

    def _label_latency(self, word_ends: list[float], settled_at: float) -> None:
        for end in word_ends:
            captured = self.pipeline.capture.capture_time(end)
            if captured is not None:
                self.hooks.label_latency(self.session_id, settled_at - captured)

    async def stop(self) -> None:
        """Stop the source; `run` then finalises what was heard and ends the session."""
        await self.pipeline.source.aclose()

    async def run(self) -> None:
        """Run the pipeline to the end of its source; subscribers are closed at the end."""
        self.set_state(SessionState.RUNNING)
        shown, labeler = FirstShown(), SpeakerLabeler()
        capture_time = self.pipeline.capture.capture_time
        try:
            async for update in self.pipeline.updates():
                if update.speakers is not None:
                    settled = labeler.update(update.speakers)
                    self._label_latency([w.end for w in settled.words], update.emitted)
                    for event in self.assembler.relabel(lambda words: relabel(words, settled.changed)):
                        self.publish(event)
                    self._match_enrolled()
                decision = update.decision
                if decision is None:
                    continue
                if self.pipeline.diarizer is not None:
                    final, settled_now = labeler.label(decision.final)
                    decision = replace(decision, final=final, partial=labeler.label(decision.partial, track=False)[0])
                    self._label_latency([w.end for w in settled_now], update.emitted)
                for event in self.assembler.update(decision):
                    self.publish(event)
                for partial, final in word_latencies(shown, decision.partial, decision.final, update.emitted,
                                                     capture_time):
                    self.hooks.word_latency(self.session_id, partial, final)
            for event in self.assembler.finish():
                self.publish(event)
            self.set_state(SessionState.ENDED, "end of audio")
        finally:
            self.fanout.close()
            if self.release is not None:
                self.release()
