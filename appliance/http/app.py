"""The HTTP face on aiohttp: routes, token check, request counting, TLS, start and stop.

Routes (more are added beside these, e.g. a WebSocket for pushed audio):
  GET /captions/{session}                    the room-screen page (static files from the package)
  GET /events/{session}                      Server-Sent Events, resumable by seq (Last-Event-ID)
  GET /sessions, /sessions/{session}         what the gRPC Sessions.List/Get report, as JSON
  GET /sessions/{session}/transcript.{fmt}   the Export formats: vtt, srt, json, rttm
  GET /healthz                               open (no token), says nothing about the rooms
  GET /api/asr-streaming                     Kyutai-compatible pushed audio (WebSocket; see kyutai.py)
  POST /v1/audio/transcriptions              OpenAI-compatible file transcription (see openai.py)
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import socket
import ssl
import time
from dataclasses import asdict
from importlib import resources
from typing import Protocol
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from appliance.config import HttpConfig, ServerConfig
from appliance.delivery.encoding import EncodedOnce
from appliance.delivery.eventlog import ResumeError
from appliance.delivery.export import MEDIA_TYPES, NoSpeakerLabels, export
from appliance.delivery.fanout import Backlog, SlowSubscriber, SlowWriteGuard, Subscriber, SubscriptionEnded, subscribe
from appliance.delivery.lockout import Lockout
from appliance.delivery.tokens import read_tokens
from appliance.http import kyutai, openai, sse
from appliance.http.auth import TokenGate
from appliance.session import Session

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what config and push ids are made of
TOKEN_COOKIE = "appliance_token"
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}  # anything else counts as "other"
OPEN_ROUTES = {"/healthz", "/static/{name}"}  # no token: they reveal nothing about any room
# Routes that check the token themselves: the Kyutai protocol sends it as `kyutai-api-key` and
# is refused with a WebSocket close code, not an HTTP status.
SELF_AUTHORISED = {kyutai.ROUTE}
STATIC = ("captions.css", "captions.js")
# Flow control for an SSE reader, like HTTP/2's for a gRPC subscriber: a write waits once this
# much is unsent (in the socket's send buffer, fixed rather than autotuned to megabytes, and in
# ours), so a screen that stops reading holds up its own handler within tens of events and its
# subscriber backlog then ends it (SlowSubscriber), instead of hours of captions buffering.
SSE_SOCKET_BUFFER = 8 * 1024
SSE_UNSENT_LIMIT = 16 * 1024
# The page loads nothing from elsewhere (the box is air-gapped) and leaks no address (tokens) onward.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class Rooms(Protocol):
    """What the HTTP face needs of the daemon's sessions."""

    def get(self, session_id: str) -> Session | None: ...

    def all(self) -> list[Session]: ...


class HttpHooks(Protocol):
    """What the HTTP face reports (metrics.Metrics implements it)."""

    def event_sent(self, event_kind: str, delay: float | None) -> None: ...

    def subscriber_ended_slow(self, session_id: str) -> None: ...

    def http_request(self, route: str, method: str, status: int) -> None: ...

    def auth_failed(self, method: str) -> None: ...

    def bad_input_seen(self, method: str, reason: str) -> None: ...

    def transcription_refused(self, reason: str) -> None: ...

    def transcription_files(self, count: int) -> None: ...


class NoHooks:
    def event_sent(self, event_kind: str, delay: float | None) -> None: ...
    def subscriber_ended_slow(self, session_id: str) -> None: ...
    def http_request(self, route: str, method: str, status: int) -> None: ...
    def auth_failed(self, method: str) -> None: ...
    def bad_input_seen(self, method: str, reason: str) -> None: ...
    def transcription_refused(self, reason: str) -> None: ...
    def transcription_files(self, count: int) -> None: ...


