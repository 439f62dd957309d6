"""The regression guard's comparison rules, on synthetic measurements (bench/compare.py)."""
from __future__ import annotations

import copy

import pytest

from bench.calibration import speed_ratio
from bench.compare import compare, format_report

CALIBRATION = {"numpy_fft_s": 0.05, "python_loop_s": 0.04, "onnx_vad_s": 0.03}


def document(speed: float = 1.0, component_ms: float = 10.0, final_p95: float = 2.0, ideal_p95: float = 1.5,
             cpu: float = 0.6, wer: float = 0.136, der: float = 0.056) -> dict:
    """A measurement on a machine `speed` times slower than the baseline's (compute scaled by it)."""
    return {
        "date": "2026-11-27T00:00:00+00:00",
        "machine": {"cpu": "test CPU", "cores": 2},
        "calibration": {clock: {k: v * speed for k, v in CALIBRATION.items()} for clock in ("wall", "cpu")},
        "components": {"vad_frame": {"wall_median_ms": component_ms, "cpu_ms": component_ms, "unit": "per frame"}},
        "latency": {"final_latency_p95": {"measured": final_p95, "ideal": ideal_p95}},
        "load": {"cpu_per_audio_second": cpu},
        "accuracy": {"streaming_wer": wer, "offline_der": der},
    }


def rows(verdict) -> dict[str, object]:
    return {row.measure.split()[0]: row for row in verdict.rows}


def test_identical_runs_pass():
    verdict = compare(document(), document())
    assert verdict.ok and verdict.k_cpu == pytest.approx(1.0) and verdict.k_wall == pytest.approx(1.0)
    assert len(verdict.rows) == 5


def test_component_regression_beyond_25_percent_fails():
    verdict = compare(document(), document(component_ms=13.0))
    assert not verdict.ok
    assert [r.measure.split()[0] for r in verdict.failures] == ["vad_frame"]
    assert rows(verdict)["vad_frame"].change == "+30.0%"


def test_noise_within_25_percent_passes():
    assert compare(document(), document(component_ms=12.0, final_p95=2.2, cpu=0.7)).ok


def test_a_slower_machine_is_not_a_regression():
    # Twice as slow everywhere: compute doubles, the fixed audio-time part of latency does not.
    slow = document(speed=2.0, component_ms=20.0, final_p95=1.5 + 2 * 0.5, cpu=1.2)
    verdict = compare(document(), slow)
    assert verdict.ok, format_report(document(), slow, verdict)
    assert verdict.k_cpu == pytest.approx(2.0) and verdict.k_wall == pytest.approx(2.0)
    assert rows(verdict)["final_latency_p95"].adjusted == pytest.approx(2.0)


def test_a_faster_machine_does_not_hide_a_regression():
    # Twice as fast, but the component got no faster: 100 % slower than expected.
    assert not compare(document(), document(speed=0.5, component_ms=10.0, cpu=0.3)).ok


def test_latency_scales_only_its_compute_part():
    # The fixed part grew (say a longer step): a slower machine must not excuse that.
    verdict = compare(document(), document(speed=2.0, component_ms=20.0, cpu=1.2, final_p95=3.2, ideal_p95=2.2))
    latency = rows(verdict)["final_latency_p95"]
    assert latency.adjusted == pytest.approx(2.2 + 1.0 / 2.0) and not latency.ok


def test_wer_worse_by_more_than_001_fails_but_001_passes():
    assert compare(document(), document(wer=0.146)).ok
    verdict = compare(document(), document(wer=0.148))
    assert [r.measure for r in verdict.failures] == ["streaming_wer"]
    assert not compare(document(), document(der=0.07)).ok
    assert compare(document(), document(wer=0.10, der=0.0)).ok  # better is fine


def test_missing_key_fails_and_new_key_is_listed():
    now = document()
    del now["components"]["vad_frame"]
    now["components"]["new_thing"] = {"wall_median_ms": 1.0, "cpu_ms": 1.0, "unit": "per call"}
    del now["accuracy"]["offline_der"]
    verdict = compare(document(), now)
    failed = {r.measure.split()[0]: r.change for r in verdict.failures}
    assert failed == {"vad_frame": "missing in this run", "offline_der": "missing in this run"}
    assert rows(verdict)["new_thing"].ok and rows(verdict)["new_thing"].change == "new, not in the baseline"


def test_calibration_kinds_must_match():
    now = copy.deepcopy(document())
    del now["calibration"]["cpu"]["onnx_vad_s"]
    with pytest.raises(KeyError, match="onnx_vad_s"):
        compare(document(), now)


def test_speed_ratio_is_the_geometric_mean():
    base = {"a": 1.0, "b": 1.0}
    assert speed_ratio(base, {"a": 4.0, "b": 1.0}) == pytest.approx(2.0)


def test_report_lists_every_comparison_and_the_verdict():
    verdict = compare(document(), document(component_ms=13.0))
    text = format_report(document(), document(component_ms=13.0), verdict)
    for measure in ("vad_frame", "final_latency_p95", "cpu_per_audio_second", "streaming_wer", "offline_der",
                    "numpy_fft_s", "k_cpu", "k_wall"):
        assert measure in text
    assert "FAIL" in text and "bench-check: FAILED: 4 of 5" in text
