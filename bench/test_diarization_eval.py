"""Diarization quality on the evaluation set: DER (collar 0 and 0.25 s), JER, speaker count.

Run with `pytest bench/test_diarization_eval.py --benchmark-enable --benchmark-only -s`
(part of `make bench`). Offline is the OfflineDiarizer on each whole recording; live
is the StreamingDiarizer fed in 0.1 s chunks (push, update when due, finish). The
thresholds were tuned on the tune split only (bench/diarization_eval.py scores it
too, for tuning); the figures that count are the held-out ones. Results land in the
run's bench/results/run-*.json under "diarization_eval_<split>", with per-recording
rows, means per kind and the CPU seconds per audio second of each mode.
"""
from __future__ import annotations

import pytest

from appliance.config import DiarizationConfig, InferenceConfig
from appliance.diarization.models import load_models
from appliance.diarization.offline import OfflineDiarizer
from bench.diarization_eval import as_json, evaluate, live_turns, table
from tests.data.corpus import diarization_set


@pytest.fixture(scope="module")
def setup():
    config = DiarizationConfig()
    return config, load_models(config, InferenceConfig())


@pytest.mark.parametrize("split", ["heldout", "tune"])
def test_diarization_eval(benchmark, results, setup, split):
    config, models = setup
    recordings = diarization_set(split)
    offline = OfflineDiarizer(models, config)

    def run():
        return (evaluate(recordings, offline),
                evaluate(recordings, lambda samples: live_turns(models, config, samples)))

    (off, off_cpu), (live, live_cpu) = benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n== {split}, offline ({off_cpu:.4f} CPU s per audio s)\n{table(off)}")
    print(f"== {split}, live ({live_cpu:.4f} CPU s per audio s)\n{table(live)}")
    results.record(f"diarization_eval_{split}", {
        "offline": {**as_json(off), "cpu_s_per_audio_s": off_cpu},
        "live": {**as_json(live), "cpu_s_per_audio_s": live_cpu},
    })
    benchmark.extra_info.update({"offline_der": as_json(off)["mean"]["all"]["der"],
                                 "live_der": as_json(live)["mean"]["all"]["der"]})
    assert len(off) == len(recordings) == len(live)
