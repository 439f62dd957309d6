"""Rooms per box in process: N rooms' streaming ASR on one shared model, batched vs one decode at a time.

Each room is the real session pipeline (VAD, AsrStream, commit policy) replaying the sample
conversation at real-time pace, started `ROOM_OFFSET` x i seconds after the first (leading
silence), so rooms are out of step as real rooms are and every room keeps the same reference.
All rooms of a run share one recognizer: `WhisperRecognizer` (unbatched: CTranslate2 runs
one call at a time, the daemon's case today) or the `DecodeScheduler` (batched: the rooms
due together share one call). Figures per run, all from the same run:
- cpu_per_audio_second_per_room: process CPU (all threads) / (rooms x audio seconds);
- final/partial latency percentiles over every room's words, merged updates (decodes that
  fell behind and were folded into a later one), mean WER over the rooms, mean batch size.
No diarization here (bench/test_system_bench.py's capacity runs the daemon with it).
Two modes: "realtime" (the above, at real-time pace: latency, and what batching achieves
with rooms out of step) and "in_step" (no clock: every room advanced a step of audio at a
time, the due rooms' updates run together; both recognizers make exactly the same decodes, so
their CPU compares directly; batching's best case). Section recorded: "batched_rooms".
BENCH_QUICK=1: 1, 2, 4 rooms and no thread study.
"""
from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from appliance.asr.batch import DecodeScheduler
from appliance.asr.overload import Degradation, OverloadConfig
from appliance.asr.recognizer import WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.config import SAMPLE_RATE, AsrConfig, StreamingConfig
from appliance.evaluation import word_error_rate
from appliance.inference.whisper import load_whisper
from appliance.replay import replay
from appliance.vad.silero import SileroVad
from bench.load import pct

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROOMS = (1, 2, 4) if QUICK else (1, 2, 4, 6)
ROOM_OFFSET = 1.37  # seconds between room starts: not a multiple of the 0.5 s step
THREADS = [] if QUICK else [(2, 1), (1, 1)]  # (cpu_threads, num_workers) tried besides the default (1, 2)
THREAD_ROOMS = 4
DEFAULT = f"cpu_threads={AsrConfig().cpu_threads} num_workers={AsrConfig().num_workers}"


def _rooms_run(recognizers, vad, audio, reference) -> dict:
    clips = [np.concatenate([np.zeros(int(i * ROOM_OFFSET * SAMPLE_RATE), np.float32), audio])
             for i in range(len(recognizers))]

    async def all_rooms():
        return await asyncio.gather(*(replay(clip, rec, vad, realtime=True) for clip, rec in zip(clips, recognizers)))

    cpu, wall = time.process_time(), time.monotonic()
    runs = asyncio.run(all_rooms())
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    final = [v for r in runs for v in r.final_latency]
    partial = [v for r in runs for v in r.partial_latency]
    seconds = sum(len(c) for c in clips) / SAMPLE_RATE
    return {
        "rooms": len(recognizers),
        "cpu_per_audio_second_per_room": round(cpu / seconds, 3),
        "final_latency_p50": pct(final, 50), "final_latency_p95": pct(final, 95),
        "partial_latency_p50": pct(partial, 50), "partial_latency_p95": pct(partial, 95),
        "updates": sum(r.stats.updates for r in runs),
        "merged_updates": sum(r.stats.merged_updates for r in runs),
        "wer_mean": round(float(np.mean([word_error_rate(reference, r.text) for r in runs])), 4),
        "wall_seconds": round(wall, 1),
    }


