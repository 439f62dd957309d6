"""The HTTP face's token check, on the gRPC face's rules: bearer tokens compared in constant
time, and the per-address lockout shared with gRPC (delivery/lockout.py). A locked-out address
gets 429 with Retry-After for everything but the open routes, a valid token included; every
refusal is counted, and the log has one line per address per period (its first failure, and its
lockout), not one per guess.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

from aiohttp import web

from appliance.delivery.lockout import Lockout
from appliance.delivery.tokens import token_matches

log = logging.getLogger(__name__)


class TokenGate:
    def __init__(self, tokens: list[bytes], lockout: Lockout, on_failure: Callable[[str], None]):
        self.tokens = tokens
        self.lockout = lockout
        self.on_failure = on_failure  # the metric: called with the route template (or endpoint name)

    def matches(self, presented: str) -> bool:
        return token_matches(presented, self.tokens)

    def locked(self, address: str, route: str) -> web.HTTPException | None:
        """The 429 to answer while `address` is locked out (the refusal counted), else None."""
        remaining = self.lockout.remaining(address)
        if not remaining:
            return None
        self.on_failure(route)
        seconds = math.ceil(remaining)
        message = f"too many failed authentications from this address; retry in {seconds} s"
        return web.HTTPTooManyRequests(text=json.dumps({"error": message}) + "\n", content_type="application/json",
                                       headers={"Retry-After": str(seconds)})

    def failed(self, address: str, route: str, reason: str) -> None:
        """Count a refused token from `address` (it may start a lockout) and log it, rate-limited."""
        self.on_failure(route)
        outcome = self.lockout.failed(address)
        if outcome == "locked":
            log.warning("rejected %s from %s: %s; address locked out for %.0f s after %d failures", route, address,
                        reason, self.lockout.remaining(address), self.lockout.max_failures)
        elif outcome == "first":
            log.warning("rejected %s from %s: %s (further failures from it are not logged until it is locked out)",
                        route, address, reason)
