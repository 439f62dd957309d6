"""The README benchmark section and plots, rendered from synthetic run files in a temporary directory."""
from __future__ import annotations

import json

import pytest

from bench.report import BEGIN, END, NOT_MEASURED, render, replace_section, write_plots

MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "packages": {"ctranslate2": "4.8.5"}}


def write_run(directory, stamp: str, sections: dict, date: str = "2026-11-27T10:00:00+00:00") -> None:
    document = {"date": date, "machine": MACHINE, "sections": sections}
    (directory / f"run-{stamp}.json").write_text(json.dumps(document))


def m(p50: float, p95: float, latencies: list[float]) -> dict:
    return {"final_latency_p50": p50, "final_latency_p95": p95, "partial_latency_p50": p50 / 2,
            "partial_latency_p95": p95 / 2, "speaker_latency_p50": 1.5, "speaker_latency_p95": 2.5,
            "cpu_per_audio_second": 0.6, "wer": 0.136, "final_latencies": latencies,
            "partial_latencies": [x / 2 for x in latencies], "config": {"streaming.step": 0.5}}


E2E = {"audio_seconds": 30.0, "ours": m(1.1, 1.9, [0.8, 1.0, 1.2, 1.9]), "baseline": m(2.2, 3.8, [1.5, 2.0, 3.8]),
       "ratios": {"final_latency_p50": 0.5, "final_latency_p95": 0.5}, "offline": {"wer": 0.123, "cpu_seconds": 1.0,
                                                                                 "cpu_per_audio_second": 0.033}}
CAPACITY = {"diarization": True, "audio_seconds_per_session": 60, "target": 4, "capacity": 3, "criterion": "p95 <= 2 s",
            "rows": [{"sessions": n, "final_latency_p50": 0.9 * n, "final_latency_p95": 0.7 * n,
                      "backlog_max_seconds": 0.5 * n, "backlog_bounded": n < 4, "cpu_per_audio_second": 0.6 * n,
                      "merged_updates": n} for n in (1, 2, 3, 4)]}
FANOUT = {"target_p99_ms": 50, "rows": [{"subscribers": 1, "events": 100, "deliveries": 100, "lost": 0,
                                         "delay_p50_ms": 1.0, "delay_p99_ms": 3.0, "delay_max_ms": 4.0},
                                        {"subscribers": 100, "events": 100, "deliveries": 10000, "lost": 0,
                                         "delay_p50_ms": 20.0, "delay_p99_ms": 61.5, "delay_max_ms": 80.0}]}
COMPONENTS = {"vad_frame": {"wall_median_ms": 0.1263, "cpu_ms": 0.1274, "unit": "per 32 ms frame"},
              "protobuf_event": {"wall_median_ms": 0.0098, "cpu_ms": 0.0121, "unit": "per event (event_to_pb)"}}


def test_empty_results_say_not_measured_and_never_crash(tmp_path):
    text = render(tmp_path)
    assert text.count(NOT_MEASURED) == 11
    assert write_plots(tmp_path) == []


def test_each_section_from_the_newest_run_that_measured_it(tmp_path):
    write_run(tmp_path, "20261127T090000Z", {"components": {"vad_frame": {**COMPONENTS["vad_frame"], "wall_median_ms": 9.9}},
                                             "fanout": FANOUT}, date="2026-11-27T09:00:00+00:00")
    write_run(tmp_path, "20261127T100000Z", {"components": COMPONENTS, "e2e_latency": E2E, "capacity": CAPACITY})
    text = render(tmp_path)
    assert "| vad_frame | per 32 ms frame | 0.126 | 0.127 |" in text and "9.900" not in text
    assert "| protobuf_event | per event (event_to_pb) | 0.010 | 0.012 |" in text
    assert "| final-word latency p50 (s) | 1.10 | 2.20 | 0.50 |" in text
    assert "| final-word latency p95 (s) | 1.90 | 3.80 | 0.50 |" in text
    assert "| speaker-label latency p95 (s) | 2.50 | 2.50 | – |" in text  # no ratio recorded: a dash
    assert "Offline anchor (whole file at once): WER 0.123, 0.033 CPU s per audio s." in text
    assert "| 4 | 3.60 | 2.80 | 2.00 | **no** | 2.40 | 4 |" in text
    assert "Capacity: **3** sessions, target 4 (**missed**). Criterion: p95 <= 2 s." in text
    assert "| this | 100 | 100 | 10000 | 0 | 20.0 | 61.5 | 80.0 | **no** | – | – | – | – | – | – |" in text
    assert "measured 2026-11-27 on Test CPU 9000, 2 cores" in text
    # realtime_replay, recognizer_calls, overload, the three French sections, diarization
    assert text.count(NOT_MEASURED) == 7
    assert "](bench/results/latency_cdf.png)" in text and "](bench/results/capacity.png)" in text


