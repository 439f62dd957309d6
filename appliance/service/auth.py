"""Bearer-token authentication as a server interceptor, with a lockout of addresses that guess.

Tokens come from a file (one per line), are compared in constant time, and are never
logged. Health checks stay open so load balancers and systemd probes need no secret;
health reveals nothing about what is said in a room.

The lockout (delivery/lockout.py) is shared with the HTTP face: an address that keeps failing
is refused every call (even with a valid token) for the lockout period. Refusals are counted;
log lines are one per address per period (the first failure, and the lockout), not one per guess.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from appliance.delivery.lockout import Lockout
from appliance.delivery.tokens import read_tokens, token_matches
from appliance.service.interceptors import around, behaviour_of, rebuild

__all__ = ["OPEN_METHODS", "Lockout", "TokenAuthInterceptor", "read_tokens"]

log = logging.getLogger(__name__)

OPEN_METHODS = ("/grpc.health.v1.Health/",)


def peer_host(peer: str) -> str:
    """The address part of grpc's peer string: 'ipv4:10.0.0.5:5123' -> '10.0.0.5', 'ipv6:[::1]:5123' -> '::1'."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0].strip("[]")
    return peer


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[bytes], on_failure: Callable[[str], None] | None = None,
                 lockout: Lockout | None = None):
        self._tokens = tokens
        self._on_failure = on_failure
        self._lockout = lockout or Lockout(10, 30.0)

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
        # The peer's address is only known to the call's context, hence a check inside the call.
        async def check(request, context: grpc.aio.ServicerContext):
            await self._check(details.method, reason, context)
            return request
        return rebuild(handler, around(behaviour_of(handler), check))

    async def _check(self, method: str, reason: str | None, context: grpc.aio.ServicerContext) -> None:
        address = peer_host(context.peer())
        locked = self._lockout.remaining(address)
        if locked:
            self._count(method)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"too many failed authentications from this address; retry in {locked:.0f} s")
        if reason is None:
            return
        self._count(method)
        outcome = self._lockout.failed(address)
        if outcome == "locked":
            log.warning("rejected %s from %s: %s; address locked out for %.0f s after %d failures", method,
                        address, reason, self._lockout.remaining(address), self._lockout.max_failures)
        elif outcome == "first":
            log.warning("rejected %s from %s: %s (further failures from it are not logged until it is locked out)",
                        method, address, reason)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    def _count(self, method: str) -> None:
        if self._on_failure:
            self._on_failure(method.rsplit("/", 1)[-1])  # '/appliance.v1.Sessions/List' -> 'List'
