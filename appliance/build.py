"""Building the daemon's parts whole: the shared models once, then one session per room.

The composition root (daemon.py) calls these; nothing here starts tasks or binds ports.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Protocol

from appliance.asr.batch import DecodeScheduler
from appliance.asr.faults import StallingRecognizer
from appliance.asr.recognizer import WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.config import AppConfig, AsrConfig, ConfigError, RoomAsr, SourceKind
from appliance.delivery.eventlog import EventLog
from appliance.diarization.models import DiarizationModels
from appliance.diarization.models import load_models as load_diarization
from appliance.diarization.streaming import StreamingDiarizer
from appliance.diarization.voiceprints import EnrolledMatcher, Voiceprint
from appliance.inference.manifest import ModelSpec, load_manifest
from appliance.inference.whisper import load_whisper, whisper_model_dir
from appliance.session import Pipeline, Session, SessionHooks
from appliance.subtitles.names import SpeakerNames
from appliance.subtitles.events import SessionState
from appliance.vad.silero import SileroVad

# A source's state listener: (state, reason), state "UP" or "DOWN" (a microphone's ups and downs).
StateListener = Callable[[str, str], None]
_ROOM_STATE = {"UP": SessionState.RUNNING, "DOWN": SessionState.UNAVAILABLE}


class Recognizers:
    """One recognizer per model, loaded on first use and shared by every room that uses it.

    `get` may run in an executor thread (a pushed stream naming a model not loaded yet): the
    lock makes two rooms asking at once load it once."""

    def __init__(self, config: AsrConfig, manifest: dict[str, ModelSpec]):
        self.config = config
        self.manifest = manifest
        self._loaded: dict[str, WhisperRecognizer | DecodeScheduler] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> WhisperRecognizer | DecodeScheduler:
        with self._lock:
            if model not in self._loaded:
                config = replace(self.config, model=model)
                recognizer = WhisperRecognizer(load_whisper(config, self.manifest), config)
                # asr.batch_size > 1: one scheduler per model batches its rooms' due decodes (issue 14).
                self._loaded[model] = (DecodeScheduler.for_recognizer(recognizer) if config.batch_size > 1
                                       else recognizer)
            return self._loaded[model]

    def loaded(self, model: str) -> bool:
        return model in self._loaded

    def check(self, room: RoomAsr, key: str) -> None:
        """ConfigError naming `key` if the room asks its model for what it cannot do."""
        problem = self.get(room.model).cannot(room.language, room.task)
        if problem:
            raise ConfigError(f"{key}: {room.model} {problem}")

    def info(self, model: str) -> tuple[str, str, str]:
        """(name, sha256 of model.bin, where it runs) for the model metric."""
        spec = self.manifest.get(model)
        config = replace(self.config, model=model)
        name = model if spec else str(whisper_model_dir(config))
        return name, spec.files.get("model.bin", "") if spec else "", f"ctranslate2-{config.device}-{config.compute_type}"


@dataclass
class Models:
    """Loaded once per daemon, shared by every session: the recognizers of the rooms' models (the
    configured ones at start, others on first use), VAD, and the diarization models."""

    recognizers: Recognizers
    vad: SileroVad
    info: list[tuple[str, str, str]]  # (name, sha256 of its main file, where it runs), for metrics
    diarization: DiarizationModels | None = None

    @property
    def recognizer(self) -> WhisperRecognizer | DecodeScheduler:
        """The default model's ([asr] model)."""
        return self.recognizers.get(self.recognizers.config.model)

    @classmethod
    def load(cls, config: AppConfig) -> Models:
        manifest = load_manifest()
        recognizers = Recognizers(config.asr, manifest)
        for room in (None, *config.sessions):  # every configured room's model loaded now, and checked
            recognizers.check(config.room_asr(room), "asr.model" if room is None else f"sessions.{room.id}.model")
        vad = SileroVad.load(config.inference, manifest)
        info = [recognizers.info(model) for model in dict.fromkeys(
            config.room_asr(room).model for room in (None, *config.sessions))]
        info.append(("silero-vad", manifest["silero-vad"].files["silero_vad_v6.onnx"], vad.provider))
        diarization = None
        if config.diarization.live:
            diarization = load_diarization(config.diarization, config.inference, manifest)
            d = config.diarization
            info += [(d.segmentation_model, manifest[d.segmentation_model].files[d.segmentation_file], vad.provider),
                     (d.embedding_model, manifest[d.embedding_model].files[d.embedding_file], vad.provider)]
        return cls(recognizers, vad, info, diarization)


class DecodeHooks(SessionHooks, Protocol):
    """SessionHooks plus the wall time of each decode (the daemon's metrics)."""

    def decode_took(self, session_id: str, seconds: float) -> None: ...


def build_session(
    session_id: str,
    kind: SourceKind,
    make_source: Callable[[StateListener], object],
    config: AppConfig,
    models: Models,
    executor: Executor,
    hooks: DecodeHooks,
    unstall: threading.Event,
    room: RoomAsr | None = None,
    voiceprints: Callable[[], Sequence[Voiceprint]] | None = None,
) -> Session:
    """One room, whole: its source (told how to report its state), VAD, ASR stream on the room's
    model in its language (fixed, or detected by a LanguagePolicy) and task, streaming diarizer
    when live diarization is on, event log and hooks. `room` defaults to [asr]'s; its model must
    be loaded (Models.recognizers.get) and checked before. `unstall` ends injected stalls
    (debug.stall_pipeline_after) at shutdown. `voiceprints`: the enrolled ones (the store's
    snapshot), when enrolment is on and the room diarizes."""
    room = room or config.room_asr()
    recognizer = models.recognizers.get(room.model)
    handle = None
    if isinstance(recognizer, DecodeScheduler):  # this room's handle: its timing, load and degradation
        recognizer = handle = recognizer.room(session_id)
    if config.debug.stall_pipeline_after > 0:
        recognizer = StallingRecognizer(recognizer, time.monotonic() + config.debug.stall_pipeline_after, unstall)
    asr = AsrStream.for_room(recognizer, models.vad.stream(config.vad), config.streaming, room.language, room.task,
                             load=handle.load if handle is not None else None)
    diarizer = (StreamingDiarizer(models.diarization, config.diarization)
                if models.diarization is not None else None)

    def on_source_state(state: str, reason: str) -> None:  # called only once the source runs
        session.set_state(_ROOM_STATE.get(state, session.state), reason)

    pipeline = Pipeline(make_source(on_source_state), asr, executor, diarizer=diarizer,
                        on_decode=functools.partial(hooks.decode_took, session_id))
    enrolled = (EnrolledMatcher(voiceprints, config.diarization.voiceprint_threshold)
                if voiceprints is not None and diarizer is not None else None)
    session = Session(session_id, kind, pipeline, EventLog(session_id, config.server.retained_events),
                      hooks=hooks, asr=room, log_transcripts=config.log.transcripts,
                      release=handle.close if handle is not None else None,
                      names=SpeakerNames(config.server.retained_events), enrolled=enrolled)
    return session
