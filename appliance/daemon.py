"""The composition root: load models once, build sessions, serve the API, shut down cleanly."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from appliance.asr.recognizer import WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.audio.decode import load_audio
from appliance.audio.sources import FileReplaySource, PushSource
from appliance.config import AppConfig, CaptureConfig, SessionConfig
from appliance.inference.whisper import load_whisper
from appliance.service.eventlog import EventLog
from appliance.service.server import SERVICES, build_server
from appliance.session import Pipeline, Session
from appliance.subtitles.events import SessionState
from appliance.vad.silero import SileroVad

log = logging.getLogger(__name__)

MAX_ENDED_SESSIONS = 32  # ended push sessions kept for Get/Export before the oldest is dropped


@dataclass
class Models:
    """Loaded once per daemon, shared by every session."""

    recognizer: WhisperRecognizer
    vad: SileroVad

    @classmethod
    def load(cls, config: AppConfig) -> Models:
        return cls(WhisperRecognizer(load_whisper(config.asr), config.asr), SileroVad.load(config.inference))


@dataclass
class Daemon:
    config: AppConfig
    models: Models
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=2, thread_name_prefix="inference"))
    sessions: dict[str, Session] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    on_session_state: Callable[[Session], None] | None = None
    _push_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

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
        session = Session(
            session_id, kind, Pipeline(source, asr, self.executor),
            EventLog(session_id, self.config.server.retained_events),
            language=self.config.asr.language or "en", on_state=self.on_session_state,
        )
        if hasattr(source, "on_state"):  # a microphone: its ups and downs are the room's
            source.on_state = lambda state, reason: session.set_state(_ROOM_STATE.get(state, session.state), reason)
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

    def _forget_old_sessions(self) -> None:
        ended = [s for s in self.sessions.values() if s.state == SessionState.ENDED and s.source_kind == "push"]
        for session in ended[: max(0, len(ended) - MAX_ENDED_SESSIONS)]:
            del self.sessions[session.session_id]
            self.tasks.pop(session.session_id, None)

    async def drain(self, grace: float) -> None:
        """Stop every source and let sessions publish their last cues, for at most `grace` seconds."""
        await asyncio.gather(*(s.stop() for s in self.sessions.values()), return_exceptions=True)
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def start_configured(self, source_for: Callable[[SessionConfig], object]) -> None:
        for session_config in self.config.sessions:
            self._start(session_config.id, session_config.source, source_for(session_config))


_ROOM_STATE = {"UP": SessionState.RUNNING, "DOWN": SessionState.UNAVAILABLE}


def _capture_config(config: AppConfig, session: SessionConfig) -> CaptureConfig:
    return replace(config.capture, device=session.device) if session.device is not None else config.capture


def check_devices(config: AppConfig) -> None:
    """Every configured microphone exists (ConfigError naming it otherwise), before anything binds."""
    from appliance.audio.capture import resolve_device

    for session in config.sessions:
        if session.source == "microphone":
            resolve_device(_capture_config(config, session))


def source_factory(config: AppConfig) -> Callable[[SessionConfig], object]:
    def source_for(session: SessionConfig):
        if session.source == "replay":
            return FileReplaySource(load_audio(session.file), realtime=True)
        from appliance.audio.capture import MicrophoneSource

        return MicrophoneSource(_capture_config(config, session))

    return source_for


@contextlib.asynccontextmanager
async def running(
    config: AppConfig, models: Models, source_for: Callable[[SessionConfig], object] | None = None,
) -> AsyncIterator[tuple[Daemon, int]]:
    """The daemon serving on its port with its configured sessions; drained on exit."""
    check_devices(config)
    daemon = Daemon(config, models)
    server, health, port = build_server(config.server, daemon)

    def on_state(session: Session) -> None:
        status = "SERVING" if session.state == SessionState.RUNNING else "NOT_SERVING"
        asyncio.ensure_future(health.set(f"session/{session.session_id}", _health(status)))

    daemon.on_session_state = on_state
    await server.start()
    try:
        daemon.start_configured(source_for or source_factory(config))
        for name in ("", *SERVICES):
            await health.set(name, _health("SERVING"))
        log.info("listening on %s (port %d), sessions: %s",
                 config.server.listen, port, ", ".join(daemon.sessions) or "none")
        yield daemon, port
    finally:
        log.info("stopping: draining for up to %.1f s", config.server.grace_seconds)
        await health.enter_graceful_shutdown()
        await daemon.drain(config.server.grace_seconds)
        await server.stop(config.server.grace_seconds)
        daemon.executor.shutdown(wait=True, cancel_futures=True)


async def serve(config: AppConfig, ready: Callable[[int], None] | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT; `ready(port)` once models are loaded and it listens."""
    loop = asyncio.get_running_loop()
    models = await loop.run_in_executor(None, Models.load, config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, models) as (_, port):
        if ready:
            ready(port)
        await stop.wait()


def _health(status: str) -> int:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckResponse.ServingStatus.Value(status)
