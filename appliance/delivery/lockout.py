"""Failed authentications per peer address, and the lockout of addresses that guess: one record
shared by every face (gRPC, HTTP), so guesses on one count against the others.

An address that fails `max_failures` times within the lockout period is refused everything
(even a valid token: its guesses are then worth nothing) for the lockout period, which doubles
for each further lockout while it keeps failing. The faces count every refusal and log one line
per address per period (its first failure, and its lockout), not one per guess.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_LOCKOUT_SECONDS = 3600.0


@dataclass
class _Record:
    failures: int = 0
    since: float = 0.0  # first failure of the current count
    locked_until: float = 0.0
    strikes: int = 0  # lockouts so far, while the address keeps failing


def address_key(address: str) -> str:
    """One key per client whichever face it uses: an IPv4 client of a dual-stack listener is
    '::ffff:10.0.0.5' to it, '10.0.0.5' to another."""
    return address.removeprefix("::ffff:")


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
        record = self._records.get(address_key(address))
        return max(0.0, record.locked_until - self.clock()) if record else 0.0

    def failed(self, address: str) -> str:
        """Record a failure: 'first' (first of a period), 'locked' (it starts a lockout) or 'again'."""
        now = self.clock()
        address = address_key(address)
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
