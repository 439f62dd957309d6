"""The calibration workload: fixed, deterministic work that says how fast this machine is now.

Three kinds of single-threaded work the pipeline does, each repeated and timed: numpy
signal processing (FFT and log magnitudes of fixed audio, as in feature extraction), a
pure-Python loop (the interpreter: policy, assembly, conversion), and ONNX Runtime running
the Silero VAD graph over fixed synthetic audio (the inference runtime; the graph is called
directly, not through our VadStream, so a change in our code cannot hide in the
calibration). Single-threaded on purpose: a two-thread BLAS product slowed 5x on a busy
2-core box while the pipeline's own figures moved far less.

Each kind is reported twice, as medians over the repetitions: wall seconds (what real-time
latency feels, waiting for a core included) and process CPU seconds (the work itself,
hardly moved by other processes). The guard compares two runs through `speed_ratio`: the
geometric mean of the per-kind ratios, so no single kind dominates.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import numpy as np

from appliance.vad import FRAME_SAMPLES
from appliance.vad.silero import CONTEXT_SAMPLES, STATE_SHAPE, SileroVad

REPEATS = 9


def _spectra() -> Callable[[], object]:
    frames = np.random.default_rng(7).standard_normal((400, 512)).astype(np.float32)

    def run():
        total = 0.0
        for _ in range(10):
            total += float(np.log1p(np.abs(np.fft.rfft(frames, axis=1))).sum())
        return total

    return run


def _python_loop() -> int:
    total = 0
    for i in range(500_000):
        total = (total + i * i) % 1_000_003
    return total


def _onnx_vad(vad: SileroVad) -> Callable[[], object]:
    t = np.arange(10 * 16000, dtype=np.float32) / 16000  # 10 s: a tone with deterministic noise
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(3).standard_normal(len(t))).astype(np.float32)
    padded = np.concatenate([np.zeros(CONTEXT_SAMPLES, np.float32), audio])  # window i: 64 samples of context + frame i
    windows = [padded[i:i + CONTEXT_SAMPLES + FRAME_SAMPLES][None] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]

    def run():
        h = c = np.zeros(STATE_SHAPE, dtype=np.float32)
        for window in windows:
            _, h, c = vad.frame_probability(window, h, c)

    return run


def _medians(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of `repeats` runs after a warm-up."""
    work()  # caches, lazy initialisation
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def calibrate(vad: SileroVad, repeats: int = REPEATS) -> dict[str, dict[str, float]]:
    """{"wall": {kind: seconds}, "cpu": {kind: seconds}} for this machine, now."""
    result: dict[str, dict[str, float]] = {"wall": {}, "cpu": {}}
    for kind, work in (("numpy_fft_s", _spectra()), ("python_loop_s", _python_loop), ("onnx_vad_s", _onnx_vad(vad))):
        wall, cpu = _medians(work, repeats)
        result["wall"][kind], result["cpu"][kind] = round(wall, 6), round(cpu, 6)
    return result


def speed_ratio(baseline: dict[str, float], now: dict[str, float]) -> float:
    """How much slower this run's machine is than the baseline's (>1: slower); geometric mean.

    Raises KeyError naming a calibration kind the two runs do not share.
    """
    missing = sorted(set(baseline) ^ set(now))
    if missing:
        raise KeyError(f"calibration kinds differ between baseline and now: {missing}")
    return math.exp(statistics.fmean(math.log(now[k] / baseline[k]) for k in baseline))
