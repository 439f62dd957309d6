"""Fan-out: 10, 100 and 1,000 subscribers on one session of the real daemon.

The daemon runs as a subprocess (`python -m appliance serve`). For each N, one client
process (this one, grpc.aio) pushes the sample conversation at real-time pace through
Transcribe into a fresh session, and N Subscribe streams (include_partials) follow it.
The delay of a delivery is its receipt wall time minus the event's `created` (the
daemon's wall clock when it published the event): server fan-out, loopback and this
client's own scheduling together. Only events published after all N streams were
open count (the replay of retained events at subscribe time is not live delay).

Subscribers take raw bytes (no deserializer on the call) and parse after the run, so
the client's per-delivery cost is the least grpc.aio allows; its CPU seconds are
recorded beside the daemon's so the two can be told apart.

The daemon runs its default configuration (diarization on) except that a session may
have 1,001 subscribers: the pushing call is one. Each row also has the fan-out spread
(first to last receipt of one event) and both processes' CPU seconds.

Run (about 80 s): `pytest bench/test_fanout_bench.py --benchmark-enable --benchmark-only -s`
FANOUT_SIZES=10,100 runs fewer sizes; FANOUT_EXTRA_CONFIG adds TOML to the daemon's config
(e.g. $'[diarization]\nlive = false').
"""
from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.service.client import chunks
from bench.load import process_cpu_seconds
from tests.e2e.daemon import DaemonProcess

SIZES = tuple(int(n) for n in os.environ.get("FANOUT_SIZES", "10,100,1000").split(","))
TARGET_P99_MS = 50
AUDIO = (6.0, 30.0)  # seconds of the sample pushed: from just before the first word to its end
CHUNK_SECONDS = 0.1
# N subscribers share N/10 HTTP/2 connections (FANOUT_STREAMS_PER_CONNECTION=1: one each)
STREAMS_PER_CONNECTION = int(os.environ.get("FANOUT_STREAMS_PER_CONNECTION", "10"))
SUBSCRIBE_METHOD = "/appliance.v1.Subtitles/Subscribe"
# The pushing Transcribe call is a subscriber of its session too: allow it beside 1,000 others.
EXTRA_CONFIG = os.environ.get("FANOUT_EXTRA_CONFIG", "")
CONFIG = f"""[server]
listen = "{{address}}"
max_subscribers_per_session = {max(SIZES) + 1}
{EXTRA_CONFIG}
"""


@dataclass
class Stream:
    """What one subscriber received: (receipt wall time, raw SubtitleEvent bytes)."""

    received: list[tuple[float, bytes]] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    seq: int
    kind: int
    delay: float  # seconds


def parse(stream: Stream) -> list[Delivery]:
    cache: dict[bytes, pb.SubtitleEvent] = {}  # every subscriber got the same bytes: parse each once
    out = []
    for at, raw in stream.received:
        event = cache.get(raw) or cache.setdefault(raw, pb.SubtitleEvent.FromString(raw))
        out.append(Delivery(event.seq, event.kind, at - event.created.ToNanoseconds() / 1e9))
    return out


def fanout_row(subscribers: int, streams: list[list[Delivery]], ready_seq: int, last_seq: int,
               kept: set[int]) -> dict:
    """The section row: live deliveries' delay percentiles and the events subscribers missed.

    `kept` are the session's non-PARTIAL seqs (all retained). A seq a subscriber did not get
    between its first event and the session's last is `lost` if it is one of those, and a
    `coalesced_partials` otherwise: a PARTIAL replaced by a newer one before it was sent, as
    the API allows (two published in one loop turn, or a subscriber behind).
    """
    delays, lost, coalesced = [], 0, 0
    by_event: dict[int, list[float]] = {}
    for deliveries in streams:
        seqs = {d.seq for d in deliveries}
        missing = set(range(min(seqs, default=1), last_seq + 1)) - seqs
        lost += len(missing & kept)
        coalesced += len(missing - kept)
        for d in deliveries:
            if d.seq > ready_seq:
                delays.append(d.delay)
                by_event.setdefault(d.seq, []).append(d.delay)
    ms = np.array(delays) * 1e3
    # How long one event takes to reach every subscriber that got it, and its first receipt:
    # the fan-out's own spread, apart from the path's fixed delay.
    spread = [(max(v) - min(v)) * 1e3 for v in by_event.values()]
    first = [min(v) * 1e3 for v in by_event.values()]
    return {
        "subscribers": subscribers,
        "events": last_seq - ready_seq,
        "deliveries": len(delays),
        "lost": lost,
        "coalesced_partials": coalesced,
        "delay_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "delay_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "delay_max_ms": round(float(ms.max()), 2),
        "first_delay_p50_ms": round(float(np.percentile(first, 50)), 2),
        "spread_p50_ms": round(float(np.percentile(spread, 50)), 2),
        "spread_max_ms": round(float(max(spread)), 2),
    }


