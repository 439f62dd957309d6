"""Bearer-token authentication as a server interceptor, with a lockout of addresses that guess.

Tokens come from a file (one per line), are compared in constant time, and are never
logged. Health checks stay open so load balancers and systemd probes need no secret;
health reveals nothing about what is said in a room.

An address that fails `max_failures` times within the lockout period is refused every call
(even with a valid token: its guesses are then worth nothing) for the lockout period, which
doubles for each further lockout while it keeps failing. Refusals are counted; log lines are
one per address per period (the first failure, and the lockout), not one per guess.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from appliance.delivery.tokens import read_tokens, token_matches
from appliance.service.interceptors import around, behaviour_of, rebuild

__all__ = ["OPEN_METHODS", "Lockout", "TokenAuthInterceptor", "read_tokens"]

log = logging.getLogger(__name__)

OPEN_METHODS = ("/grpc.health.v1.Health/",)
MAX_LOCKOUT_SECONDS = 3600.0


def peer_host(peer: str) -> str:
    """The address part of grpc's peer string: 'ipv4:10.0.0.5:5123' -> '10.0.0.5', 'ipv6:[::1]:5123' -> '::1'."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0].strip("[]")
    return peer


@dataclass
class _Record:
    failures: int = 0
    since: float = 0.0  # first failure of the current count
    locked_until: float = 0.0
    strikes: int = 0  # lockouts so far, while the address keeps failing


class Lockout:
    """Failed authentications per address (pure: the clock is injected)."""

    def __init__(self, max_failures: int, seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000):
        self.max_failures = max_failures
        self.seconds = seconds
        self.clock = clock
        self.max_addresses = max_addresses  # bounded memory whatever the number of addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def remaining(self, address: str) -> float:
        """Seconds `address` stays locked out (0: not locked)."""
        record = self._records.get(address)
        return max(0.0, record.locked_until - self.clock()) if record else 0.0

    def failed(self, address: str) -> str:
        """Record a failure: 'first' (first of a period), 'locked' (it starts a lockout) or 'again'."""
        now = self.clock()
        record = self._records.pop(address, None) or _Record()
        self._records[address] = record  # most recently failing last
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        if record.locked_until and now > record.locked_until + self.seconds * 2 ** record.strikes:
            record.strikes = 0  # quiet for a whole period after its lockout: forgiven
        if record.failures == 0 or now - record.since > self.seconds:
            record.failures, record.since = 0, now
        record.failures += 1
        if record.failures >= self.max_failures:
            record.locked_until = now + min(self.seconds * 2 ** record.strikes, MAX_LOCKOUT_SECONDS)
            record.strikes += 1
            record.failures = 0
            return "locked"
        return "first" if record.failures == 1 else "again"


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
            self._on_failure(method)
