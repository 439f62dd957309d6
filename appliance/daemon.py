"""The composition root: load models once, build sessions, serve the API and metrics, shut down cleanly."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, start_http_server

from appliance.audio.decode import load_audio
from appliance.audio.pcm import PcmFormat
from appliance.audio.sources import FileReplaySource, PushSource
from appliance.build import Models, StateListener, build_session
from appliance.config import (
    AppConfig,
    CaptureConfig,
    MetricsConfig,
    RoomAsr,
    SessionConfig,
    SourceKind,
    language_problem,
    session_id_problem,
    task_problem,
)
from appliance.delivery.lockout import Lockout
from appliance.inference.manifest import ModelError
from appliance.http.app import HttpFace
from appliance.metrics import Metrics, SessionCollector
from appliance.notify import Notifier
from appliance.service.interceptors import RpcCountingInterceptor
from appliance.diarization.enrolment import enrol
from appliance.diarization.voiceprint_store import VoiceprintStore
from appliance.service.server import SERVICES, RoomHealth, build_server
from appliance.service.speakers import SpeakersServicer
from appliance.session import Session
from appliance.subtitles.events import SessionState
from appliance.transcription import FileTranscriber

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0  # how often stalled subscribers and expired ended sessions are looked for


@dataclass
class Daemon:
    """The rooms (as the servicers see them), and what each session reports (its SessionHooks):
    a `session/<id>` health entry per room, metrics when they are on."""

    config: AppConfig
    models: Models
    health: RoomHealth
    metrics: Metrics | None = None
    voiceprints: VoiceprintStore | None = None  # enrolled people, when diarization.voiceprints is set
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=2, thread_name_prefix="inference"))
    sessions: dict[str, Session] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    _ended_at: dict[str, float] = field(default_factory=dict)  # monotonic time each push session ended
    _health_updates: set[asyncio.Task] = field(default_factory=set)  # referenced until done (weak in the loop)
    _push_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _unstall: threading.Event = field(default_factory=threading.Event)  # ends injected stalls at shutdown

    # --- Rooms, as the servicers see the daemon ---

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def all(self) -> list[Session]:
        return list(self.sessions.values())

    async def room_asr(self, model: str, language: str, task: str) -> RoomAsr:
        """What a pushed stream asks for (empty: the daemon's [asr] defaults), checked, its model loaded
        (once, in the executor, the first time a room uses it). ValueError says what is wrong."""
        for problem in (language_problem(language or None), task_problem(task or None)):
            if problem:
                raise ValueError(problem)
        room = self.config.room_asr(None, model or None, language or None, task or None)
        recognizers = self.models.recognizers
        known = {name for name, spec in recognizers.manifest.items() if spec.role == "asr"}
        known |= {self.config.room_asr(r).model for r in (None, *self.config.sessions)}
        if room.model not in known:  # never a path a client names
            raise ValueError(f"unknown model {room.model!r} (this box has: {', '.join(sorted(known))})")
        if not recognizers.loaded(room.model):
            try:
                await asyncio.get_running_loop().run_in_executor(self.executor, recognizers.get, room.model)
            except ModelError as exc:
                raise ValueError(f"model {room.model!r} cannot be loaded: {exc}") from None
        recognizers.check(room, "model")
        return room

    def open_push(self, session_id: str | None, audio_format: PcmFormat,
                  room: RoomAsr | None = None) -> tuple[Session, PushSource]:
        if session_id is not None and (problem := session_id_problem(session_id)):
            raise ValueError(problem)
        if session_id is None:
            session_id = f"push-{next(self._push_ids)}"
            while session_id in self.sessions:
                session_id = f"push-{next(self._push_ids)}"
        if session_id in self.sessions:
            raise KeyError(f"session {session_id!r} already exists")
        live = sum(1 for s in self.sessions.values()
                   if s.source_kind == SourceKind.PUSH and s.state != SessionState.ENDED)
        if live >= self.config.server.max_push_sessions:
            raise OverflowError(f"at most {self.config.server.max_push_sessions} pushed streams at once")
        session = self._start(session_id, SourceKind.PUSH, lambda on_state: PushSource(audio_format), room)
        return session, session.pipeline.source

    # --- what sessions report (session.SessionHooks) ---

    def state_changed(self, session: Session) -> None:
        status = "SERVING" if session.state == SessionState.RUNNING else "NOT_SERVING"
        self._update_health(self.health.set(f"session/{session.session_id}", _health(status)))
        if session.state == SessionState.ENDED and session.source_kind == SourceKind.PUSH:
            self._ended_at.setdefault(session.session_id, time.monotonic())  # its retention starts
            self._forget_old_sessions()

    def word_latency(self, session_id: str, partial: float, final: float) -> None:
        if self.metrics is not None:
            self.metrics.partial_word_latency.labels(session_id).observe(partial)
            self.metrics.final_word_latency.labels(session_id).observe(final)

    def label_latency(self, session_id: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.speaker_label_latency.labels(session_id).observe(seconds)

    def decode_took(self, session_id: str, seconds: float) -> None:
        if self.metrics is not None:
            name, _, provider = self.models.info[0]
            self.metrics.inference.labels(name, provider).observe(seconds)

    def _update_health(self, change) -> None:
        task = asyncio.ensure_future(change)
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    # --- sessions ---

    def _start(self, session_id: str, kind: SourceKind, make_source: Callable[[StateListener], object],
               room: RoomAsr | None = None) -> Session:
        session = build_session(session_id, kind, make_source, self.config, self.models, self.executor,
                                self, self._unstall, room,
                                voiceprints=self.voiceprints.all if self.voiceprints is not None else None)
        self.sessions[session_id] = session
        self.tasks[session_id] = asyncio.create_task(self._run(session), name=f"session-{session_id}")
        self._forget_old_sessions()
        return session

    async def _run(self, session: Session) -> None:
        try:
            await session.run()
        except Exception:  # one room failing must not take the others down
            log.exception("session %s failed", session.session_id)
            session.set_state(SessionState.ENDED, "internal error; see the daemon log")

    def _forget_old_sessions(self, now: float | None = None) -> None:
        """Drop ended pushed sessions past server.max_ended_sessions (the oldest first) or older
        than server.ended_session_seconds, with their health entries and metric series."""
        now = time.monotonic() if now is None else now
        limits = self.config.server
        ended = [s for s in self.sessions.values()
                 if s.state == SessionState.ENDED and s.source_kind == SourceKind.PUSH]
        surplus = max(0, len(ended) - limits.max_ended_sessions)
        for index, session in enumerate(ended):
            if index < surplus or now - self._ended_at.get(session.session_id, now) > limits.ended_session_seconds:
                self._forget(session)

    def _forget(self, session: Session) -> None:
        session_id = session.session_id
        del self.sessions[session_id]
        self.tasks.pop(session_id, None)
        self._ended_at.pop(session_id, None)
        if self.metrics is not None:
            for series in (self.metrics.partial_word_latency, self.metrics.final_word_latency,
                           self.metrics.speaker_label_latency, self.metrics.subscribers_ended_slow):
                with contextlib.suppress(KeyError):
                    series.remove(session_id)
        self._update_health(self.health.forget(f"session/{session_id}"))

    def sweep(self, now: float) -> None:
        """The periodic checks: subscribers stalled past their age bound (even when nothing more is
        published) are ended, ended sessions past their retention forgotten."""
        for session in list(self.sessions.values()):
            session.fanout.expire(now)
        self._forget_old_sessions(now)

    def start_configured(self, source_for: SourceFactory) -> None:
        for room in self.config.sessions:
            self._start(room.id, room.source, functools.partial(source_for, room), self.config.room_asr(room))

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


def _capture_config(config: AppConfig, session: SessionConfig) -> CaptureConfig:
    return replace(config.capture, device=session.device) if session.device is not None else config.capture


def check_devices(config: AppConfig) -> list[str]:
    """Before anything binds: a microphone setting that cannot work (ambiguous name, too many
    channels) is a ConfigError naming it. An absent microphone is not an error: a USB microphone
    is often plugged in after the box boots, so its room starts down and opens it when it
    appears. Returns one line per absent microphone."""
    if not any(session.source == SourceKind.MICROPHONE for session in config.sessions):
        return []  # no microphone: PortAudio (and its ALSA/JACK/PulseAudio probing) is never loaded
    from appliance.audio.capture import DeviceNotFound, resolve_device

    absent = []
    for session in config.sessions:
        if session.source == SourceKind.MICROPHONE:
            try:
                resolve_device(_capture_config(config, session))
            except DeviceNotFound as exc:
                absent.append(f"room {session.id}: {exc}")
    return absent


# A configured room's audio source, told whom to report its state to.
SourceFactory = Callable[[SessionConfig, StateListener], object]


def source_factory(config: AppConfig) -> SourceFactory:
    def source_for(session: SessionConfig, on_state: StateListener):
        if session.source == SourceKind.REPLAY:
            return FileReplaySource(load_audio(session.file), realtime=True)
        from appliance.audio.capture import MicrophoneSource

        return MicrophoneSource(_capture_config(config, session), on_state)

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


def _speakers(config: AppConfig, models: Models, executor: ThreadPoolExecutor,
              metrics: Metrics | None) -> tuple[VoiceprintStore | None, SpeakersServicer]:
    """The voiceprint store (only where diarization.voiceprints names a directory, and live
    diarization gives the embedding model) and the Speakers servicer over it."""
    where = config.diarization.voiceprints
    if where is None:
        return None, SpeakersServicer(None, None, hooks=metrics)
    if models.diarization is None:
        return None, SpeakersServicer(None, None, hooks=metrics, off=(
            "voiceprint enrolment needs live diarization: set diarization.live = true"))
    store = VoiceprintStore(where, config.diarization.embedding_model)
    log.info("voiceprints: %d enrolled, in %s", len(store.all()), where)
    return store, SpeakersServicer(store, functools.partial(enrol, models.diarization, config.diarization),
                                   executor, hooks=metrics)


@dataclass
class Running:
    daemon: Daemon
    port: int
    metrics_port: int | None
    http_port: int | None = None


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


async def _sweeper(daemon: Daemon) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        daemon.sweep(time.monotonic())


@contextlib.asynccontextmanager
async def running(
    config: AppConfig, models: Models, source_for: SourceFactory | None = None,
    registry: CollectorRegistry | None = None, notifier: Notifier | None = None,
) -> AsyncIterator[Running]:
    """The daemon serving its API (and metrics) with its configured sessions; drained on exit."""
    for absent in check_devices(config):
        log.warning("%s; the room stays down until it appears", absent)
    metrics = Metrics(registry) if registry is not None else None
    health_servicer = RoomHealth()
    # Rooms waiting in the decode scheduler each hold a worker while one of them decodes for all:
    # a batch can only be as large as the workers left beside the diarizer's.
    executor = ThreadPoolExecutor(max_workers=2 + config.asr.batch_size, thread_name_prefix="inference")
    voiceprints, speakers = _speakers(config, models, executor, metrics)
    daemon = Daemon(config, models, health_servicer, metrics, voiceprints=voiceprints, executor=executor)
    interceptors = []
    if metrics is not None:
        registry.register(SessionCollector(daemon.all))
        for name, sha256, provider in models.info:
            metrics.model.labels(name, sha256, provider).set(1)
        interceptors.append(RpcCountingInterceptor(lambda s, m, c: metrics.rpcs.labels(s, m, c).inc()))
    # One record of failed authentications for both faces: guesses on one count on the other.
    lockout = Lockout(config.server.auth_max_failures, config.server.auth_lockout_seconds)
    server, port = build_server(
        config.server, daemon, health_servicer, hooks=metrics, interceptors=interceptors,
        on_auth_failure=metrics.auth_failed if metrics else None, speakers=speakers, lockout=lockout)
    # Files (the OpenAI endpoint) go one at a time to a worker process of their own at a lower
    # priority (started on the first upload); this one thread only waits for its answers.
    files = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcription")
    transcriber = FileTranscriber(config, files)
    http = (HttpFace(config.http, config.server, daemon, hooks=metrics, transcriber=transcriber, lockout=lockout)
            if config.http.enabled else None)
    metrics_server, metrics_port = None, None
    if metrics is not None and config.metrics.enabled:
        metrics_server, metrics_port = start_metrics_server(config.metrics, registry)
    await server.start()
    sweeper = asyncio.create_task(_sweeper(daemon), name="sweeper")
    http_port = await http.start() if http is not None else None
    watchdog = None
    if notifier is not None and notifier.watchdog_interval:
        watchdog = asyncio.create_task(_watchdog(daemon, notifier), name="watchdog")
    try:
        daemon.start_configured(source_for or source_factory(config))
        for name in ("", *SERVICES):
            await health_servicer.set(name, _health("SERVING"))
        log.info("listening on %s (port %d), http on %s, metrics on %s, sessions: %s", config.server.listen, port,
                 f"port {http_port}" if http_port else "off", f"port {metrics_port}" if metrics_port else "off",
                 ", ".join(daemon.sessions) or "none")
        yield Running(daemon, port, metrics_port, http_port)
    finally:
        log.info("stopping: draining for up to %.1f s", config.server.grace_seconds)
        await health_servicer.enter_graceful_shutdown()
        if http is not None:
            http.stopping = True  # /healthz says so while the rooms drain
        await daemon.drain(config.server.grace_seconds)
        await server.stop(config.server.grace_seconds)
        sweeper.cancel()
        if http is not None:
            await http.stop()  # after the drain: SSE readers got the rooms' last cues
        if watchdog is not None:
            watchdog.cancel()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        daemon.executor.shutdown(wait=True, cancel_futures=True)
        transcriber.close()  # a file half done is abandoned with its request
        files.shutdown(wait=False, cancel_futures=True)


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
        frozen = settle_heap()
        log.debug("%d objects made at start kept out of the garbage collector's passes", frozen)
        notifier.ready(f"serving {len(live.daemon.sessions)} session(s) on {config.server.listen}")
        await stop.wait()
        notifier.stopping()


def settle_heap() -> int:
    """Move what start-up made (models, modules, descriptors: ~180k objects) out of the cyclic
    garbage collector's reach; returns how many objects that is.

    They live as long as the process, yet each full collection walked them all: ~100 ms with
    the loop held, several times a minute under 1,000 subscribers, and every delivery then
    waiting behind it was that much late (measured: bench/test_fanout_bench.py). Objects made
    later (sessions, calls) are collected as before. Called once, by the process's owner.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _health(status: str) -> int:
    return health_pb2.HealthCheckResponse.ServingStatus.Value(status)
