"""Fan-out: 10, 100 and 1,000 subscribers on one session of the real daemon.

The daemon runs as a subprocess (`python -m appliance serve`). For each N, one client
process (this one, grpc.aio) pushes the sample conversation at real-time pace through
Transcribe into a fresh session, and N Subscribe streams (include_partials) follow it.
The delay of a delivery is its receipt wall time minus the event's `created` (the
daemon's wall clock when it published the event): server fan-out, loopback and this
client's own scheduling together. Only events published after all N streams were
open count (the replay of retained events at subscribe time is not live delay).

Subscribers take raw bytes (no deserializer on the call) and parse after the run, so
the client's per-delivery cost is the least grpc.aio allows. They run in
FANOUT_CLIENT_PROCESSES processes of their own (default 2; 0: in this one, beside the pusher):
1,000 clients cost the clients' machine about as much CPU per delivery as the daemon, and in
one process their own loop, receiving one event 1,000 times in a row, would make up much of
the measured delay. Each client process freezes its start-up heap (gc.freeze) once its streams
are open, so its collector's passes over the bench's own imports do not count as delay either;
the daemon does the same for its own (daemon.settle_heap). Receipt and creation are both wall
clock (time.time) on one machine. The clients' CPU seconds are recorded beside the daemon's, and
the daemon's CPU per delivery beyond the smallest size's (`daemon_cpu_us_per_delivery`: the
fan-out's own server cost, the pipeline's being the same at every size).

FANOUT_COMPARE=<a checkout of other code> measures that code too, in the same run, each size on
both daemons one after the other (rows with "code": "compare"): a before/after on the same
machine at the same time, e.g. `git worktree add /tmp/before main` for the code before a change.

The daemon runs its default configuration (diarization on) except that a session may
have 1,001 subscribers: the pushing call is one. Each row also has the fan-out spread
(first to last receipt of one event) and both processes' CPU seconds.

Run (about 80 s, twice that with FANOUT_COMPARE): `pytest bench/test_fanout_bench.py --benchmark-enable --benchmark-only -s`
FANOUT_SIZES=10,100 runs fewer sizes, FANOUT_REPEATS=3 each size three times (on a shared box); FANOUT_EXTRA_CONFIG adds TOML to the daemon's config
(e.g. $'[diarization]\nlive = false').
"""
from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import resource
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.service.client import chunks
from bench.load import bucket_quantile, histogram_buckets, main_thread_cpu_seconds, process_cpu_seconds
from tests.e2e.daemon import DaemonProcess, free_port

SIZES = tuple(int(n) for n in os.environ.get("FANOUT_SIZES", "10,100,1000").split(","))
TARGET_P99_MS = 50
AUDIO = (6.0, 30.0)  # seconds of the sample pushed: from just before the first word to its end
CHUNK_SECONDS = 0.1
# N subscribers share N/10 HTTP/2 connections (FANOUT_STREAMS_PER_CONNECTION=1: one each)
STREAMS_PER_CONNECTION = int(os.environ.get("FANOUT_STREAMS_PER_CONNECTION", "10"))
SUBSCRIBE_METHOD = "/appliance.v1.Subtitles/Subscribe"
CLIENT_PROCESSES = int(os.environ.get("FANOUT_CLIENT_PROCESSES", "2"))
COMPARE = os.environ.get("FANOUT_COMPARE", "")
COMPARE_NOTE = os.environ.get("FANOUT_COMPARE_NOTE", "")  # what the compared code is, for the README
REPEATS = int(os.environ.get("FANOUT_REPEATS", "1"))  # each size this many times (on a shared box)
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


@dataclass
class GroupResult:
    """What one group of subscribers (one process's) saw during the measured window."""

    deliveries: list[list[Delivery]]
    errors: set[str]
    cpu_seconds: float  # the group's process, from `go` to the last stream's end


