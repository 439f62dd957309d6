"""Does Silero VAD hear the speech the diarizer misses on meetings? (issue 16; bench/speech_detection.py)

Run with `pytest bench/test_speech_detection_study.py --benchmark-enable --benchmark-only -s`.
The decision (not to add VAD speech to diarization) was taken on the tune split; the
held-out split is recorded to confirm it. Results land in bench/results/run-*.json under
"speech_detection_<split>".
"""
from __future__ import annotations

import pytest

from appliance.config import SAMPLE_RATE, DiarizationConfig, InferenceConfig
from appliance.diarization.models import load_models
from appliance.diarization.offline import OfflineDiarizer
from appliance.vad.silero import SileroVad
from bench.speech_detection import (
    RecordingFrames,
    compare,
    speaker_time,
    speech_mask,
    table,
)
from tests.data.corpus import diarization_set

THRESHOLDS = (0.5, 0.35, 0.2, 0.1)


@pytest.fixture(scope="module")
def setup():
    config = DiarizationConfig()
    return OfflineDiarizer(load_models(config, InferenceConfig()), config), SileroVad.load()


@pytest.mark.parametrize("split", ["tune", "heldout"])
def test_speech_detection_study(benchmark, results, setup, split):
    diarizer, vad = setup
    recordings = diarization_set(split)

    def run():
        rows = []
        for r in recordings:
            samples = r.audio()
            duration = len(samples) / SAMPLE_RATE
            stream = vad.stream(keep_probabilities=True)
            stream.push(samples)
            stream.flush()
            rows.append(RecordingFrames(r.name, r.kind, speaker_time(r.turns, duration),
                                        speech_mask(diarizer(samples), duration), stream.probabilities, duration))
        return compare(rows, THRESHOLDS)

    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n== {split}\n{table(summary)}")
    results.record(f"speech_detection_{split}", summary)
    assert summary["all"]["recordings"] == len(recordings)
