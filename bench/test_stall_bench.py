"""A stalled subscriber beside 20 normal ones: how much it delays the others.

The real daemon as a subprocess; the sample conversation pushed at real-time pace into a fresh
session per round, followed by 20 subscribers (include_partials, grpc.aio, raw bytes). In the
"stalled" rounds a 21st subscriber is a bare HTTP/2 client (tests/service/rawgrpc.py) that
never opens its flow-control window: the daemon must end it (its backlog ages past
server.subscriber_backlog_seconds) without the others noticing. Rounds alternate
(normal, stalled, stalled, normal) so drift of a shared machine falls on both; the figure is
the rise of the others' p99 delivery delay (receipt minus the event's creation) from the
normal rounds to the stalled ones, target < 10 ms, measured in the same run.

Run (about 70 s): `pytest bench/test_stall_bench.py --benchmark-enable --benchmark-only -s`
"""
from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.service.client import chunks
from bench.test_fanout_bench import CHUNK_SECONDS, SUBSCRIBE_METHOD, Stream, _drain, fanout_row, parse, subscribe
from tests.e2e.daemon import DaemonProcess
from tests.service.rawgrpc import RawClient, frame

SUBSCRIBERS = 20
TARGET_RISE_MS = 10.0
AUDIO = (6.0, 20.0)
BACKLOG_SECONDS = 2.0
CONFIG = f"""[server]
listen = "{{address}}"
subscriber_backlog_seconds = {BACKLOG_SECONDS}
"""


async def one_round(address: str, session_id: str, audio: list[pb.AudioChunk], stalled: bool) -> dict:
    first = pb.AudioChunk()
    first.CopyFrom(audio[0])
    first.session_id = session_id
    go = asyncio.Event()

    async def requests():
        yield first
        await go.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, chunk in enumerate(audio[1:], 1):
            await asyncio.sleep(max(0.0, start + index * CHUNK_SECONDS - loop.time()))
            yield chunk

    async with grpc.aio.insecure_channel(address) as control:
        pushed = asyncio.create_task(_drain(pb_grpc.SubtitlesStub(control).Transcribe(requests())))
        sessions = pb_grpc.SessionsStub(control)
        while True:
            try:
                await sessions.Get(pb.GetSessionRequest(session_id=session_id))
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.02)
        channels = [grpc.aio.insecure_channel(address) for _ in range(2)]
        streams = [Stream() for _ in range(SUBSCRIBERS)]
        tasks = [asyncio.create_task(subscribe(channels[i % 2], session_id, s)) for i, s in enumerate(streams)]
        await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 60)
        raw, stalled_outcome, ended_after = None, None, None
        if stalled:
            raw = RawClient(address, window=0)
            stream = raw.call(SUBSCRIBE_METHOD, frame(pb.SubscribeRequest(session_id=session_id,
                                                                          include_partials=True).SerializeToString()))
        ready_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        started = time.monotonic()
        go.set()
        if raw is not None:
            stalled_outcome = await asyncio.to_thread(raw.wait, stream, AUDIO[1] - AUDIO[0] + 30)
            ended_after = time.monotonic() - started
            raw.close()
        await asyncio.wait_for(asyncio.gather(*tasks), AUDIO[1] - AUDIO[0] + 60)
        await pushed
        for channel in channels:
            await channel.close()
        last_seq = (await sessions.Get(pb.GetSessionRequest(session_id=session_id))).last_seq
        kept = {event.seq async for event in pb_grpc.SubtitlesStub(control).Subscribe(
            pb.SubscribeRequest(session_id=session_id, include_partials=False))}
    errors = {s.error for s in streams if s.error}
    assert not errors, errors
    row = fanout_row(SUBSCRIBERS, [parse(s) for s in streams], ready_seq, last_seq, kept)
    row |= {"stalled": stalled, "stalled_ended": bool(stalled_outcome and stalled_outcome.ended),
            "stalled_ended_after_s": round(ended_after, 2) if ended_after is not None else None}
    return row


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    process = DaemonProcess(CONFIG, tmp_path_factory.mktemp("stall")).start(timeout=120)
    yield process
    process.stop()


def test_stalled_subscriber(benchmark, results, daemon, sample_dir):
    samples = load_audio(sample_dir / "sample.wav")[int(AUDIO[0] * 16000): int(AUDIO[1] * 16000)]
    audio = chunks(encode_s16le(samples), 16000, pb.PCM_S16LE, 1, chunk_seconds=CHUNK_SECONDS)
    rows = []

    def run():
        for index, stalled in enumerate((False, True, True, False)):
            rows.append(asyncio.run(one_round(daemon.address, f"stall-{index}", audio, stalled)))
            print(f"\nstall round {rows[-1]}")

    benchmark.pedantic(run, rounds=1, iterations=1)
    normal = [r["delay_p99_ms"] for r in rows if not r["stalled"]]
    stalled = [r["delay_p99_ms"] for r in rows if r["stalled"]]
    rise = float(np.mean(stalled) - np.mean(normal))
    summary = {"rows": rows, "p99_normal_ms": round(float(np.mean(normal)), 2),
               "p99_stalled_ms": round(float(np.mean(stalled)), 2), "p99_rise_ms": round(rise, 2),
               "p99_ratio": round(float(np.mean(stalled) / np.mean(normal)), 3), "target_rise_ms": TARGET_RISE_MS,
               "config": {"subscribers": SUBSCRIBERS, "server.subscriber_backlog_seconds": BACKLOG_SECONDS,
                          "audio_seconds": AUDIO[1] - AUDIO[0]}}
    print(f"\nstalled subscriber: p99 {summary['p99_normal_ms']} -> {summary['p99_stalled_ms']} ms "
          f"(rise {summary['p99_rise_ms']} ms, target < {TARGET_RISE_MS})")
    results.record("stalled_subscriber", summary)
    benchmark.extra_info.update(summary)
    for row in rows:
        assert row["lost"] == 0, row
        assert row["stalled_ended"] or not row["stalled"], row
    assert rise < TARGET_RISE_MS, summary
