"""Server interceptor counting every RPC by method and final status (grpc_server_handled_total)."""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import grpc


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
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

        def wrap(behaviour):
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
                return streamed

            async def called(request, context):
                error = None
                try:
                    return await behaviour(request, context)
                except BaseException as exc:  # re-raised: CancelledError must reach grpc
                    error = exc
                    raise
                finally:
                    record(service, method, _code(context, error))
            return called

        kinds = {
            (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
            (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
            (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
            (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
        }
        attribute, make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(wrap(getattr(handler, attribute)), request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
