"""Server interceptors: RPC outcomes counted (grpc_server_handled_total), and the request checks the
transport cannot make (undecodable messages, truncated or idle requests) turned into clear statuses."""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from appliance.logs import Throttle

log = logging.getLogger(__name__)

_MAKERS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def behaviour_of(handler: grpc.RpcMethodHandler) -> Callable:
    return getattr(handler, _MAKERS[(handler.request_streaming, handler.response_streaming)][0])


def rebuild(handler: grpc.RpcMethodHandler, behaviour: Callable, request_streaming: bool | None = None,
            request_deserializer: Callable | None = None) -> grpc.RpcMethodHandler:
    """`handler` with another behaviour (and, optionally, request kind or deserializer)."""
    streaming = handler.request_streaming if request_streaming is None else request_streaming
    make = _MAKERS[(streaming, handler.response_streaming)][1]
    return make(behaviour, request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer)


def around(behaviour: Callable, before: Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]) -> Callable:
    """`behaviour` preceded by `before(request, context)`, which may abort or replace the request.

    Keeps the behaviour's form: grpc.aio tells an async generator (responses yielded) from a
    coroutine (context.write, or one response returned) by inspecting the function."""
    if inspect.isasyncgenfunction(behaviour):
        async def streamed(request, context):
            request = await before(request, context)
            async for response in behaviour(request, context):
                yield response
        return streamed

    async def called(request, context):
        return await behaviour(await before(request, context), context)
    return called


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(error, asyncio.CancelledError) and code is None:
        return grpc.StatusCode.CANCELLED.name
    if code is None:
        return grpc.StatusCode.OK.name if error is None else grpc.StatusCode.UNKNOWN.name
    return code.name if isinstance(code, grpc.StatusCode) else grpc.StatusCode(code).name


class RpcCountingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, record: Callable[[str, str, str], None]):
        self._record = record  # (service, method, code)

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        service, _, method = details.method.lstrip("/").rpartition("/")
        record = self._record
        behaviour = behaviour_of(handler)

        if inspect.isasyncgenfunction(behaviour):
            async def streamed(request, context):
                error = None
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    record(service, method, _code(context, error))
            return rebuild(handler, streamed)

        async def called(request, context):
            error = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:  # re-raised: CancelledError must reach grpc
                error = exc
                raise
            finally:
                record(service, method, _code(context, error))
        return rebuild(handler, called)


class Undecodable:
    """What a lenient deserializer returns for bytes that are not the expected message."""

    def __init__(self, reason: str):
        self.reason = reason


def lenient(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object]:
    """`deserializer`, returning Undecodable instead of raising: grpc.aio would log a traceback
    and answer UNKNOWN for an exception raised while it decodes, before any handler runs."""
    def decode(data: bytes) -> object:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, and whatever else garbage provokes
            return Undecodable(str(exc) or type(exc).__name__)
    return decode


class GuardedRequests:
    """A client's request stream with a time limit per message and undecodable messages refused.

    A failure read in the handler's own task aborts the call there. Read from another task
    (a push handler's feeding task), it ends the stream instead, with the call's status set:
    the handler winds up what the earlier messages started and the client gets that status.
    """

    def __init__(self, requests: AsyncIterator, context: grpc.aio.ServicerContext, idle_seconds: float,
                 note: Callable[[str], None]):
        self._requests = aiter(requests)
        self._context = context
        self._idle = idle_seconds
        self._note = note  # counts and logs the refusal
        self._task = asyncio.current_task()
        self.failed = False

    def __aiter__(self) -> GuardedRequests:
        return self

    async def __anext__(self) -> object:
        if self.failed:
            raise StopAsyncIteration
        try:
            async with asyncio.timeout(self._idle):
                message = await anext(self._requests)
        except TimeoutError:
            await self._fail(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"no request message for {self._idle:g} s (server.push_idle_seconds); stream ended")
        if isinstance(message, Undecodable):
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request message: {message.reason}")
        return message

    async def _fail(self, code: grpc.StatusCode, message: str) -> None:
        self.failed = True
        self._note(message)
        if asyncio.current_task() is self._task:
            await self._context.abort(code, message)
        self._context.set_code(code)
        self._context.set_details(message)
        raise StopAsyncIteration


class RequestGuardInterceptor(grpc.aio.ServerInterceptor):
    """Every request message decoded leniently; undecodable ones, and requests that do not arrive
    (a truncated unary message, an idle stream), get a status naming why and are counted.

    A unary request is read as a one-message stream: grpc.aio only calls a unary handler once
    the whole message has arrived, so a truncated one would otherwise hold its call forever.
    """

    def __init__(self, request_seconds: float, idle_seconds: float,
                 on_bad: Callable[[str, str], None] | None = None):
        self._request_seconds = request_seconds
        self._idle_seconds = idle_seconds
        self._on_bad = on_bad or (lambda method, reason: None)
        self._throttle = Throttle()

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rpartition("/")[2]
        decode = lenient(handler.request_deserializer)

        def note(message: str) -> None:
            self._on_bad(method, message)
            held = self._throttle(method)
            if held is not None:
                log.info("refused a %s request: %s%s", method, message,
                         f" ({held} more refused since the last such line)" if held else "")

        async def refuse(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
            note(message)
            await context.abort(code, message)

        if handler.request_streaming:
            async def guarded(requests, context):
                return GuardedRequests(requests, context, self._idle_seconds, note)
            return rebuild(handler, around(behaviour_of(handler), guarded), request_deserializer=decode)

        async def one(requests, context):
            try:
                async with asyncio.timeout(self._request_seconds):
                    request = await anext(aiter(requests), None)
            except TimeoutError:
                await refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"the request message did not arrive complete within {self._request_seconds:g} s")
            if request is None:
                await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "no request message")
            if isinstance(request, Undecodable):
                await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request message: {request.reason}")
            return request
        return rebuild(handler, around(behaviour_of(handler), one), request_streaming=True,
                       request_deserializer=decode)