def _in_step_run(recognizers, vad, audio, reference, recordings=None) -> dict:
    """Every room advanced one step of audio at a time, the due rooms' updates run together.

    No clock: each room makes exactly the decodes it would make alone as fast as it goes, so
    batched and unbatched do the same work on the same audio and their CPU compares directly;
    rooms in step is batching's best case (all speaking rooms due at once). `recordings`:
    (audio, reference) per room instead of the sample for all."""
    n = len(recognizers)
    pairs = recordings or [(audio, reference)] * n
    clips = [np.concatenate([np.zeros(int(i * ROOM_OFFSET * SAMPLE_RATE), np.float32), pairs[i][0]])
             for i in range(n)]
    streams = [AsrStream(rec, vad.stream(), StreamingConfig()) for rec in recognizers]
    words: list[list] = [[] for _ in range(n)]
    step = int(StreamingConfig().step * SAMPLE_RATE)
    cpu = time.process_time()
    with ThreadPoolExecutor(n) as pool:
        for at in range(0, max(map(len, clips)), step):
            live = [i for i in range(n) if at < len(clips[i])]
            for i in live:
                streams[i].push(clips[i][at: at + step])
            due = [i for i in live if streams[i].due()]
            for i, decision in zip(due, pool.map(lambda i: streams[i].update(), due)):
                words[i] += decision.final
            for i in [i for i in live if at + step >= len(clips[i])]:  # this room's audio ended
                words[i] += streams[i].finish().final
    cpu = time.process_time() - cpu
    updates = sum(s.stats.updates for s in streams)
    wers = [word_error_rate(pairs[i][1], " ".join(w.text for w in words[i])) for i in range(n)]
    return {
        "rooms": n,
        "cpu_per_audio_second_per_room": round(cpu / (sum(map(len, clips)) / SAMPLE_RATE), 3),
        "cpu_per_update": round(cpu / updates, 4), "updates": updates,
        "wer_mean": round(float(np.mean(wers)), 4), "wer_by_room": [round(w, 4) for w in wers],
    }


def _compare(run, model, config: AsrConfig, n: int, vad, audio, reference) -> dict:
    unbatched = run([WhisperRecognizer(model, config)] * n, vad, audio, reference)
    # In step, both sides must make the same decodes: no overload policy (it would go greedy).
    overload = OverloadConfig(max_level=Degradation.NONE) if run is _in_step_run else None
    scheduler = DecodeScheduler.for_recognizer(WhisperRecognizer(model, config), overload=overload)
    batched = run([scheduler.room(f"room-{i}") for i in range(n)], vad, audio, reference)
    batched["mean_batch"] = round(scheduler.mean_batch, 2)
    batched["degradations"] = sum(load.degradations for load in scheduler.policy.rooms.values())
    return {"rooms": n, "unbatched": unbatched, "batched": batched,
            "cpu_ratio_batched_to_unbatched": round(
                batched["cpu_per_audio_second_per_room"] / unbatched["cpu_per_audio_second_per_room"], 3)}


def _study(config: AsrConfig, rooms: tuple[int, ...], vad, audio, reference, in_step: bool = True) -> dict:
    model = load_whisper(config)
    out: dict[str, list[dict]] = {"in_step": [], "realtime": []}
    for n in rooms:
        for mode, run in (("in_step", _in_step_run), ("realtime", _rooms_run)):
            if mode == "in_step" and not in_step:
                continue
            row = _compare(run, model, config, n, vad, audio, reference)
            out[mode].append(row)
            print(f"\n{mode} {config.cpu_threads}x{config.num_workers} threads, {n} rooms: {row}", flush=True)
    return out


@pytest.fixture(scope="module")
def vad():
    return SileroVad.load()


def test_batched_rooms(benchmark, results, vad, audio, reference):
    """CPU per audio second per room and latency, 1..6 rooms, batched vs not; then the thread split."""
    out: dict = {}

    def scenario():
        out[DEFAULT] = _study(AsrConfig(), ROOMS, vad, audio, reference)
        for cpu_threads, num_workers in THREADS:
            config = AsrConfig(cpu_threads=cpu_threads, num_workers=num_workers)
            out[f"cpu_threads={cpu_threads} num_workers={num_workers}"] = _study(
                config, (THREAD_ROOMS,), vad, audio, reference)

    benchmark.pedantic(scenario, rounds=1, iterations=1)
    defaults = AsrConfig()
    results.record("batched_rooms", {
        "audio_seconds": round(len(audio) / SAMPLE_RATE, 3), "room_offset_seconds": ROOM_OFFSET,
        "asr": {"cpu_threads": defaults.cpu_threads, "num_workers": defaults.num_workers,
                "batch_size": defaults.batch_size, "batch_gather": defaults.batch_gather},
        "by_threads": out, "machine_shared": os.environ.get("BENCH_SHARED") == "1",
        "load_average": os.getloadavg(),
        **({"quick": True} if QUICK else {}),
    })
    for row in out[DEFAULT]["in_step"]:
        assert row["batched"]["updates"] == row["unbatched"]["updates"], row  # the same decodes, in step
        # Equal accuracy within int8 noise and the grid window: a margin, not a timing goal.
        assert row["batched"]["wer_mean"] <= row["unbatched"]["wer_mean"] + 0.05, row