def _error(status: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    return status(text=f'{{"error": {_json_str(message)}}}\n', content_type="application/json", headers=headers)


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _route(request: web.Request) -> str:
    """The route template (bounded metric label), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class _AccessLogger(AbstractAccessLogger):
    """Method, path without its query (which may hold a token), status, time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.3fs", request.method, request.path, response.status, time)


def _static(name: str) -> bytes:
    return resources.files("appliance.http").joinpath("static", name).read_bytes()


class HttpFace:
    """The HTTP application over `rooms`, and its listener once started.

    `lockout`: the failed-authentication record shared with the gRPC face (default: one of its
    own, from the server config)."""

    def __init__(self, config: HttpConfig, server: ServerConfig, rooms: Rooms, hooks: HttpHooks | None = None,
                 transcriber: openai.FileTranscriber | None = None, lockout: Lockout | None = None):
        self.config = config
        self.server = server  # TLS, tokens, lockout and subscriber limits are the gRPC server's
        self.rooms = rooms
        self.hooks = hooks or NoHooks()
        self.tokens = read_tokens(server.token_file) if server.token_file is not None else None
        self.gate = None if self.tokens is None else TokenGate(
            self.tokens, lockout or Lockout(server.auth_max_failures, server.auth_lockout_seconds),
            self.hooks.auth_failed)
        self.encoded = EncodedOnce(sse.subtitle_message)
        self.page = _static("captions.html").decode()
        self.assets = {name: _static(name) for name in STATIC}
        self.stopping = False
        self.kyutai = kyutai.KyutaiEndpoint(rooms, self.gate, self.hooks, config.asr_max_message_bytes,
                                            Backlog(server.subscriber_backlog, server.subscriber_backlog_seconds,
                                                    server.subscriber_backlog_bytes))
        self.openai = openai.TranscriptionEndpoint(transcriber, config, self.hooks) if transcriber else None
        self.app = self._build_app()
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._count, self._authorise], client_max_size=self.config.max_body_bytes)
        app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/static/{name}", self.static),
            web.get("/captions/{session}", self.captions),
            web.get("/events/{session}", self.events),
            web.get("/sessions", self.list_sessions),
            web.get("/sessions/{session}", self.get_session),
            web.get("/sessions/{session}/transcript.{fmt}", self.transcript),
        ])
        self.kyutai.add_routes(app)
        if self.openai is not None:
            self.openai.add_routes(app)
        return app

    # --- lifecycle ---

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.server.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server.tls_cert, self.server.tls_key)
        if self.server.client_ca is not None:  # mTLS on gRPC means mTLS here too
            context.load_verify_locations(self.server.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def start(self) -> int:
        """Listen on http.listen; returns the bound port."""
        host, _, port = self.config.listen.rpartition(":")
        self.runner = web.AppRunner(self.app, access_log_class=_AccessLogger, access_log=log,
                                    shutdown_timeout=self.server.grace_seconds, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host.strip("[]"), int(port), ssl_context=self.ssl_context(),
                           reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise OSError(f"http.listen {self.config.listen}: {exc.strerror or exc}") from None
        self.port = self.runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        self.stopping = True
        if self.runner is not None:
            await self.runner.cleanup()

    # --- middlewares ---

    @web.middleware
    async def _count(self, request: web.Request, handler) -> web.StreamResponse:
        route, method = _route(request), request.method if request.method in METHODS else "other"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's convention)
            raise
        finally:
            self.hooks.http_request(route, method, status)

    def _presented(self, request: web.Request) -> str | None:
        """The token from the Authorization header, else `?token=` (a new one replaces a stale
        cookie when a screen is re-opened with it), else the cookie."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return token if scheme.lower() == "bearer" and token else ""
        return request.query.get("token") or request.cookies.get(TOKEN_COOKIE)

    @web.middleware
    async def _authorise(self, request: web.Request, handler) -> web.StreamResponse:
        route = _route(request)
        if (self.gate is None or route in OPEN_ROUTES | SELF_AUTHORISED
                or request.match_info.route.resource is None):
            return await handler(request)
        address = request.remote or ""
        refusal = self.gate.locked(address, route)
        if refusal is not None:
            raise refusal
        presented = self._presented(request)
        if not presented:
            reason = "missing token: send 'Authorization: Bearer <token>' (or ?token= for a browser)"
        elif not self.gate.matches(presented):
            reason = "invalid token"
        else:
            return await handler(request)
        self.gate.failed(address, route, reason)
        raise _error(web.HTTPUnauthorized, reason, **{"WWW-Authenticate": "Bearer"})

    # --- helpers ---

    def _session(self, request: web.Request) -> Session:
        session_id = request.match_info["session"]
        if not SESSION_ID.fullmatch(session_id):
            raise _error(web.HTTPBadRequest, "a session id is 1 to 64 letters, digits, - or _")
        session = self.rooms.get(session_id)
        if session is None:
            raise _error(web.HTTPNotFound, f"no session {session_id!r}")
        return session

    @staticmethod
    def _int(name: str, value: str | None, default: int) -> int:
        if value is None or value == "":
            return default
        if not value.isdigit() or len(value) > 18:
            raise _error(web.HTTPBadRequest, f"{name} must be a whole number >= 0, got {value[:40]!r}")
        return int(value)

    @staticmethod
    def _flag(request: web.Request, name: str, default: bool) -> bool:
        value = request.query.get(name)
        if value is None:
            return default
        if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise _error(web.HTTPBadRequest, f"{name} must be 1 or 0, got {value[:40]!r}")
        return value.lower() in ("1", "true", "yes", "on")

    # --- routes ---

    async def healthz(self, request: web.Request) -> web.Response:
        if self.stopping:
            return web.json_response({"status": "stopping"}, status=503)
        return web.json_response({"status": "serving"})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.assets:
            raise _error(web.HTTPNotFound, f"no file {name!r}")
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(body=self.assets[name], content_type=kind, charset="utf-8", headers=PAGE_HEADERS)

    async def captions(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if "token" in request.query and self.tokens is not None:
            # The token moves into a cookie and out of the address bar (history, screenshots).
            rest = urlencode([(k, v) for k, v in request.query.items() if k != "token"])
            response = web.HTTPSeeOther(request.path + (f"?{rest}" if rest else ""), headers=PAGE_HEADERS)
            response.set_cookie(TOKEN_COOKIE, request.query["token"], httponly=True, samesite="Strict",
                                secure=self.server.tls, path="/")
            raise response
        page = self.page.replace("{session}", html.escape(session.session_id, quote=True))
        return web.Response(text=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def list_sessions(self, request: web.Request) -> web.Response:
        return web.json_response({"sessions": [_info(s) for s in self.rooms.all()]})

    async def get_session(self, request: web.Request) -> web.Response:
        return web.json_response(_info(self._session(request)))

    async def transcript(self, request: web.Request) -> web.Response:
        session, fmt = self._session(request), request.match_info["fmt"]
        if fmt not in MEDIA_TYPES:
            raise _error(web.HTTPBadRequest, f"transcript format must be one of {', '.join(MEDIA_TYPES)}")
        try:
            result = export(session.log, fmt, duration=session.pipeline.audio_seconds, language=session.language)
        except NoSpeakerLabels as exc:
            raise _error(web.HTTPConflict, str(exc)) from None
        filename = f"{session.session_id}.{fmt}"
        return web.Response(text=result.content, content_type=result.media_type, charset="utf-8",
                            headers={"Content-Disposition": f'inline; filename="{filename}"'})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The session's events as SSE: a `hello` first (the log's epoch and the room's state),
        then retained events after the resume point, then live ones; `heartbeat`s while idle."""
        session = self._session(request)
        include_partials = self._flag(request, "partials", True)
        header = request.headers.get("Last-Event-ID")
        from_seq = self._int("Last-Event-ID", header, 0) if header else \
            self._int("from_seq", request.query.get("from_seq"), 0)
        epoch = request.query.get("epoch")
        reset = bool(epoch) and epoch != session.log.epoch and from_seq > 0
        if reset:
            from_seq = 0  # the client's seq belongs to another log (the daemon restarted): all of this one
        if len(session.fanout.subscribers) >= self.server.max_subscribers_per_session:
            raise _error(web.HTTPServiceUnavailable, f"session {session.session_id!r} has its maximum of "
                         f"{self.server.max_subscribers_per_session} subscribers", **{"Retry-After": "5"})
        subscriber = Subscriber(include_partials, self.server.subscriber_backlog)
        missed = False
        try:
            backlog = subscribe(session.log, session.fanout, from_seq, subscriber)
        except ResumeError as exc:
            if epoch != session.log.epoch:
                raise _error(web.HTTPConflict, f"{exc}; reconnect without Last-Event-ID/from_seq") from None
            # A client that names this log (the room screen) skips what it has by seq: all that is
            # retained, and `missed` says events between went unretained.
            backlog, missed = subscribe(session.log, session.fanout, 0, subscriber), True
        hello = {"session_id": session.session_id, "epoch": session.log.epoch, "state": str(session.state),
                 "message": session.message, "last_seq": session.log.last_seq, "reset": reset, "missed": missed}
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        try:
            await self._stream(request, response, session, subscriber, sse.message(hello, event="hello", retry_ms=1000),
                               backlog)
            return response
        finally:
            session.fanout.remove(subscriber)

    async def _stream(self, request: web.Request, response: web.StreamResponse, session: Session,
                      subscriber: Subscriber, hello: bytes, backlog: list) -> None:
        guard = SlowWriteGuard(subscriber)

        async def write(data: bytes) -> None:
            with guard.writing():
                await response.write(data)
                await request.writer.drain()  # waits only while more than SSE_UNSENT_LIMIT is unsent

        try:
            await response.prepare(request)
            if request.transport is not None:
                request.transport.set_write_buffer_limits(high=SSE_UNSENT_LIMIT)
                sock = request.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SSE_SOCKET_BUFFER)
            await write(hello)
            for event in backlog:
                subscriber.last_seq = event.seq
                await write(self.encoded(event))
                self.hooks.event_sent(event.kind, None)  # replayed, not live
            while True:
                try:
                    async with asyncio.timeout(self.config.heartbeat_seconds):
                        event = await subscriber.next()
                except TimeoutError:
                    await write(sse.message({"state": str(session.state), "audio_seconds":
                                             round(session.pipeline.audio_seconds, 3)}, event="heartbeat"))
                    continue
                if event is None:
                    return  # the session ended and everything was sent
                started = time.time()  # as the write starts (see the gRPC servicer's _write)
                await write(self.encoded(event))
                self.hooks.event_sent(event.kind, started - event.created)
        except SlowSubscriber:
            self._too_slow(request, session, subscriber)
        except asyncio.CancelledError:
            if not guard.absorb():
                raise  # the server is stopping
            self._too_slow(request, session, subscriber)
        except (SubscriptionEnded, ConnectionResetError):
            return  # ended from outside, or the reader went away (noticed at the next write)

    def _too_slow(self, request: web.Request, session: Session, subscriber: Subscriber) -> None:
        """Drop the connection with what it has not read: the client resumes with Last-Event-ID."""
        self.hooks.subscriber_ended_slow(session.session_id)
        log.warning("SSE reader of %s too slow (%s); dropped at seq %d", session.session_id,
                    subscriber.failure, subscriber.last_seq)
        if request.transport is not None:
            request.transport.abort()


def _info(session: Session) -> dict:
    info = asdict(session.info())
    info["state"] = str(info["state"])
    return info