async def subscribe(channel: grpc.aio.Channel, session_id: str, stream: Stream) -> None:
    call = channel.unary_stream(SUBSCRIBE_METHOD, request_serializer=pb.SubscribeRequest.SerializeToString,
                                response_deserializer=None)(
        pb.SubscribeRequest(session_id=session_id, include_partials=True))
    try:
        async for raw in call:
            stream.received.append((time.time(), raw))
            stream.first.set()
    except grpc.aio.AioRpcError as exc:
        stream.error = f"{exc.code().name}: {exc.details()}"
        stream.first.set()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_size(address: str, daemon_pid: int, n: int, audio: list[pb.AudioChunk]) -> dict:
    session_id = f"fanout-{n}"
    first = pb.AudioChunk()
    first.CopyFrom(audio[0])
    first.session_id = session_id  # a fresh session per size
    go = asyncio.Event()

    async def requests():
        yield first  # creates the session; the rest waits until every subscriber is in
        await go.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, chunk in enumerate(audio[1:], 1):
            await asyncio.sleep(max(0.0, start + index * CHUNK_SECONDS - loop.time()))
            yield chunk

    async with grpc.aio.insecure_channel(address) as control:
        push = pb_grpc.SubtitlesStub(control).Transcribe(requests())
        pushed = asyncio.create_task(_drain(push))
        sessions = pb_grpc.SessionsStub(control)
        while True:
            try:
                await sessions.Get(pb.GetSessionRequest(session_id=session_id))
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
                await asyncio.sleep(0.02)
        channels = [grpc.aio.insecure_channel(address) for _ in range(-(-n // STREAMS_PER_CONNECTION))]
        streams = [Stream() for _ in range(n)]
        tasks = [asyncio.create_task(subscribe(channels[i // STREAMS_PER_CONNECTION], session_id, s))
                 for i, s in enumerate(streams)]
        await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 60)
        errors = {s.error for s in streams if s.error}
        assert not errors, errors
        ready_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        cpu_daemon, cpu_client, wall = process_cpu_seconds(daemon_pid), own_cpu_seconds(), time.monotonic()
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), AUDIO[1] - AUDIO[0] + 60)
        cpu_daemon, cpu_client = process_cpu_seconds(daemon_pid) - cpu_daemon, own_cpu_seconds() - cpu_client
        wall = time.monotonic() - wall
        await pushed
        for channel in channels:
            await channel.close()
        last_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        kept = {event.seq async for event in pb_grpc.SubtitlesStub(control).Subscribe(
            pb.SubscribeRequest(session_id=session_id, include_partials=False))}
    errors = {s.error for s in streams if s.error}
    assert not errors, errors
    row = fanout_row(n, [parse(s) for s in streams], ready_seq, last_seq, kept)
    row |= {"connections": len(channels), "seconds": round(wall, 1),
            "daemon_cpu_seconds": round(cpu_daemon, 2), "client_cpu_seconds": round(cpu_client, 2)}
    return row


async def _drain(call) -> None:
    async for _ in call:
        pass


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    process = DaemonProcess(CONFIG, tmp_path_factory.mktemp("fanout")).start(timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def audio(sample_dir) -> list[pb.AudioChunk]:
    samples = load_audio(sample_dir / "sample.wav")[int(AUDIO[0] * 16000) : int(AUDIO[1] * 16000)]
    return chunks(encode_s16le(samples), 16000, pb.PCM_S16LE, 1, chunk_seconds=CHUNK_SECONDS)


def test_fanout(benchmark, results, daemon, audio):
    rows = []

    def run():
        for n in SIZES:
            rows.append(asyncio.run(one_size(daemon.address, daemon.process.pid, n, audio)))
            print(f"\nfan-out {rows[-1]}")

    benchmark.pedantic(run, rounds=1, iterations=1)
    results.record("fanout", {"rows": rows, "target_p99_ms": TARGET_P99_MS,
                              "config": {"server.max_subscribers_per_session": max(SIZES) + 1,
                                         "streams_per_connection": STREAMS_PER_CONNECTION,
                                         "audio_seconds": AUDIO[1] - AUDIO[0], "extra_config": EXTRA_CONFIG}})
    for row in rows:
        assert row["lost"] == 0, row
    benchmark.extra_info["rows"] = rows
