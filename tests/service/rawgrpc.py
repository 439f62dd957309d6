"""A gRPC client over a bare socket (the `h2` package), for what real clients never do:
never open the flow-control window, send a truncated message, or bytes that are no message."""
from __future__ import annotations

import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(payload: bytes, declared: int | None = None) -> bytes:
    """gRPC's length-prefixed message; `declared` lies about the length (a truncated message)."""
    return b"\x00" + struct.pack(">I", len(payload) if declared is None else declared) + payload


@dataclass
class Outcome:
    """What the server did to one stream, as seen on the wire."""

    data: int = 0  # response bytes received (never acknowledged: the window stays shut)
    status: int | None = None  # grpc-status from trailers (or a trailers-only response)
    message: str = ""
    reset: bool = False  # RST_STREAM
    closed: bool = False  # the connection went away (shut down, GOAWAY)
    headers: dict = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status is not None or self.reset or self.closed


class RawClient:
    def __init__(self, address: str, window: int = 0):
        host, port = address.rsplit(":", 1)
        self.address = address
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.outcomes: dict[int, Outcome] = {}
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def call(self, path: str, body: bytes, end: bool = True, metadata: tuple = ()) -> int:
        """Open a call and send `body` (already framed) as its request; returns the stream id."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                        (":authority", self.address), ("content-type", "application/grpc"),
                                        ("te", "trailers"), *metadata])
        self.outcomes[stream] = Outcome()
        deadline = time.monotonic() + 10
        while body and time.monotonic() < deadline and not self.outcomes[stream].ended:
            room = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if room <= 0:  # the server's window is full: wait for its WINDOW_UPDATE
                self.pump(0.2)
                continue
            self.conn.send_data(stream, body[:room])
            body = body[room:]
            self._flush()
        if end and not self.outcomes[stream].ended:
            self.conn.end_stream(stream)
        self._flush()
        return stream

    def wait(self, stream: int, timeout: float) -> Outcome:
        """Read the connection until `stream` ends or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.outcomes[stream].ended and time.monotonic() < deadline:
            self.pump(min(0.2, max(0.01, deadline - time.monotonic())))
        return self.outcomes[stream]

    def pump(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            for outcome in self.outcomes.values():
                outcome.closed = True
            return
        for event in self.conn.receive_data(data):
            outcome = self.outcomes.get(getattr(event, "stream_id", None) or 0)
            if isinstance(event, h2.events.ConnectionTerminated):
                for each in self.outcomes.values():
                    each.closed = True
            elif outcome is None:
                continue
            elif isinstance(event, h2.events.DataReceived):
                outcome.data += len(event.data)  # not acknowledged: the window stays where it was
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                headers = dict(event.headers)
                outcome.headers.update(headers)
                if "grpc-status" in headers:
                    outcome.status = int(headers["grpc-status"])
                    outcome.message = urllib.parse.unquote(headers.get("grpc-message", ""))
            elif isinstance(event, h2.events.StreamReset):
                outcome.reset = True
        self._flush()

    def close(self) -> None:
        self.sock.close()
