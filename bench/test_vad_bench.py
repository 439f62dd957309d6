"""VAD cost: one 32 ms frame, and a whole recording pushed in 20 ms chunks.

Run with `make bench` (or `pytest bench --benchmark-enable --benchmark-only -s`).
Besides pytest-benchmark's wall-clock statistics, each benchmark records the
process CPU time per frame in extra_info (it lands in --benchmark-json output)
and prints it, because CPU seconds per audio second is what sets capacity.
"""
import time

import numpy as np
import pytest
from faster_whisper.vad import SileroVADModel

from appliance.config import SAMPLE_RATE
from appliance.inference.manifest import verified_path
from appliance.vad import FRAME_SAMPLES, SileroVad

CHUNK = SAMPLE_RATE // 50  # 20 ms, a typical capture block


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.load()


def _record(benchmark, name: str, cpu_s: float, frames: int, audio_s: float) -> None:
    cpu_ms = cpu_s / frames * 1e3
    benchmark.extra_info.update({"cpu_ms_per_frame": round(cpu_ms, 4), "cpu_s_per_audio_s": round(cpu_s / audio_s, 5)})
    print(f"\n{name}: {cpu_ms:.3f} ms CPU per 32 ms frame ({cpu_s / audio_s:.4f} CPU s per audio s)")


def test_one_frame(benchmark, vad, audio):
    """One push of exactly one frame on a live stream (state carried, real audio)."""
    stream = vad.stream()
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    index = iter(range(10**9))

    def step():
        stream.push(frames[next(index) % len(frames)])

    cpu = time.process_time()
    benchmark.pedantic(step, rounds=2000, iterations=1, warmup_rounds=50)
    count = 2000 + 50
    _record(benchmark, "one frame", time.process_time() - cpu, count, count * FRAME_SAMPLES / SAMPLE_RATE)


def test_whole_file_in_20ms_chunks(benchmark, vad, audio):
    """The 30 s recording as a capture source delivers it: 20 ms pushes, then flush."""

    def run():
        stream = vad.stream()
        for offset in range(0, len(audio), CHUNK):
            stream.push(audio[offset : offset + CHUNK])
        return stream.flush()

    rounds = 5
    cpu = time.process_time()
    events = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    frames = -(-len(audio) // FRAME_SAMPLES)
    _record(benchmark, "30 s file, 20 ms chunks", (time.process_time() - cpu) / (rounds + 1), frames, len(audio) / SAMPLE_RATE)
    assert events, "the recording has speech"


def test_offline_batched_reference(benchmark, audio):
    """For comparison only: faster-whisper's offline call, all frames in one ORT run."""
    model = SileroVADModel(str(verified_path("silero-vad") / "silero_vad_v6.onnx"))
    padded = np.pad(audio, (0, -len(audio) % FRAME_SAMPLES))
    rounds = 5
    cpu = time.process_time()
    benchmark.pedantic(model, args=(padded,), rounds=rounds, iterations=1, warmup_rounds=1)
    _record(benchmark, "offline batched (faster-whisper)", (time.process_time() - cpu) / (rounds + 1),
            len(padded) // FRAME_SAMPLES, len(audio) / SAMPLE_RATE)
