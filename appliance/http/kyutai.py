"""A Kyutai-compatible streaming endpoint, `/api/asr-streaming`: what La Suite Meet's Kyutai
provider (the `livekit-plugins-kyutai-lasuite` package) speaks, so Meet uses the box with
`STT_PROVIDER=kyutai` and no change to Meet.

The wire (msgpack over a WebSocket, header `kyutai-api-key`):
  client → {"type": "Audio", "pcm": [float32 ...]}   mono, 24 kHz unless `?sample_rate=` says otherwise
  client → {"type": "Marker", "id": int}             echoed once the audio before it is processed
  server → {"type": "Ready"}                          the session is open
  server → {"type": "Word", "text", "start_time"}    once per word, when it becomes final
  server → {"type": "EndWord", "stop_time"}          right after its Word
  server → {"type": "Marker", "id"}                  every word of the audio before the marker was sent

Each connection is a pushed session like a gRPC Transcribe: others follow it (Subscribe, SSE,
the room screen) with speaker labels; Kyutai's protocol itself carries none. Bad input closes
that connection only, with a WebSocket code: 1008 a wrong or missing key, 1003 a message that
is not Audio or Marker, 1007 malformed msgpack or samples (NaN, not numbers), 1009 an oversized
message. Wrong keys count on the daemon's per-address lockout (http/auth.py): a locked-out
address is refused before the upgrade, 429 with Retry-After.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import msgpack
import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from appliance.audio.pcm import PcmError, PcmFormat
from appliance.delivery.fanout import Backlog, SlowSubscriber, SlowWriteGuard, Subscriber, subscribe
from appliance.http.auth import TokenGate
from appliance.session import Session
from appliance.subtitles.events import EventKind, SubtitleEvent
from appliance.subtitles.types import Word

log = logging.getLogger(__name__)

ROUTE = "/api/asr-streaming"
METHOD = "asr-streaming"  # the metric label of this endpoint's auth failures and bad input
DEFAULT_RATE = 24_000  # what the Kyutai server takes and Meet's plugin sends
POLL_SECONDS = 0.05  # how often a waiting Marker looks at the pipeline when no event comes
RESAMPLER_SLACK = 0.05  # s of audio the resampler may hold back until the stream closes


class BadMessage(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, mono


@dataclass(frozen=True)
class Marker:
    id: int


def parse_message(data: bytes) -> Audio | Marker:
    """One client message; BadMessage (with its close code) if it is not one we take."""
    try:
        message = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise BadMessage(WSCloseCode.INVALID_TEXT, f"malformed msgpack: {exc}") from None
    if not isinstance(message, dict):
        raise BadMessage(WSCloseCode.UNSUPPORTED_DATA, "a message is a msgpack map with a 'type'")
    kind = message.get("type")
    if kind == "Marker":
        marker_id = message.get("id")
        if not isinstance(marker_id, int) or isinstance(marker_id, bool):
            raise BadMessage(WSCloseCode.INVALID_TEXT, "Marker 'id' must be an integer")
        return Marker(marker_id)
    if kind != "Audio":
        raise BadMessage(WSCloseCode.UNSUPPORTED_DATA, f"unsupported message type {str(kind)[:40]!r}: "
                         "send Audio (or Marker)")
    pcm = message.get("pcm")
    if not isinstance(pcm, list) or not all(isinstance(x, (float, int)) and not isinstance(x, bool) for x in pcm):
        raise BadMessage(WSCloseCode.INVALID_TEXT, "Audio 'pcm' must be a list of float32 samples")
    samples = np.asarray(pcm, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise BadMessage(WSCloseCode.INVALID_TEXT, "Audio 'pcm' contains NaN or infinite samples")
    return Audio(samples)


class FinalWords:
    """Each final word once, in time order, from a session's events.

    A PARTIAL's first `final_words` words are final already (Meet shows a segment's first
    message only, so a word goes out once, final); a FINAL's are all. Final words never change
    text, only (later) speaker, so a word is new when it comes after the last one sent."""

    def __init__(self) -> None:
        self._last: tuple[float, float] = (-math.inf, -math.inf)

    def new(self, event: SubtitleEvent) -> list[Word]:
        if event.kind == EventKind.FINAL:
            final = event.words
        elif event.kind == EventKind.PARTIAL:
            final = event.words[:event.final_words]
        else:
            return []
        out = [w for w in final if (w.start, w.end) > self._last]
        if out:
            self._last = (out[-1].start, out[-1].end)
        return out


def word_messages(word: Word) -> list[bytes]:
    return [msgpack.packb({"type": "Word", "text": word.text, "start_time": word.start}),
            msgpack.packb({"type": "EndWord", "stop_time": word.end})]


class PushRooms(Protocol):
    def open_push(self, session_id: str | None, audio_format: PcmFormat): ...


class StreamingHooks(Protocol):
    def bad_input_seen(self, method: str, reason: str) -> None: ...


def _processed(session: Session, seconds: float) -> bool:
    """The pipeline has taken in `seconds` of audio, no decode is running, and every word
    before that point is final (so published: publishing follows a decode with no wait)."""
    pipeline = session.pipeline
    target = seconds - RESAMPLER_SLACK
    return (pipeline.audio_seconds >= target and pipeline.busy_since is None
            and pipeline.asr.settled_seconds >= target)


class KyutaiEndpoint:
    """The `/api/asr-streaming` handler over the daemon's push sessions."""

    def __init__(self, rooms: PushRooms, gate: TokenGate | None, hooks: StreamingHooks,
                 max_message_bytes: int, backlog: Backlog):
        self.rooms = rooms
        self.gate = gate  # None: no tokens configured
        self.hooks = hooks
        self.max_message_bytes = max_message_bytes
        self.backlog = backlog

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([web.get(ROUTE, self.handle)])

    async def _refuse(self, ws: web.WebSocketResponse, code: int, reason: str) -> web.WebSocketResponse:
        log.warning("%s refused: %s", ROUTE, reason)
        await ws.close(code=code, message=reason[:120].encode())
        return ws

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        address = request.remote or ""
        if self.gate is not None and (refusal := self.gate.locked(address, METHOD)) is not None:
            raise refusal  # before the upgrade: a plain 429 with Retry-After
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, autoping=True)
        await ws.prepare(request)
        if self.gate is not None:
            key = request.headers.get("kyutai-api-key", "")
            if not key or not self.gate.matches(key):
                reason = "invalid kyutai-api-key" if key else "missing kyutai-api-key header"
                self.gate.failed(address, METHOD, reason)  # counted, logged rate-limited
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())
                return ws
        rate = request.query.get("sample_rate", str(DEFAULT_RATE))
        try:
            audio_format = PcmFormat(int(rate) if rate.isdigit() else -1, "F32LE", 1)
        except PcmError as exc:
            self.hooks.bad_input_seen(METHOD, str(exc))
            return await self._refuse(ws, WSCloseCode.INVALID_TEXT, f"sample_rate: {exc}")
        try:
            session, source = self.rooms.open_push(request.query.get("session") or None, audio_format)
        except ValueError as exc:
            self.hooks.bad_input_seen(METHOD, str(exc))
            return await self._refuse(ws, WSCloseCode.INVALID_TEXT, f"session: {exc}")
        except KeyError as exc:
            return await self._refuse(ws, WSCloseCode.POLICY_VIOLATION, str(exc.args[0]))
        except OverflowError as exc:
            return await self._refuse(ws, WSCloseCode.TRY_AGAIN_LATER, str(exc))
        log.info("%s: session %s at %d Hz", ROUTE, session.session_id, audio_format.sample_rate)
        subscriber = Subscriber(True, self.backlog)
        backlog = subscribe(session.log, session.fanout, 0, subscriber)
        markers: deque[tuple[int, float]] = deque()  # (id, seconds of audio pushed before it)
        reading = asyncio.create_task(self._read(ws, source, audio_format.sample_rate, markers))
        guard = SlowWriteGuard(subscriber)  # a client that stops reading is cut off, not waited for
        try:
            await ws.send_bytes(msgpack.packb({"type": "Ready"}))
            await self._write(ws, session, subscriber, backlog, markers, guard)
        except (ConnectionResetError, SlowSubscriber) as exc:
            log.info("%s: session %s: client gone or too slow (%s)", ROUTE, session.session_id, exc)
        except asyncio.CancelledError:
            if not guard.absorb():
                raise  # the server is stopping
            log.warning("%s: session %s: client stopped reading (%s); dropped", ROUTE, session.session_id,
                        subscriber.failure)
            if request.transport is not None:
                request.transport.abort()
        finally:
            session.fanout.remove(subscriber)
            await source.close()  # the session finalises and ends; its followers get the last cues
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.close()
        return ws

    async def _read(self, ws: web.WebSocketResponse, source, rate: int, markers: deque) -> None:
        """Client messages into the session until the client closes or misbehaves; then no more audio."""
        pushed = 0
        try:
            while True:
                message = await ws.receive()
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    return
                if message.type == WSMsgType.ERROR:  # aiohttp closed it already (1009 for an oversized one)
                    self.hooks.bad_input_seen(METHOD, str(message.data))
                    log.warning("%s: %s", ROUTE, message.data)
                    return
                if message.type != WSMsgType.BINARY:
                    raise BadMessage(WSCloseCode.UNSUPPORTED_DATA, "messages are binary msgpack, not text")
                parsed = parse_message(message.data)
                if isinstance(parsed, Marker):
                    markers.append((parsed.id, pushed / rate))
                elif len(parsed.samples):
                    await source.push_pcm(parsed.samples.tobytes())
                    pushed += len(parsed.samples)
        except BadMessage as exc:
            self.hooks.bad_input_seen(METHOD, exc.reason)
            await self._refuse(ws, exc.code, exc.reason)
        finally:
            await source.close()

    async def _write(self, ws: web.WebSocketResponse, session: Session, subscriber: Subscriber,
                     backlog: list[SubtitleEvent], markers: deque, guard: SlowWriteGuard) -> None:
        words = FinalWords()
        ready_at: int | None = None  # the log's seq once the head marker's audio was processed

        async def send(event: SubtitleEvent) -> None:
            for word in words.new(event):
                for data in word_messages(word):
                    with guard.writing():
                        await ws.send_bytes(data)

        for event in backlog:
            subscriber.last_seq = event.seq
            await send(event)
        ended = False
        while not ws.closed:
            if not ended:
                try:
                    async with asyncio.timeout(POLL_SECONDS):
                        event = await subscriber.next()
                    if event is None:
                        ended = True
                    else:
                        await send(event)
                except TimeoutError:
                    pass
            # A marker goes out once the events published by the time its audio was processed
            # have been sent (publishing follows a decode in the same loop turn).
            while markers:
                if ready_at is None and (ended or _processed(session, markers[0][1])):
                    ready_at = session.log.last_seq
                if ready_at is None or (not ended and subscriber.last_seq < ready_at):
                    break
                await ws.send_bytes(msgpack.packb({"type": "Marker", "id": markers.popleft()[0]}))
                ready_at = None
            if ended:
                return
