"""Streaming ASR costs and the real-time replay of the sample conversation.

`make bench` runs these. Figures land in the run's bench/results/run-*.json with the
machine; the README quotes the latest.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from appliance.asr.recognizer import WhisperRecognizer
from appliance.config import SAMPLE_RATE, AsrConfig, StreamingConfig
from appliance.evaluation import word_error_rate
from appliance.inference.whisper import load_whisper
from appliance.replay import replay
from appliance.vad.silero import SileroVad

# The targets (2 CPU cores, tiny.en int8, the sample conversation in real time).
TARGETS = {
    "final_latency_p50": 1.0,
    "final_latency_p95": 2.0,
    "partial_latency_p50": 0.5,
    "cpu_per_audio_second": 0.25,
}


@pytest.fixture(scope="module")
def model():
    return load_whisper(AsrConfig())


CALLS: dict[str, dict[str, float]] = {}


@pytest.mark.parametrize("seconds", [2, 5, 10])
@pytest.mark.parametrize("min_window", [0.0, 10.0, 30.0])
def test_recognizer_call(benchmark, results, model, audio, seconds, min_window):
    """One streaming decode of a buffer of speech, by encoder window policy."""
    recognizer = WhisperRecognizer(model, AsrConfig(min_window=min_window))
    buffer = audio[8 * SAMPLE_RATE : (8 + seconds) * SAMPLE_RATE]
    cpu = time.process_time()
    benchmark.pedantic(recognizer.transcribe, args=(buffer,), rounds=5, iterations=1, warmup_rounds=1)
    cpu_per_call = (time.process_time() - cpu) / 6
    benchmark.extra_info["cpu_seconds_per_call"] = round(cpu_per_call, 4)
    CALLS[f"window={min_window:g}s buffer={seconds}s"] = {
        "wall_median_s": round(benchmark.stats.stats.median, 4),
        "cpu_s": round(cpu_per_call, 4),
    }
    results.record("recognizer_calls", {"calls": CALLS})


def test_window_policy_accuracy(benchmark, results, model, audio, reference):
    """Streaming WER and CPU by encoder window: exactly the buffer, 10 s floor, 30 s (Whisper's)."""
    vad = SileroVad.load()
    rows = {}

    def run_all():
        for min_window in (0.0, 10.0, 30.0):
            recognizer = WhisperRecognizer(model, AsrConfig(min_window=min_window))
            result = asyncio.run(replay(audio, recognizer, vad, realtime=False))
            rows[f"{min_window:g}"] = {
                "wer": round(word_error_rate(reference, result.text), 4),
                "cpu_per_audio_second": round(result.cpu_per_audio_second, 3),
            }

    benchmark.pedantic(run_all, rounds=1, iterations=1)
    offline_words, _ = WhisperRecognizer(model, AsrConfig()).transcribe_file(audio)
    offline = round(word_error_rate(reference, " ".join(w.text for w in offline_words)), 4)
    results.record("window_policy", {"offline_wer": offline, "streaming_by_min_window_s": rows})
    benchmark.extra_info.update(rows)


def test_realtime_replay(benchmark, results, model, audio, reference):
    """The product promise: the sample conversation at real-time pace through the session."""
    recognizer = WhisperRecognizer(model, AsrConfig())
    vad = SileroVad.load()
    runs = []  # not `results`: that is the fixture this test records into

    def run():
        runs.append(asyncio.run(replay(audio, recognizer, vad, realtime=True)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    result = runs[-1]
    summary = result.summary() | {"wer": round(word_error_rate(reference, result.text), 4)}
    offline_words, _ = recognizer.transcribe_file(audio)
    summary["offline_wer"] = round(word_error_rate(reference, " ".join(w.text for w in offline_words)), 4)
    met = {key: summary[key] <= bound for key, bound in TARGETS.items()}
    met["wer"] = summary["wer"] <= summary["offline_wer"] + 0.02
    results.record("realtime_replay", {
        "config": {"asr": AsrConfig().__dict__, "streaming": StreamingConfig().__dict__},
        "summary": summary, "targets": TARGETS, "targets_met": met,
    })
    benchmark.extra_info.update(summary)
    print("\nreal-time replay:", summary, "\ntargets met:", met)
