"""The composition root: load models once, build sessions, serve the API and metrics, shut down cleanly."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, start_http_server

from appliance.asr.batch import DecodeScheduler
from appliance.asr.recognizer import Recognizer, WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.audio.decode import load_audio
from appliance.audio.sources import FileReplaySource, PushSource
from appliance.config import AppConfig, CaptureConfig, MetricsConfig, SessionConfig
from appliance.diarization.models import DiarizationModels
from appliance.diarization.models import load_models as load_diarization
from appliance.diarization.streaming import StreamingDiarizer
from appliance.inference.manifest import load_manifest
from appliance.inference.whisper import load_whisper, whisper_model_dir
from appliance.metrics import Metrics, SessionCollector
from appliance.notify import Notifier
from appliance.delivery.eventlog import EventLog
from appliance.service.interceptors import RpcCountingInterceptor
from appliance.service.server import SERVICES, build_server
from appliance.session import Pipeline, Session
from appliance.subtitles.events import SessionState
from appliance.vad.silero import SileroVad

log = logging.getLogger(__name__)

MAX_ENDED_SESSIONS = 32  # ended push sessions kept for Get/Export before the oldest is dropped


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


@dataclass
class Daemon:
    config: AppConfig
    models: Models
    metrics: Metrics | None = None
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=2, thread_name_prefix="inference"))
    sessions: dict[str, Session] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    on_session_state: Callable[[Session], None] | None = None
    _push_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _unstall: threading.Event = field(default_factory=threading.Event)

    # --- Rooms, as the servicers see the daemon ---

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def all(self) -> list[Session]:
        return list(self.sessions.values())

    def open_push(self, session_id: str | None) -> tuple[Session, PushSource]:
        if session_id is None:
            session_id = f"push-{next(self._push_ids)}"
            while session_id in self.sessions:
                session_id = f"push-{next(self._push_ids)}"
        if session_id in self.sessions:
            raise KeyError(f"session {session_id!r} already exists")
        live = sum(1 for s in self.sessions.values() if s.source_kind == "push" and s.state != SessionState.ENDED)
        if live >= self.config.server.max_push_sessions:
            raise OverflowError(f"at most {self.config.server.max_push_sessions} pushed streams at once")
        source = PushSource()
        self._start(session_id, "push", source)
        return self.sessions[session_id], source

    def normalizer(self, sample_rate: int, channels: int):
        from appliance.audio.resample import Normalizer

        return Normalizer(sample_rate, channels)

    # --- sessions ---

    def _start(self, session_id: str, kind: str, source) -> Session:
        asr = AsrStream(self.models.recognizer, self.models.vad.stream(self.config.vad), self.config.streaming)
        if self.config.debug.stall_pipeline_after > 0:
            asr.update = self._stalling(asr.update, time.monotonic() + self.config.debug.stall_pipeline_after)
        pipeline = Pipeline(source, asr, self.executor)
        if self.models.diarization is not None:
            pipeline.diarizer = StreamingDiarizer(self.models.diarization, self.config.diarization)
            pipeline.diarize_every = self.config.diarization.stream_step
        session = Session(
            session_id, kind, pipeline, EventLog(session_id, self.config.server.retained_events),
            language=self.config.asr.language or "en", on_state=self.on_session_state,
            log_transcripts=self.config.log.transcripts,
        )
        if self.metrics is not None:
            model, _, provider = self.models.info[0]
            pipeline.on_decode = self.metrics.inference.labels(model, provider).observe
            session.on_latency = self._observe_latency
            session.on_label_latency = lambda sid, seconds: self.metrics.speaker_label_latency.labels(sid).observe(
                seconds)
        if hasattr(source, "on_state"):  # a microphone: its ups and downs are the room's
            source.on_state = lambda state, reason: session.set_state(_ROOM_STATE.get(state, session.state), reason)
        self.sessions[session_id] = session
        self.tasks[session_id] = asyncio.create_task(self._run(session), name=f"session-{session_id}")
        self._forget_old_sessions()
        return session

    def _observe_latency(self, session_id: str, partial: float, final: float) -> None:
        self.metrics.partial_word_latency.labels(session_id).observe(partial)
        self.metrics.final_word_latency.labels(session_id).observe(final)

    def _stalling(self, update: Callable, after: float) -> Callable:
        """Fault injection (debug.stall_pipeline_after): decodes hang from `after` until shutdown."""
        def stalled():
            if time.monotonic() >= after:
                log.warning("debug: stalling the pipeline as configured")
                self._unstall.wait()
            return update()
        return stalled

    async def _run(self, session: Session) -> None:
        try:
            await session.run()
        except Exception:  # one room failing must not take the others down
            log.exception("session %s failed", session.session_id)
            session.set_state(SessionState.ENDED, "internal error; see the daemon log")

    def _forget_old_sessions(self) -> None:
        ended = [s for s in self.sessions.values() if s.state == SessionState.ENDED and s.source_kind == "push"]
        for session in ended[: max(0, len(ended) - MAX_ENDED_SESSIONS)]:
            del self.sessions[session.session_id]
            self.tasks.pop(session.session_id, None)
            if self.metrics is not None:
                for histogram in (self.metrics.partial_word_latency, self.metrics.final_word_latency,
                                  self.metrics.speaker_label_latency):
                    with contextlib.suppress(KeyError):
                        histogram.remove(session.session_id)

    def start_configured(self, source_for: Callable[[SessionConfig], object]) -> None:
        for session_config in self.config.sessions:
            self._start(session_config.id, session_config.source, source_for(session_config))

    def stalled(self, limit: float) -> list[str]:
        """Sessions whose pipeline has been inside one decode for longer than `limit` seconds."""
        now = time.monotonic()
        return [s.session_id for s in self.sessions.values()
                if s.pipeline.busy_since is not None and now - s.pipeline.busy_since > limit]

    async def drain(self, grace: float) -> None:
        """Stop every source and let sessions publish their last cues, for at most `grace` seconds."""
        self._unstall.set()
        await asyncio.gather(*(s.stop() for s in self.sessions.values()), return_exceptions=True)
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


_ROOM_STATE = {"UP": SessionState.RUNNING, "DOWN": SessionState.UNAVAILABLE}


def _capture_config(config: AppConfig, session: SessionConfig) -> CaptureConfig:
    return replace(config.capture, device=session.device) if session.device is not None else config.capture


def check_devices(config: AppConfig) -> list[str]:
    """Before anything binds: a microphone setting that cannot work (ambiguous name, too many
    channels) is a ConfigError naming it. An absent microphone is not an error: a USB microphone
    is often plugged in after the box boots, so its room starts down and opens it when it
    appears. Returns one line per absent microphone."""
    from appliance.audio.capture import DeviceNotFound, resolve_device

    absent = []
    for session in config.sessions:
        if session.source == "microphone":
            try:
                resolve_device(_capture_config(config, session))
            except DeviceNotFound as exc:
                absent.append(f"room {session.id}: {exc}")
    return absent


def source_factory(config: AppConfig) -> Callable[[SessionConfig], object]:
    def source_for(session: SessionConfig):
        if session.source == "replay":
            return FileReplaySource(load_audio(session.file), realtime=True)
        from appliance.audio.capture import MicrophoneSource

        return MicrophoneSource(_capture_config(config, session))

    return source_for


def start_metrics_server(config: MetricsConfig, registry: CollectorRegistry):
    """The /metrics HTTP(S) endpoint on its own address; returns (server, bound port)."""
    host, _, port = config.listen.rpartition(":")
    try:
        server, _ = start_http_server(
            int(port), host.strip("[]"), registry,
            certfile=str(config.tls_cert) if config.tls_cert else None,
            keyfile=str(config.tls_key) if config.tls_key else None,
            client_cafile=str(config.client_ca) if config.client_ca else None,
            client_auth_required=config.client_ca is not None,
        )
    except OSError as exc:
        raise OSError(f"metrics.listen {config.listen}: {exc.strerror or exc}") from None
    return server, server.server_port


@dataclass
class Running:
    daemon: Daemon
    port: int
    metrics_port: int | None


async def _watchdog(daemon: Daemon, notifier: Notifier) -> None:
    """Ping systemd while no pipeline is stuck in a decode; a stuck one stops the pings.

    Runs on the event loop, so a blocked loop stops them too. A room waiting for audio
    (a silent push stream, a microphone that is down) is idle, not stuck.
    """
    interval = notifier.watchdog_interval
    while True:
        stuck = daemon.stalled(limit=2 * interval)
        if stuck:
            log.error("pipeline stalled in %s: withholding the watchdog ping", ", ".join(stuck))
        else:
            notifier.watchdog()
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    config: AppConfig, models: Models, source_for: Callable[[SessionConfig], object] | None = None,
    registry: CollectorRegistry | None = None, notifier: Notifier | None = None,
) -> AsyncIterator[Running]:
    """The daemon serving its API (and metrics) with its configured sessions; drained on exit."""
    for absent in check_devices(config):
        log.warning("%s; the room stays down until it appears", absent)
    metrics = Metrics(registry) if registry is not None else None
    daemon = Daemon(config, models, metrics)
    interceptors = []
    if metrics is not None:
        registry.register(SessionCollector(daemon.all))
        for name, sha256, provider in models.info:
            metrics.model.labels(name, sha256, provider).set(1)
        interceptors.append(RpcCountingInterceptor(lambda s, m, c: metrics.rpcs.labels(s, m, c).inc()))
    server, health, port = build_server(
        config.server, daemon, hooks=metrics, interceptors=interceptors,
        on_auth_failure=metrics.auth_failed if metrics else None)

    def on_state(session: Session) -> None:
        status = "SERVING" if session.state == SessionState.RUNNING else "NOT_SERVING"
        asyncio.ensure_future(health.set(f"session/{session.session_id}", _health(status)))

    daemon.on_session_state = on_state
    metrics_server, metrics_port = None, None
    if metrics is not None and config.metrics.enabled:
        metrics_server, metrics_port = start_metrics_server(config.metrics, registry)
    await server.start()
    watchdog = None
    if notifier is not None and notifier.watchdog_interval:
        watchdog = asyncio.create_task(_watchdog(daemon, notifier), name="watchdog")
    try:
        daemon.start_configured(source_for or source_factory(config))
        for name in ("", *SERVICES):
            await health.set(name, _health("SERVING"))
        log.info("listening on %s (port %d), metrics on %s, sessions: %s", config.server.listen, port,
                 f"port {metrics_port}" if metrics_port else "off", ", ".join(daemon.sessions) or "none")
        yield Running(daemon, port, metrics_port)
    finally:
        log.info("stopping: draining for up to %.1f s", config.server.grace_seconds)
        await health.enter_graceful_shutdown()
        await daemon.drain(config.server.grace_seconds)
        await server.stop(config.server.grace_seconds)
        if watchdog is not None:
            watchdog.cancel()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        daemon.executor.shutdown(wait=True, cancel_futures=True)


async def serve(config: AppConfig, notifier: Notifier | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT, telling systemd where it stands."""
    notifier = notifier or Notifier()
    loop = asyncio.get_running_loop()
    notifier.status("loading models")
    models = await loop.run_in_executor(None, Models.load, config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, models, registry=CollectorRegistry(), notifier=notifier) as live:
        notifier.ready(f"serving {len(live.daemon.sessions)} session(s) on {config.server.listen}")
        await stop.wait()
        notifier.stopping()


def _health(status: str) -> int:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckResponse.ServingStatus.Value(status)
