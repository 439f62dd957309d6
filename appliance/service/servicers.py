"""The gRPC servicers: Subtitles (Subscribe, Transcribe) and Sessions (List, Get, Export, NameSpeaker)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.pcm import PcmError, PcmFormat
from appliance.audio.sources import PushSource
from appliance.config import RoomAsr, ServerConfig
from appliance.delivery.eventlog import ResumeError
from appliance.delivery.export import NoSpeakerLabels, export
from appliance.delivery.fanout import (
    Backlog,
    SlowSubscriber,
    SlowWriteGuard,
    Subscriber,
    SubscriptionEnded,
    subscribe,
)
from appliance.service.convert import EncodedEvents, state_to_pb
from appliance.service.peers import disconnect
from appliance.session import Session
from appliance.subtitles.names import name_problem

log = logging.getLogger(__name__)


class Rooms(Protocol):
    """What the servicers need of the daemon's sessions."""

    def get(self, session_id: str) -> Session | None: ...

    def all(self) -> list[Session]: ...

    async def room_asr(self, model: str, language: str, task: str) -> RoomAsr:
        """The recognition a pushed stream declared (empty: defaults), checked and its model loaded;
        ValueError says what is wrong."""
        ...

    def open_push(self, session_id: str | None, audio_format: PcmFormat,
                  room: RoomAsr | None = None) -> tuple[Session, PushSource]:
        """A new pushed-audio session; ValueError for an id that cannot name a room, KeyError if
        the id is taken, OverflowError past the limit."""
        ...


class ServiceHooks(Protocol):
    """What the servicers report (metrics)."""

    def event_sent(self, event_kind: str, delay: float | None) -> None: ...

    def subscriber_ended_slow(self, session_id: str) -> None: ...

    def bad_input_seen(self, method: str, reason: str) -> None: ...


class NoHooks:
    def event_sent(self, event_kind: str, delay: float | None) -> None: ...
    def subscriber_ended_slow(self, session_id: str) -> None: ...
    def bad_input_seen(self, method: str, reason: str) -> None: ...


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    await context.abort(code, message)


def _session_or_none(rooms: Rooms, session_id: str) -> Session | None:
    return rooms.get(session_id) if session_id else None


def _no_session(session_id: str) -> str:
    """NOT_FOUND's message: names only what was asked (never the other rooms), and at most 64
    characters of it (a status message travels as metadata, which has a size limit)."""
    return f"no session {session_id[:64]!r}{'...' if len(session_id) > 64 else ''}"


class SubtitlesServicer(pb_grpc.SubtitlesServicer):
    def __init__(self, rooms: Rooms, config: ServerConfig, hooks: ServiceHooks | None = None):
        self.rooms = rooms
        self.config = config
        self.hooks = hooks or NoHooks()
        self.encoded = EncodedEvents()  # responses leave as bytes: see add_subtitles_servicer

    async def Subscribe(self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext) -> None:
        session = _session_or_none(self.rooms, request.session_id)
        if session is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, _no_session(request.session_id))
        await self._stream(session, request.from_seq, request.include_partials, context)

    async def _stream(self, session: Session, from_seq: int, include_partials: bool,
                      context: grpc.aio.ServicerContext, subscriber: Subscriber | None = None) -> None:
        """Retained events after `from_seq`, then live ones, until the session ends."""
        if len(session.fanout.subscribers) >= self.config.max_subscribers_per_session:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"session {session.session_id!r} has its maximum of "
                         f"{self.config.max_subscribers_per_session} subscribers")
        subscriber = subscriber or self._subscriber(include_partials)
        try:
            backlog = subscribe(session.log, session.fanout, from_seq, subscriber)
        except ResumeError as exc:
            await _abort(context, grpc.StatusCode.OUT_OF_RANGE, str(exc))
        guard = SlowWriteGuard(subscriber)
        try:
            for event in backlog:
                subscriber.last_seq = event.seq
                await self._write(context, guard, event, live=False)
            while (event := await subscriber.next()) is not None:
                await self._write(context, guard, event, live=True)
        except SlowSubscriber as exc:
            await self._too_slow(context, session, subscriber, exc, write_pending=False)
        except asyncio.CancelledError:
            if not guard.absorb():
                raise  # the call itself was cancelled
            await self._too_slow(context, session, subscriber, subscriber.failure, write_pending=True)
        except SubscriptionEnded as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            session.fanout.remove(subscriber)

    def _subscriber(self, include_partials: bool) -> Subscriber:
        limits = Backlog(self.config.subscriber_backlog, self.config.subscriber_backlog_seconds,
                         self.config.subscriber_backlog_bytes)
        return Subscriber(include_partials, limits, size=lambda event: len(self.encoded(event)))

    async def _write(self, context: grpc.aio.ServicerContext, guard: SlowWriteGuard, event, live: bool) -> None:
        # The delay is taken as the write starts: grpc hands the bytes to the socket within the
        # call, while its completion waits its turn on the loop behind the other subscribers'.
        started = time.time()
        with guard.writing():
            await context.write(self.encoded(event))
        self.hooks.event_sent(event.kind, started - event.created if live else None)

    async def _too_slow(self, context: grpc.aio.ServicerContext, session: Session, subscriber: Subscriber,
                        exc: Exception, write_pending: bool) -> None:
        self.hooks.subscriber_ended_slow(session.session_id)
        message = f"subscriber too slow ({exc}); resubscribe with from_seq={subscriber.last_seq}"
        if not write_pending:  # nothing of this call waits in the transport: the status goes out now
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        # A write is stuck behind the client's closed flow-control window, and so would the status
        # be (an abort beside a pending write even fails: GRPC_CALL_ERROR_TOO_MANY_OPERATIONS).
        # Cut the connection instead: the client sees it drop at once. The status is recorded
        # for the RPC counters, and the handler ends as a cancelled call, without a second write.
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(message)
        disconnect(context.peer())
        log.info("session %s: %s; its connection was shut down", session.session_id, message)
        raise asyncio.CancelledError

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
            room = await self.rooms.room_asr(first.model, first.language, first.task)
        except ValueError as exc:
            await self._bad(context, str(exc))
        try:
            session, source = self.rooms.open_push(first.session_id or None, audio_format, room)
        except ValueError as exc:
            await self._bad(context, str(exc))
        except KeyError as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc.args[0]))
        except OverflowError as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        subscriber = self._subscriber(include_partials=True)

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
    info = session.info()
    return pb.SessionInfo(
        session_id=info.session_id,
        state=state_to_pb(info.state),
        source=info.source,
        audio_seconds=info.audio_seconds,
        last_seq=info.last_seq,
        subscribers=info.subscribers,
        final_cues=info.final_cues,
        message=info.message,
        model=info.model,
        language=info.language,
        task=info.task,
        degradation=info.degradation,
        decode_lag_seconds=info.decode_lag_seconds,
    )