async def subscriber_group(address: str, session_id: str, n: int, ready: Callable[[set[str]], None],
                           go: Callable[[], Awaitable[object]], timeout: float) -> GroupResult:
    """`n` subscribers on n/STREAMS_PER_CONNECTION connections: `ready` once each has its first
    event (or failed), then, after `go`, until the session ends."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(-(-n // STREAMS_PER_CONNECTION))]
    streams = [Stream() for _ in range(n)]
    tasks = [asyncio.create_task(subscribe(channels[i // STREAMS_PER_CONNECTION], session_id, s))
             for i, s in enumerate(streams)]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 60)
        ready({s.error for s in streams if s.error})
        await go()
        cpu = own_cpu_seconds()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        cpu = own_cpu_seconds() - cpu
    finally:
        for task in tasks:
            task.cancel()
        for channel in channels:
            await channel.close()
    return GroupResult([parse(s) for s in streams], {s.error for s in streams if s.error}, cpu)


def client_process(address: str, session_id: str, n: int, timeout: float, pipe) -> None:
    """A subscriber group in a process of its own (multiprocessing target): says `ready` on
    `pipe`, waits for `go` from it, answers with its GroupResult."""

    def ready(errors: set[str]) -> None:
        gc.freeze()  # what the bench imported and set up is not garbage: out of the collector's passes
        pipe.send(errors)

    result = asyncio.run(subscriber_group(address, session_id, n, ready, lambda: asyncio.to_thread(pipe.recv),
                                          timeout))
    pipe.send(result)


class InProcessGroup:
    """A subscriber group in this process (FANOUT_CLIENT_PROCESSES=0), driven like a process's."""

    def __init__(self, address: str, session_id: str, n: int, timeout: float):
        self.ready: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._go = asyncio.Event()
        self.task = asyncio.create_task(subscriber_group(address, session_id, n, self.ready.set_result,
                                                         self._go.wait, timeout))

    async def wait_ready(self) -> set[str]:
        await asyncio.wait([self.ready, self.task], return_when=asyncio.FIRST_COMPLETED)
        if not self.ready.done():
            self.task.result()  # it failed before all its streams were in: raise that
        return self.ready.result()

    def go(self) -> None:
        self._go.set()

    async def result(self) -> GroupResult:
        return await self.task


class ProcessGroup:
    """A subscriber group in a child process."""

    def __init__(self, address: str, session_id: str, n: int, timeout: float):
        self.pipe, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=client_process, args=(address, session_id, n, timeout, child), daemon=True)
        self.process.start()
        child.close()

    async def _receive(self):
        try:
            return await asyncio.to_thread(self.pipe.recv)
        except EOFError:
            raise AssertionError(f"client process exited with {self.process.exitcode} before answering") from None

    async def wait_ready(self) -> set[str]:
        return await self._receive()

    def go(self) -> None:
        self.pipe.send("go")

    async def result(self) -> GroupResult:
        result = await self._receive()
        self.process.join(10)
        return result


