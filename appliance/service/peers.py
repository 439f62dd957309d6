"""Cutting one client's connection, the only way to end a call whose client stopped reading.

A gRPC status travels after the data already queued for the call, and HTTP/2 flow control
holds that data while the client does not read: an abort never arrives, and grpc.aio offers
no way to reset one stream (core's cancel-with-status is not exposed). Shutting down the
connection's socket is what a network failure would do: the client sees the connection
drop (UNAVAILABLE) at once, and a resuming client reconnects with from_seq. grpc core still
owns and later closes the descriptor; only the connection is shut down.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket

log = logging.getLogger(__name__)


def parse_peer(peer: str) -> tuple[str, int] | None:
    """grpc's peer string ('ipv4:127.0.0.1:5123', 'ipv6:[::1]:5123') as (host, port); None otherwise."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, _, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def disconnect(peer: str, fd_dir: str = "/proc/self/fd") -> int:
    """Shut down this process's TCP connections to `peer`; how many there were (0 if none found)."""
    wanted = parse_peer(peer)
    if wanted is None:
        return 0
    cut = 0
    try:
        descriptors = os.listdir(fd_dir)
    except OSError:  # not Linux: the call stays until the client goes
        return 0
    for name in descriptors:
        with contextlib.suppress(OSError, ValueError):
            if not os.readlink(f"{fd_dir}/{name}").startswith("socket:"):
                continue
            duplicate = os.dup(int(name))
            try:
                sock = socket.socket(fileno=duplicate)  # family and type detected from the descriptor
            except OSError:
                os.close(duplicate)
                continue
            with sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                    continue
                host, port = sock.getpeername()[:2]
                if (host.removeprefix("::ffff:"), port) == wanted:
                    sock.shutdown(socket.SHUT_RDWR)
                    cut += 1
    if not cut:
        log.debug("no connection to %s found to shut down", peer)
    return cut