def _french_row(offline: float, fast: float, p95: float) -> dict:
    live = {"wer": fast, "final_latency_p50": 1.1, "final_latency_p95": p95, "cpu_per_audio_second": 0.5}
    return {"offline_wer": offline, "fast": live, "realtime": live}


def test_french_sections_render_offline_against_the_stream_and_the_rooms(tmp_path):
    study = {"offline": {"fr-a": {"wer": 0.1, "cpu_per_audio_second": 0.09}, "fr-b": {"wer": 0.2, "cpu_per_audio_second": 0.07}},
             "variants": {"defaults": {"recordings": {"fr-a": {"wer": 0.11}, "fr-b": {"wer": 0.25}}}}}
    write_run(tmp_path, "20261127T100000Z", {
        "french_streaming": {"study": study, "splits": {"fr-a": "tune", "fr-b": "heldout"},
                             "recordings": {"fr-a": _french_row(0.1, 0.12, 1.9), "fr-b": _french_row(0.2, 0.26, 2.4)}},
        "french_rooms": {"rooms": {"fr-0": {"final_latency_p50": 1.4, "final_latency_p95": 2.3, "wer": 0.21}},
                         "speech": "fr-b", "final_latency_p50": 1.46, "final_latency_p95": 2.41,
                         "backlog_bounded": True, "cpu_per_audio_second": 0.473, "target_final_p95": 2.0}})
    text = render(tmp_path)
    assert "heldout: offline 0.200, fast 0.260, real time 0.260; tune: offline 0.100, fast 0.120, real time 0.120" in text
    assert "| fr-b | heldout | 0.200 | 0.250 | 0.260 | 0.260 | 1.10 / 2.40 | 0.500 |" in text
    assert "offline CPU 0.080 s per audio s" in text
    assert "over both rooms' words 1.46 / 2.41 s (bound 2 s), backlog bounded yes" in text
    assert "| fr-0 | 1.40 | 2.30 | – | 0.210 |" in text


def _diarization_means(der: float, exact: float) -> dict:
    return {"mean": {"meeting": {"recordings": 4, "der": der, "der_collar": der - 0.04, "jer": 0.6,
                                 "count_exact": exact}}, "cpu_s_per_audio_s": 0.041}


def test_diarization_held_out_renders_offline_beside_live(tmp_path):
    write_run(tmp_path, "20261127T100000Z", {"diarization_eval_heldout": {
        "offline": _diarization_means(0.481, 0.5), "live": _diarization_means(0.487, 0.25)}})
    text = render(tmp_path)
    assert "| meeting (4) | 0.481 / 0.441 | 0.600 | 50% | 0.487 / 0.447 | 0.600 | 25% |" in text
    assert "CPU s per audio s: offline 0.041, live 0.041" in text


def test_a_half_written_section_renders_what_it_has(tmp_path):
    write_run(tmp_path, "20261127T100000Z", {"e2e_latency": {"ours": {"final_latency_p50": 1.0}},
                                             "capacity": {"rows": [{"sessions": 2}]},
                                             "overload": {"sessions": 8, "daemon_alive": True}})
    text = render(tmp_path)
    assert "| final-word latency p50 (s) | 1.00 | – | – |" in text
    assert "| 2 | – | – | – | – | – | – |" in text
    assert "| daemon alive | yes |" in text and "| recovered | – |" in text


def test_plots_are_written_for_measured_sections(tmp_path):
    write_run(tmp_path, "20261127T100000Z", {"e2e_latency": E2E, "capacity": CAPACITY, "fanout": FANOUT})
    out = tmp_path / "plots"
    out.mkdir()
    written = write_plots(tmp_path, out)
    assert sorted(p.name for p in written) == ["capacity.png", "fanout.png", "latency_cdf.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_readme_section_is_replaced_between_the_markers():
    readme = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert replace_section(readme, f"{BEGIN}\nnew\n{END}") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        replace_section("no markers here", "x")
