"""Diarization cost: segmentation per window, embedding per segment, whole-file offline and streaming.

Run with `make bench` (or `pytest bench/test_diarization_bench.py --benchmark-enable --benchmark-only -s`).
Besides pytest-benchmark's wall-clock statistics, each benchmark records process
CPU time in extra_info (it lands in --benchmark-json output) and prints it; the
whole-file benchmarks split it into segmentation and embedding by timing the
real models through a thin wrapper.
"""
import os
import platform
import time
from dataclasses import dataclass, field

import pytest

from appliance.config import SAMPLE_RATE, DiarizationConfig, InferenceConfig
from appliance.diarization.models import DiarizationModels, FrameGrid, load_models
from appliance.diarization.offline import OfflineDiarizer
from appliance.diarization.streaming import StreamingDiarizer

SEGMENTATION = {"int8": "segmentation-3.0.int8.onnx", "fp32": "segmentation-3.0.onnx"}
MACHINE = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}"


def models_for(precision: str) -> tuple[DiarizationConfig, DiarizationModels]:
    config = DiarizationConfig(segmentation_file=SEGMENTATION[precision])
    return config, load_models(config, InferenceConfig())


@dataclass
class CpuTimed:
    """The real segmenter and embedder, with the process CPU time each one used."""

    models: DiarizationModels
    seg_s: float = 0.0
    emb_s: float = 0.0
    grid: FrameGrid = field(init=False)
    window: float = field(init=False)
    dimension: int = field(init=False)
    min_duration: float = field(init=False)

    def __post_init__(self):
        self.grid, self.window = self.models.segmenter.grid, self.models.segmenter.window
        self.dimension, self.min_duration = self.models.embedder.dimension, self.models.embedder.min_duration

    def __call__(self, window):
        start = time.process_time()
        try:
            return self.models.segmenter(window)
        finally:
            self.seg_s += time.process_time() - start

    def embed(self, samples, mask=None):
        start = time.process_time()
        try:
            return self.models.embedder.embed(samples, mask)
        finally:
            self.emb_s += time.process_time() - start

    def as_models(self) -> DiarizationModels:
        return DiarizationModels(segmenter=self, embedder=self)


def _record(benchmark, name: str, **values: float) -> None:
    benchmark.extra_info.update({"machine": MACHINE, **{k: round(v, 5) for k, v in values.items()}})
    print(f"\n{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("seconds", [10.0, 5.0])
def test_segmentation_per_window(benchmark, audio, precision, seconds):
    """One window of real speech (10 s: the offline and streaming default; 5 s for comparison)."""
    _, models = models_for(precision)
    window = audio[int(10 * SAMPLE_RATE):int((10 + seconds) * SAMPLE_RATE)]
    rounds = 30
    cpu = time.process_time()
    benchmark.pedantic(models.segmenter, args=(window,), rounds=rounds, iterations=1, warmup_rounds=2)
    per = (time.process_time() - cpu) / (rounds + 2)
    _record(benchmark, f"segmentation {precision}, {seconds:.0f} s window",
            cpu_s_per_window=per, cpu_s_per_audio_s=per / seconds)


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_embedding_per_segment(benchmark, audio, seconds):
    """CAM++ fp32 (int8 is not shipped: see PARITY.md) on one segment of real speech, fbank included."""
    _, models = models_for("int8")
    segment = audio[int(14.6 * SAMPLE_RATE):int((14.6 + seconds) * SAMPLE_RATE)]
    rounds = 30
    cpu = time.process_time()
    benchmark.pedantic(models.embedder.embed, args=(segment,), rounds=rounds, iterations=1, warmup_rounds=2)
    per = (time.process_time() - cpu) / (rounds + 2)
    _record(benchmark, f"embedding fp32, {seconds:.0f} s segment", cpu_s_per_segment=per,
            cpu_s_per_audio_s=per / seconds)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_offline_whole_file(benchmark, audio, precision):
    config, models = models_for(precision)
    timed = CpuTimed(models)
    diarizer = OfflineDiarizer(timed.as_models(), config)
    rounds = 3
    cpu = time.process_time()
    turns = benchmark.pedantic(diarizer, args=(audio,), rounds=rounds, iterations=1, warmup_rounds=1)
    seconds = len(audio) / SAMPLE_RATE * (rounds + 1)
    _record(benchmark, f"offline diarization, segmentation {precision}",
            cpu_s_per_audio_s=(time.process_time() - cpu) / seconds,
            segmentation_cpu_s_per_audio_s=timed.seg_s / seconds,
            embedding_cpu_s_per_audio_s=timed.emb_s / seconds)
    assert {t.speaker for t in turns} == {"S1", "S2"}


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_streaming_whole_file(benchmark, audio, precision):
    """The 30 s recording pushed in 0.1 s chunks, then finished (the default streaming config)."""
    config, models = models_for(precision)
    timed = CpuTimed(models)
    chunk = SAMPLE_RATE // 10

    def run():
        stream = StreamingDiarizer(timed.as_models(), config)
        turns = []
        for offset in range(0, len(audio), chunk):
            stream.push(audio[offset:offset + chunk])
            turns += stream.update().final
        return turns + stream.finish().final

    rounds = 3
    cpu = time.process_time()
    turns = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    seconds = len(audio) / SAMPLE_RATE * (rounds + 1)
    _record(benchmark, f"streaming diarization, segmentation {precision}",
            cpu_s_per_audio_s=(time.process_time() - cpu) / seconds,
            segmentation_cpu_s_per_audio_s=timed.seg_s / seconds,
            embedding_cpu_s_per_audio_s=timed.emb_s / seconds)
    assert turns
