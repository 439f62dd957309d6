"""Bearer-token authentication as a server interceptor.

Tokens come from a file (one per line), are compared in constant time, and are never
logged. Health checks stay open so load balancers and systemd probes need no secret;
health reveals nothing about what is said in a room.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from appliance.delivery.tokens import read_tokens, token_matches

__all__ = ["OPEN_METHODS", "TokenAuthInterceptor", "read_tokens"]

log = logging.getLogger(__name__)

OPEN_METHODS = ("/grpc.health.v1.Health/",)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[bytes], on_failure: Callable[[str], None] | None = None):
        self._tokens = tokens
        self._on_failure = on_failure

    def _authorised(self, metadata: tuple) -> str | None:
        """None when a valid token is present, else why not."""
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            return "missing authorization metadata: send 'authorization: Bearer <token>'"
        scheme, _, token = (values[0] if isinstance(values[0], str) else values[0].decode()).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "authorization metadata must be 'Bearer <token>'"
        return None if token_matches(token, self._tokens) else "invalid token"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        reason = self._authorised(details.invocation_metadata)
        if reason is None:
            return handler
        log.warning("rejected %s: %s", details.method, reason)
        if self._on_failure:
            self._on_failure(details.method)
        return _denied(handler, reason)


def _denied(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    async def deny(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def deny_stream(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    kind = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(deny_stream if handler.response_streaming else deny,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
