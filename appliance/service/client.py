"""Client side: channel with TLS and token, a resuming subscription, the health probe."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}


def free_port() -> int:
    """A loopback port free now, for a daemon this process is about to start (demo, tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def health_status(channel: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> str:
    """grpc.health.v1 Check of `service`: SERVING, NOT_SERVING, ... or the call's failure
    (NOT_FOUND for an unknown service, UNAVAILABLE while nothing answers)."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@dataclass(frozen=True)
class Endpoint:
    address: str = "127.0.0.1:50051"
    ca: Path | None = None  # set: TLS, trusting this CA (or self-signed server certificate)
    cert: Path | None = None  # client certificate for mTLS
    key: Path | None = None
    token_file: Path | None = None
    server_name: str | None = None  # TLS name to check when the address is an IP
    options: tuple[tuple[str, int | str], ...] = ()  # grpc channel arguments

    def channel(self) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(self.address, options=list(self.options))
        creds = grpc.ssl_channel_credentials(
            self.ca.read_bytes(),
            self.key.read_bytes() if self.key else None,
            self.cert.read_bytes() if self.cert else None,
        )
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        options += list(self.options)
        return grpc.aio.secure_channel(self.address, creds, options=options)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.token_file is None:
            return ()
        return (("authorization", f"Bearer {self.token_file.read_text().split()[0]}"),)


async def follow(
    endpoint: Endpoint, session_id: str, include_partials: bool, from_seq: int = 0, retries: int = 10,
) -> AsyncIterator[pb.SubtitleEvent]:
    """A session's events; reconnects with from_seq after a failure, so no FINAL is lost.

    Ends when the session ends. Retries with backoff on transient failures (a subscriber
    the server ended as too slow among them: RESOURCE_EXHAUSTED, or its connection shut
    down, UNAVAILABLE); other statuses (NOT_FOUND, UNAUTHENTICATED, ...) are raised.
    """
    last_seq, failures = from_seq, 0
    while True:
        try:
            async with endpoint.channel() as channel:
                stub = pb_grpc.SubtitlesStub(channel)
                request = pb.SubscribeRequest(session_id=session_id, from_seq=last_seq,
                                              include_partials=include_partials)
                async for event in stub.Subscribe(request, metadata=endpoint.metadata()):
                    failures = 0
                    last_seq = event.seq
                    yield event
                    if event.kind == pb.SubtitleEvent.SESSION_STATE and event.state == pb.ENDED:
                        return
                return
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or failures >= retries:
                raise
            failures += 1
            delay = min(0.2 * 2**failures, 5.0)
            log.warning("subscription interrupted (%s: %s); resuming after seq %d in %.1f s",
                        exc.code().name, exc.details(), last_seq, delay)
            await asyncio.sleep(delay)


def chunks(pcm: bytes, sample_rate: int, encoding: int, channels: int, session_id: str = "",
           chunk_seconds: float = 0.1) -> list[pb.AudioChunk]:
    """Interleaved PCM split into AudioChunks; the first declares the format."""
    width = (2 if encoding == pb.PCM_S16LE else 4) * channels
    step = max(1, int(sample_rate * chunk_seconds)) * width
    out = [pb.AudioChunk(data=pcm[i : i + step]) for i in range(0, len(pcm), step)]
    out[0].MergeFrom(pb.AudioChunk(session_id=session_id, sample_rate=sample_rate, encoding=encoding,
                                   channels=channels))
    return out


async def transcribe(
    endpoint: Endpoint, audio: list[pb.AudioChunk], realtime: bool, chunk_seconds: float = 0.1,
) -> AsyncIterator[pb.SubtitleEvent]:
    """Push chunks (at real-time pace, or as fast as the server takes them); yield the subtitles."""

    async def requests() -> AsyncIterator[pb.AudioChunk]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, chunk in enumerate(audio):
            if realtime:
                await asyncio.sleep(max(0.0, start + index * chunk_seconds - loop.time()))
            yield chunk

    async with endpoint.channel() as channel:
        stub = pb_grpc.SubtitlesStub(channel)
        async for event in stub.Transcribe(requests(), metadata=endpoint.metadata()):
            yield event
