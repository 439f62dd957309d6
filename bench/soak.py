"""`make soak`: four rooms pushed in real time for an hour, subscribers joining and leaving.

The real daemon as a subprocess. Each room loops the sample conversation at real-time pace on
one Transcribe call; every few seconds a subscriber joins a room (include_partials) and leaves
after 5-30 s. Every 10 s the daemon's RSS and open descriptors are sampled. Reported per window
(10 minutes by default): the delivery delay of FINAL events to subscribers (receipt minus the
event's `created`) as p50/p95/p99, and RSS/fds at the window's end; written to bench/results.

    make soak                                   # one hour
    SOAK_SECONDS=120 SOAK_WINDOW=30 make soak   # a two-minute smoke
"""
from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.service.client import Endpoint, follow
from bench.load import process_rss_kb
from bench.results import RunResults
from tests.data.fetch import fetch
from tests.e2e.daemon import DaemonProcess

SECONDS = float(os.environ.get("SOAK_SECONDS", "3600"))
WINDOW = float(os.environ.get("SOAK_WINDOW", "600"))
ROOMS = 4
CHUNK = 0.1


def _status(pid: int) -> tuple[float, int]:
    return process_rss_kb(pid) / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def push(address: str, room: str, pcm: bytes, until: float) -> None:
    step = int(16000 * CHUNK) * 2

    async def chunks():
        loop = asyncio.get_running_loop()
        start, index = loop.time(), 0
        while time.monotonic() < until:
            offset = (index * step) % (len(pcm) - step)
            chunk = pb.AudioChunk(data=pcm[offset: offset + step])
            if index == 0:
                chunk.MergeFrom(pb.AudioChunk(session_id=room, sample_rate=16000, encoding=pb.PCM_S16LE, channels=1))
            await asyncio.sleep(max(0.0, start + index * CHUNK - loop.time()))
            yield chunk
            index += 1

    async with grpc.aio.insecure_channel(address) as channel:
        async for _ in pb_grpc.SubtitlesStub(channel).Transcribe(chunks()):
            pass


async def visitor(address: str, room: str, delays: list[tuple[float, float]]) -> None:
    stay = random.uniform(5, 30)

    joined = time.time()

    async def watch():
        async for event in follow(Endpoint(address), room, include_partials=True):
            created = event.created.ToNanoseconds() / 1e9
            if event.kind == pb.SubtitleEvent.FINAL and created >= joined:  # live, not the replay on joining
                delays.append((time.monotonic(), time.time() - created))
    try:
        await asyncio.wait_for(watch(), stay)
    except (TimeoutError, grpc.aio.AioRpcError):
        pass


async def soak(address: str, pid: int) -> dict:
    pcm = encode_s16le(load_audio(fetch() / "sample.wav"))
    started = time.monotonic()
    until = started + SECONDS
    delays: list[tuple[float, float]] = []
    samples: list[tuple[float, float, int]] = []
    pushes = [asyncio.create_task(push(address, f"room-{i}", pcm, until)) for i in range(ROOMS)]
    visitors: set[asyncio.Task] = set()
    random.seed(20261201)
    next_sample = started
    while time.monotonic() < until:
        task = asyncio.create_task(visitor(address, f"room-{random.randrange(ROOMS)}", delays))
        visitors.add(task)
        task.add_done_callback(visitors.discard)
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - started, *_status(pid)))
            next_sample += 10
        await asyncio.sleep(random.uniform(1, 4))
    await asyncio.gather(*pushes, return_exceptions=True)
    await asyncio.gather(*visitors, return_exceptions=True)
    samples.append((time.monotonic() - started, *_status(pid)))
    windows = []
    for start in np.arange(0, SECONDS, WINDOW):
        ms = [d * 1e3 for at, d in delays if start <= at - started < start + WINDOW]
        end = [s for s in samples if s[0] <= start + WINDOW][-1]
        windows.append({"from_s": float(start), "finals_delivered": len(ms),
                        **({f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)} if ms else {}),
                        "rss_mb": round(end[1], 1), "fds": end[2]})
    return {"seconds": SECONDS, "window_seconds": WINDOW, "rooms": ROOMS, "windows": windows,
            "rss_mb": [round(samples[0][1], 1), round(samples[-1][1], 1)], "fds": [samples[0][2], samples[-1][2]]}


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    daemon = DaemonProcess('[server]\nlisten = "{address}"\n', workdir).start(timeout=120)
    try:
        report = asyncio.run(soak(daemon.address, daemon.process.pid))
    finally:
        code = daemon.stop()
    report["exit_code"] = code
    print(f"{'from (s)':>8} {'finals':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'fds':>5}")
    for w in report["windows"]:
        print(f"{w['from_s']:>8.0f} {w['finals_delivered']:>7} {w.get('p50_ms', '-'):>7} {w.get('p95_ms', '-'):>7} "
              f"{w.get('p99_ms', '-'):>7} {w['rss_mb']:>7} {w['fds']:>5}")
    print(f"RSS {report['rss_mb'][0]} -> {report['rss_mb'][1]} MB, fds {report['fds'][0]} -> {report['fds'][1]}, "
          f"exit {code}")
    results = RunResults()
    results.record("soak", report)
    print(f"results: {results.write()}")
    if code != 0:
        raise SystemExit(f"daemon exited with {code}; log: {daemon.log}")


if __name__ == "__main__":
    main()
