"""Building the daemon's parts whole: the shared models once, then one session per room.

The composition root (daemon.py) calls these; nothing here starts tasks or binds ports.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from appliance.asr.batch import DecodeScheduler
from appliance.asr.faults import StallingRecognizer
from appliance.asr.recognizer import Recognizer, WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.config import AppConfig, SourceKind
from appliance.delivery.eventlog import EventLog
from appliance.diarization.models import DiarizationModels
from appliance.diarization.models import load_models as load_diarization
from appliance.diarization.streaming import StreamingDiarizer
from appliance.inference.manifest import load_manifest
from appliance.inference.whisper import load_whisper, whisper_model_dir
from appliance.session import Pipeline, Session, SessionHooks
from appliance.subtitles.events import SessionState
from appliance.vad.silero import SileroVad

# A source's state listener: (state, reason), state "UP" or "DOWN" (a microphone's ups and downs).
StateListener = Callable[[str, str], None]
_ROOM_STATE = {"UP": SessionState.RUNNING, "DOWN": SessionState.UNAVAILABLE}


@dataclass
class Models:
    """Loaded once per daemon, shared by every session."""

    recognizer: Recognizer  # WhisperRecognizer, or the DecodeScheduler batching every room's decodes
    vad: SileroVad
    info: list[tuple[str, str, str]]  # (name, sha256 of its main file, where it runs), for metrics
    diarization: DiarizationModels | None = None

    @classmethod
    def load(cls, config: AppConfig) -> Models:
        manifest = load_manifest()
        whisper = load_whisper(config.asr, manifest)
        # asr.batch_size > 1: one scheduler batches the decodes of the rooms that are due (issue 14).
        recognizer = (DecodeScheduler.for_model(whisper, config.asr) if config.asr.batch_size > 1
                      else WhisperRecognizer(whisper, config.asr))
        vad = SileroVad.load(config.inference, manifest)
        asr = manifest.get(config.asr.model)
        info = [
            (config.asr.model if asr else str(whisper_model_dir(config.asr)),
             asr.files.get("model.bin", "") if asr else "", f"ctranslate2-{config.asr.device}-{config.asr.compute_type}"),
            ("silero-vad", manifest["silero-vad"].files["silero_vad_v6.onnx"], vad.provider),
        ]
        diarization = None
        if config.diarization.live:
            diarization = load_diarization(config.diarization, config.inference, manifest)
            d = config.diarization
            info += [(d.segmentation_model, manifest[d.segmentation_model].files[d.segmentation_file], vad.provider),
                     (d.embedding_model, manifest[d.embedding_model].files[d.embedding_file], vad.provider)]
        return cls(recognizer, vad, info, diarization)


class DecodeHooks(SessionHooks):
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
    release: threading.Event,
) -> Session:
    """One room, whole: its source (told how to report its state), VAD, ASR stream, streaming
    diarizer when live diarization is on, event log and hooks. `release` ends injected stalls
    (debug.stall_pipeline_after) at shutdown."""
    recognizer = models.recognizer
    if config.debug.stall_pipeline_after > 0:
        recognizer = StallingRecognizer(recognizer, time.monotonic() + config.debug.stall_pipeline_after, release)
    asr = AsrStream(recognizer, models.vad.stream(config.vad), config.streaming)
    diarizer = (StreamingDiarizer(models.diarization, config.diarization)
                if models.diarization is not None else None)

    def on_source_state(state: str, reason: str) -> None:  # called only once the source runs
        session.set_state(_ROOM_STATE.get(state, session.state), reason)

    pipeline = Pipeline(make_source(on_source_state), asr, executor, diarizer=diarizer,
                        on_decode=functools.partial(hooks.decode_took, session_id))
    session = Session(session_id, kind, pipeline, EventLog(session_id, config.server.retained_events),
                      hooks=hooks, language=config.asr.language or "en", log_transcripts=config.log.transcripts)
    return session
