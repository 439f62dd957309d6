"""The gRPC servicers: Subtitles (Subscribe, Transcribe) and Sessions (List, Get, Export)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.pcm import PcmError, PcmFormat
from appliance.audio.sources import PushSource
from appliance.config import ServerConfig
from appliance.delivery.eventlog import ResumeError
from appliance.delivery.fanout import SlowSubscriber, Subscriber, SubscriptionEnded
from appliance.service.convert import EncodedEvents, state_to_pb
from appliance.session import Session
from appliance.subtitles.events import EventKind
from appliance.subtitles.writers import CUE_WRITERS, to_rttm, turns_from_words

log = logging.getLogger(__name__)


class Rooms(Protocol):
    """What the servicers need of the daemon's sessions."""

    def get(self, session_id: str) -> Session | None: ...

    def all(self) -> list[Session]: ...

    def open_push(self, session_id: str | None, audio_format: PcmFormat) -> tuple[Session, PushSource]:
        """A new pushed-audio session; KeyError if the id is taken, OverflowError past the limit."""
        ...


class ServiceHooks(Protocol):
    """What the servicers report (metrics)."""

    def event_sent(self, event_kind: str) -> None: ...

    def subscriber_ended_slow(self, session_id: str) -> None: ...

    def bad_input_seen(self, method: str, reason: str) -> None: ...


class NoHooks:
    def event_sent(self, event_kind: str) -> None: ...
    def subscriber_ended_slow(self, session_id: str) -> None: ...
    def bad_input_seen(self, method: str, reason: str) -> None: ...


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    await context.abort(code, message)


def _session_or_none(rooms: Rooms, session_id: str) -> Session | None:
    return rooms.get(session_id) if session_id else None


