"""Voiceprint matching on the evaluation set (bench/voiceprint_eval.py): the threshold chosen on
the tune split, and the held-out outcomes at it.

Run with `pytest bench/test_voiceprint_eval.py --benchmark-enable --benchmark-only -s` (part of
`make bench`). Results land in the run's bench/results/run-*.json under "voiceprint_eval".
"""
from __future__ import annotations

from bench.voiceprint_eval import evaluate_voiceprints


def test_voiceprint_eval(benchmark, results):
    result = benchmark.pedantic(evaluate_voiceprints, rounds=1, iterations=1)
    results.record("voiceprint_eval", result)
    heldout = result["heldout"]["early"]
    benchmark.extra_info.update({"threshold": result["threshold"], **heldout})
    # The configured default is what the tune split chooses (retune both together) ...
    assert abs(result["threshold"] - result["configured_threshold"]) <= 0.02
    # ... and on voices it never saw, a wrong name stays rarer than one trial in ten, and most
    # enrolled people are named (a quality bar, with the margin of a small set).
    assert heldout["false_match"] + heldout["impostor_match"] <= 0.1 * heldout["enrolled"]
    assert heldout["true_match"] >= 0.75 * heldout["enrolled"]