_EXPORTS = {pb.WEBVTT: "vtt", pb.SRT: "srt", pb.JSON: "json", pb.RTTM: "rttm"}


class SessionsServicer(pb_grpc.SessionsServicer):
    def __init__(self, rooms: Rooms, hooks: ServiceHooks | None = None):
        self.rooms = rooms
        self.hooks = hooks or NoHooks()

    async def _session(self, session_id: str, context: grpc.aio.ServicerContext) -> Session:
        session = _session_or_none(self.rooms, session_id)
        if session is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, _no_session(session_id))
        return session

    async def List(self, request: pb.ListSessionsRequest, context) -> pb.ListSessionsResponse:
        return pb.ListSessionsResponse(sessions=[session_info(s) for s in self.rooms.all()])

    async def Get(self, request: pb.GetSessionRequest, context) -> pb.SessionInfo:
        return session_info(await self._session(request.session_id, context))

    async def Export(self, request: pb.ExportRequest, context) -> pb.ExportResponse:
        session = await self._session(request.session_id, context)
        if request.format not in _EXPORTS:
            self.hooks.bad_input_seen("Export", f"unknown format {request.format}")
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "format must be WEBVTT, SRT, JSON or RTTM")
        try:
            result = export(session.log, _EXPORTS[request.format], duration=session.pipeline.audio_seconds,
                            language=session.language)
        except NoSpeakerLabels as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.ExportResponse(content=result.content, media_type=result.media_type)

    async def NameSpeaker(self, request: pb.NameSpeakerRequest, context) -> pb.NameSpeakerResponse:
        session = _session_or_none(self.rooms, request.session_id)
        if session is None:
            self.hooks.bad_input_seen("NameSpeaker", "unknown session")
            await _abort(context, grpc.StatusCode.NOT_FOUND, _no_session(request.session_id))
        if request.name and (problem := name_problem(request.name)):
            self.hooks.bad_input_seen("NameSpeaker", problem)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            label, updated = session.name_speaker(request.speaker, request.name)
        except KeyError:
            self.hooks.bad_input_seen("NameSpeaker", "unknown speaker")
            # The speaker may be a person's name: never echoed (status messages end up in logs).
            await _abort(context, grpc.StatusCode.NOT_FOUND,
                         f"no such speaker in session {request.session_id!r}: give a label it has "
                         f"({', '.join(sorted(session.names.labels)) or 'none yet'}) or the name one carries")
        return pb.NameSpeakerResponse(speaker=label, name=session.names.display(label) or label,
                                      updated_cues=updated)