def shares(n: int, groups: int) -> list[int]:
    """`n` subscribers over `groups` groups, whole connections each (pure)."""
    connections = -(-n // STREAMS_PER_CONNECTION)
    per_group = [connections // groups + (i < connections % groups) for i in range(groups)]
    out, left = [], n
    for c in per_group:
        take = min(left, c * STREAMS_PER_CONNECTION)
        if take:
            out.append(take)
        left -= take
    return out


DELAY_HISTOGRAM = "appliance_delivery_delay_seconds"


async def delivery_histogram(metrics_address: str) -> dict[float, float]:
    """The daemon's own delivery delay histogram (empty for code that has none)."""
    def get() -> str:
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as reply:
            return reply.read().decode()

    return histogram_buckets(await asyncio.to_thread(get), DELAY_HISTOGRAM)


def server_delay(before: dict[float, float], after: dict[float, float]) -> dict:
    """The daemon's side of the window's deliveries (pure): creation to the write to the
    subscriber's connection, from its histogram's buckets (interpolated within a bucket)."""
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    p50, p99 = bucket_quantile(window, 0.5), bucket_quantile(window, 0.99)
    total = window.get(float("inf"), 0.0)
    return {"server_delay_p50_ms": None if p50 is None else round(p50 * 1e3, 1),
            "server_delay_p99_ms": None if p99 is None else round(p99 * 1e3, 1),
            "server_within_50ms": round(window.get(0.05, 0.0) / total, 4) if total else None}


async def one_size(address: str, metrics_address: str, daemon_pid: int, n: int, audio: list[pb.AudioChunk]) -> dict:
    session_id = f"fanout-{n}-{time.monotonic_ns()}"  # a fresh session per size and repeat
    first = pb.AudioChunk()
    first.CopyFrom(audio[0])
    first.session_id = session_id
    go = asyncio.Event()
    timeout = AUDIO[1] - AUDIO[0] + 60

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
        kind = ProcessGroup if CLIENT_PROCESSES else InProcessGroup
        groups = [kind(address, session_id, size, timeout) for size in shares(n, max(1, CLIENT_PROCESSES))]
        errors = set().union(*await asyncio.gather(*(g.wait_ready() for g in groups)))
        assert not errors, errors
        ready_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        histogram = await delivery_histogram(metrics_address)
        cpu_daemon, cpu_loop = process_cpu_seconds(daemon_pid), main_thread_cpu_seconds(daemon_pid)
        cpu_here, wall = own_cpu_seconds(), time.monotonic()
        for group in groups:
            group.go()
        go.set()
        results = await asyncio.gather(*(g.result() for g in groups))
        cpu_daemon, cpu_here = process_cpu_seconds(daemon_pid) - cpu_daemon, own_cpu_seconds() - cpu_here
        cpu_loop = main_thread_cpu_seconds(daemon_pid) - cpu_loop
        wall = time.monotonic() - wall
        histogram = server_delay(histogram, await delivery_histogram(metrics_address))
        await pushed
        last_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        kept = {event.seq async for event in pb_grpc.SubtitlesStub(control).Subscribe(
            pb.SubscribeRequest(session_id=session_id, include_partials=False))}
    errors = set().union(*(r.errors for r in results))
    assert not errors, errors
    row = fanout_row(n, [d for r in results for d in r.deliveries], ready_seq, last_seq, kept)
    # In-process groups' CPU is this process's, already in cpu_here.
    clients = sum(r.cpu_seconds for r in results) if CLIENT_PROCESSES else cpu_here
    row |= {"connections": -(-n // STREAMS_PER_CONNECTION), "client_processes": CLIENT_PROCESSES,
            "seconds": round(wall, 1), "load_average": round(os.getloadavg()[0], 2),  # the box's, at the end
            "daemon_cpu_seconds": round(cpu_daemon, 2),
            "daemon_loop_cpu_seconds": round(cpu_loop, 2),
            "client_cpu_seconds": round(clients, 2),
            "client_cpu_us_per_delivery": round(clients / max(1, row["deliveries"]) * 1e6, 1)} | histogram
    return row


FLOOR_METHOD = "/floor.Floor/Stream"


def floor_clients(port: int, n: int) -> None:
    """`n` streams reading the floor server until it ends them (multiprocessing target)."""
    async def main() -> None:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(-(-n // STREAMS_PER_CONNECTION))]

        async def read(channel) -> None:
            async for _ in channel.unary_stream(FLOOR_METHOD, request_serializer=None, response_deserializer=None)(b""):
                pass

        await asyncio.gather(*(read(channels[i // STREAMS_PER_CONNECTION]) for i in range(n)), return_exceptions=True)

    asyncio.run(main())


async def grpc_floor(n: int, events: int = 30, size: int = 200) -> dict:
    """What grpc.aio itself costs a fan-out on this box, in this run: a bare server whose handlers
    write the same `size` bytes to `n` streams per event (no pipeline, no queues, no metrics),
    clients in a subprocess. Its loop CPU per delivery and the time to the last write."""
    waiting: list[asyncio.Future] = []
    written: list[float] = []

    async def stream(request, context) -> None:
        while (data := await _wait(waiting)) is not None:
            await context.write(data)
            written.append(time.perf_counter())

    handler = grpc.method_handlers_generic_handler("floor.Floor", {"Stream": grpc.unary_stream_rpc_method_handler(
        stream, request_deserializer=None, response_serializer=None)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    clients = multiprocessing.get_context("spawn").Process(target=floor_clients, args=(port, n), daemon=True)
    clients.start()
    try:
        while len(waiting) < n:
            await asyncio.sleep(0.05)
        spans, cpu = [], time.thread_time()
        for _ in range(events):
            await asyncio.sleep(0.2)
            batch, waiting[:] = list(waiting), []
            written.clear()
            start = time.perf_counter()
            for future in batch:
                future.set_result(b"x" * size)
            while len(written) < n:
                await asyncio.sleep(0.0005)
            spans.append((written[-1] - start) * 1e3)
        cpu = time.thread_time() - cpu
        for future in waiting:
            future.set_result(None)
    finally:
        await server.stop(1)
        clients.join(10)
    return {"subscribers": n, "events": events, "loop_cpu_us_per_delivery": round(cpu / (events * n) * 1e6, 1),
            "last_write_p50_ms": round(float(np.percentile(spans, 50)), 1),
            "last_write_max_ms": round(max(spans), 1), "load_average": round(os.getloadavg()[0], 2)}


async def _wait(waiting: list[asyncio.Future]):
    future = asyncio.get_running_loop().create_future()
    waiting.append(future)
    return await future


def server_cost(rows: list[dict]) -> None:
    """Each row's daemon CPU per delivery beyond the smallest size's, per code (in place, pure):
    the pipeline does the same work at every size, so what grows is the fan-out. The whole
    process's (inference included: its run-to-run spread is as large as the fan-out's cost) and
    its event loop's alone (where the fan-out runs)."""
    for code, repeat in {(r["code"], r.get("repeat", 0)) for r in rows}:
        mine = sorted((r for r in rows if r["code"] == code and r.get("repeat", 0) == repeat),
                      key=lambda r: r["subscribers"])
        base = mine[0]
        for row in mine[1:]:
            extra = row["deliveries"] - base["deliveries"] * row["events"] / max(1, base["events"])
            for key in ("daemon", "daemon_loop"):
                cpu = row[f"{key}_cpu_seconds"] - base[f"{key}_cpu_seconds"]  # the same audio: the same pipeline work
                row[f"{key}_cpu_us_per_delivery"] = round(cpu / extra * 1e6, 1) if extra > 0 else None


async def _drain(call) -> None:
    async for _ in call:
        pass


@dataclass
class Measured:
    """A daemon under test and its metrics address."""

    process: DaemonProcess
    metrics_address: str


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    """The daemon of this checkout, and with FANOUT_COMPARE one of that checkout's code."""
    def start(directory, **kwargs) -> Measured:
        metrics_address = f"127.0.0.1:{free_port()}"
        config = CONFIG + f'\n[metrics]\nlisten = "{metrics_address}"\n'
        return Measured(DaemonProcess(config, tmp_path_factory.mktemp(directory), **kwargs).start(timeout=120),
                        metrics_address)

    started = {"this": start("fanout")}
    try:
        if COMPARE:
            # `python -m appliance` imports from its working directory first, then PYTHONPATH.
            started["compare"] = start("fanout-compare", env={"PYTHONPATH": COMPARE}, cwd=Path(COMPARE))
        yield started
    finally:
        for measured in started.values():
            measured.process.stop()


@pytest.fixture(scope="module")
def audio(sample_dir) -> list[pb.AudioChunk]:
    samples = load_audio(sample_dir / "sample.wav")[int(AUDIO[0] * 16000) : int(AUDIO[1] * 16000)]
    return chunks(encode_s16le(samples), 16000, pb.PCM_S16LE, 1, chunk_seconds=CHUNK_SECONDS)


def test_fanout(benchmark, results, daemons, audio):
    rows = []
    floor = {}

    def run():
        floor.update(asyncio.run(grpc_floor(max(SIZES))))
        print(f"\ngrpc.aio floor {floor}")
        for repeat in range(REPEATS):
            for n in SIZES:
                for code, daemon in daemons.items():  # one after the other: the same machine load for both
                    rows.append({"code": code, "repeat": repeat, **asyncio.run(one_size(
                        daemon.process.address, daemon.metrics_address, daemon.process.process.pid, n, audio))})
                    print(f"\nfan-out {rows[-1]}")

    benchmark.pedantic(run, rounds=1, iterations=1)
    server_cost(rows)
    results.record("fanout", {"rows": rows, "target_p99_ms": TARGET_P99_MS, "grpc_floor": floor,
                              "config": {"server.max_subscribers_per_session": max(SIZES) + 1,
                                         "streams_per_connection": STREAMS_PER_CONNECTION,
                                         "client_processes": CLIENT_PROCESSES, "compare": COMPARE,
                                         "compare_note": COMPARE_NOTE,
                                         "audio_seconds": AUDIO[1] - AUDIO[0], "extra_config": EXTRA_CONFIG}})
    for row in rows:
        assert row["lost"] == 0, row
    benchmark.extra_info["rows"] = rows