class _SlowWriteGuard:
    """Gets a handler out of a write that a subscriber marked slow will never finish.

    A client that stops reading blocks `context.write` (HTTP/2 flow control). When the
    fan-out marks its subscriber slow during such a write, the handler's task is cancelled
    out of it and ends the call with RESOURCE_EXHAUSTED. Other failures (a bad push) wait
    for the write: that client is reading. One guard per call, not a task raced against
    every write: at 1,000 subscribers per-write tasks were a large part of the fan-out cost.
    """

    def __init__(self, subscriber: Subscriber):
        self.task = asyncio.current_task()
        self.writing = False
        self.fired = False
        subscriber.on_failure = self._failed

    def _failed(self, failure: Exception) -> None:
        if self.writing and isinstance(failure, SlowSubscriber) and not self.fired:
            self.fired = True
            self.task.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True if it was the guard's alone (now undone), False if the call's."""
        return self.fired and self.task.uncancel() == 0


class SubtitlesServicer(pb_grpc.SubtitlesServicer):
    def __init__(self, rooms: Rooms, config: ServerConfig, hooks: ServiceHooks | None = None):
        self.rooms = rooms
        self.config = config
        self.hooks = hooks or NoHooks()
        self.encoded = EncodedEvents()  # responses leave as bytes: see add_subtitles_servicer

    async def Subscribe(self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext) -> None:
        session = _session_or_none(self.rooms, request.session_id)
        if session is None:
            known = ", ".join(s.session_id for s in self.rooms.all()) or "none"
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no session {request.session_id!r} (sessions: {known})")
        await self._stream(session, request.from_seq, request.include_partials, context)

    async def _stream(self, session: Session, from_seq: int, include_partials: bool,
                      context: grpc.aio.ServicerContext, subscriber: Subscriber | None = None) -> None:
        """Retained events after `from_seq`, then live ones, until the session ends."""
        if len(session.fanout.subscribers) >= self.config.max_subscribers_per_session:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"session {session.session_id!r} has its maximum of "
                         f"{self.config.max_subscribers_per_session} subscribers")
        try:
            backlog = session.log.since(from_seq)
        except ResumeError as exc:
            await _abort(context, grpc.StatusCode.OUT_OF_RANGE, str(exc))
        subscriber = subscriber or Subscriber(include_partials, self.config.subscriber_backlog)
        session.fanout.add(subscriber)  # same loop turn as `since`: nothing falls in between
        guard = _SlowWriteGuard(subscriber)
        try:
            for event in backlog:
                if event.kind != EventKind.PARTIAL or include_partials:
                    subscriber.last_seq = event.seq
                    await self._write(context, guard, event)
            while (event := await subscriber.next()) is not None:
                await self._write(context, guard, event)
        except SlowSubscriber as exc:
            await self._too_slow(context, session, subscriber, exc)
        except asyncio.CancelledError:
            if not guard.absorb():
                raise  # the call itself was cancelled
            await self._too_slow(context, session, subscriber, subscriber.failure)
        except SubscriptionEnded as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            session.fanout.remove(subscriber)

    async def _write(self, context: grpc.aio.ServicerContext, guard: _SlowWriteGuard, event) -> None:
        guard.writing = True
        try:
            await context.write(self.encoded(event))
        finally:
            guard.writing = False
        self.hooks.event_sent(event.kind)

    async def _too_slow(self, context: grpc.aio.ServicerContext, session: Session, subscriber: Subscriber,
                        exc: Exception) -> None:
        self.hooks.subscriber_ended_slow(session.session_id)
        await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"subscriber too slow ({exc}); resubscribe with from_seq={subscriber.last_seq}")

    async def Transcribe(self, request_iterator: AsyncIterator[pb.AudioChunk],
                         context: grpc.aio.ServicerContext) -> None:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await self._bad(context, "no audio chunk received")
        if not (first.sample_rate and first.encoding and first.channels):
            await self._bad(context, "the first chunk must declare sample_rate, encoding and channels")
        declared = (first.sample_rate, first.encoding, first.channels)
        encoding = pb.Encoding.Name(first.encoding) if first.encoding in pb.Encoding.values() else str(first.encoding)
        try:
            audio_format = PcmFormat(first.sample_rate, encoding, first.channels)
        except PcmError as exc:
            await self._bad(context, str(exc))
        try:
            session, source = self.rooms.open_push(first.session_id or None, audio_format)
        except KeyError as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc.args[0]))
        except OverflowError as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        subscriber = Subscriber(include_partials=True, max_backlog=self.config.subscriber_backlog)

        async def feed() -> None:
            chunk = first
            try:
                while chunk is not None:
                    # A later chunk may leave the format unset (all zero), or repeat it exactly.
                    stated = (chunk.sample_rate, chunk.encoding, chunk.channels)
                    if any(stated) and stated != declared:
                        raise PcmError("the audio format cannot change within a stream")
                    if len(chunk.data) > self.config.max_message_bytes:
                        raise PcmError(f"chunk of {len(chunk.data)} bytes exceeds the "
                                       f"{self.config.max_message_bytes}-byte limit; send smaller chunks")
                    if chunk.data:
                        await source.push_pcm(chunk.data)
                    chunk = await anext(request_iterator, None)
            except PcmError as exc:
                self.hooks.bad_input_seen("Transcribe", str(exc))
                subscriber.fail(SubscriptionEnded(f"bad audio chunk: {exc}; the session ended with the audio before it"))
            finally:
                await source.close()

        feeding = asyncio.create_task(feed())
        try:
            await self._stream(session, 0, True, context, subscriber)
        finally:
            feeding.cancel()

    async def _bad(self, context: grpc.aio.ServicerContext, message: str) -> None:
        self.hooks.bad_input_seen("Transcribe", message)
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, message)


def add_subtitles_servicer(servicer: SubtitlesServicer, server: grpc.aio.Server) -> None:
    """The generated add_SubtitlesServicer_to_server, but responses go out as the bytes the
    servicer already encoded: one serialisation per event, not one per subscriber."""
    handlers = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=pb.SubscribeRequest.FromString, response_serializer=None),
        "Transcribe": grpc.stream_stream_rpc_method_handler(
            servicer.Transcribe, request_deserializer=pb.AudioChunk.FromString, response_serializer=None),
    }
    name = pb.DESCRIPTOR.services_by_name["Subtitles"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def session_info(session: Session) -> pb.SessionInfo:
    return pb.SessionInfo(
        session_id=session.session_id,
        state=state_to_pb(session.state),
        source=session.source_kind,
        audio_seconds=session.pipeline.audio_seconds,
        last_seq=session.log.last_seq,
        subscribers=len(session.fanout.subscribers),
        final_cues=session.log.final_cues,
        message=session.message,
    )


_EXPORTS = {pb.WEBVTT: ("vtt", "text/vtt"), pb.SRT: ("srt", "application/x-subrip"),
            pb.JSON: ("json", "application/json"), pb.RTTM: ("rttm", "text/plain")}


class SessionsServicer(pb_grpc.SessionsServicer):
    def __init__(self, rooms: Rooms):
        self.rooms = rooms

    async def _session(self, session_id: str, context: grpc.aio.ServicerContext) -> Session:
        session = _session_or_none(self.rooms, session_id)
        if session is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no session {session_id!r}")
        return session

    async def List(self, request: pb.ListSessionsRequest, context) -> pb.ListSessionsResponse:
        return pb.ListSessionsResponse(sessions=[session_info(s) for s in self.rooms.all()])

    async def Get(self, request: pb.GetSessionRequest, context) -> pb.SessionInfo:
        return session_info(await self._session(request.session_id, context))

    async def Export(self, request: pb.ExportRequest, context) -> pb.ExportResponse:
        session = await self._session(request.session_id, context)
        if request.format not in _EXPORTS:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "format must be WEBVTT, SRT, JSON or RTTM")
        name, media_type = _EXPORTS[request.format]
        cues = session.log.cues()
        if name == "rttm":
            turns = turns_from_words([w for cue in cues for w in cue.words])
            if not turns:
                await _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                             f"session {session.session_id!r} has no speaker labels (diarization off or no speech yet)")
            content = to_rttm(turns, session.session_id)
        else:
            content = CUE_WRITERS[name](cues, duration=session.pipeline.audio_seconds, language=session.language)
        return pb.ExportResponse(content=content, media_type=media_type)
