"""The system benchmarks' pure helpers (bench/load.py): schedules, word times, percentiles, backlog rule."""
import numpy as np
import pytest

from appliance.subtitles.types import Word
from bench.load import (
    PushLog,
    WordTimes,
    backlog_bounded,
    bucket_quantile,
    histogram_buckets,
    latencies,
    looped,
    pct,
    per_session,
    summary,
)


def test_looped_repeats_from_an_offset():
    samples = np.arange(16_000 * 3, dtype=np.float32)  # 3 s
    out = looped(samples, seconds=5.0, offset=1.0)
    assert len(out) == 16_000 * 5
    assert out[0] == 16_000  # starts 1 s in
    assert out[2 * 16_000] == 0  # wraps after the remaining 2 s
    assert out[-1] == samples[-1]  # then the whole 3 s again


def test_push_log_capture_time_is_the_due_time_of_the_chunk_holding_the_sample():
    log = PushLog.for_audio(int(16_000 * 0.25), chunk_seconds=0.1)  # chunks end at 0.1, 0.2, 0.25
    assert log.chunk_ends == [0.1, 0.2, 0.25]
    assert log.capture_time(0.05) is None  # schedule not started
    log.origin = 100.0
    assert log.capture_time(0.05) == 100.1
    assert log.capture_time(0.1) == 100.1  # the chunk's last sample
    assert log.capture_time(0.1001) == pytest.approx(100.2)
    assert log.capture_time(0.31) == 100.25  # a word timestamp past the audio: the last chunk
    assert log.progress(100.15) == pytest.approx(0.15)
    assert log.progress(99.0) == 0.0 and log.progress(200.0) == 0.25


def test_push_log_send_lag_and_pushing():
    log = PushLog.for_audio(16_000 * 3 // 10, chunk_seconds=0.1)
    assert not log.pushing
    log.sent.append(5.0)  # the first chunk opens the session before the schedule starts
    log.origin = 10.0
    log.sent += [10.2, 10.5]  # due 10.2 and 10.3
    assert log.send_lags() == [0.0, pytest.approx(0.2)]
    assert not log.pushing


def w(text, start, end, speaker=None):
    return Word(text, start, end, speaker=speaker)


def test_word_times_partial_then_final_inside_a_partial_then_closed_cue_then_relabelled():
    times = WordTimes()
    times.observe("partial", [w("hello", 1.0, 1.4)], final_words=0, received=10.0)
    # Timestamps move a little between decodes; still the same word.
    times.observe("partial", [w("hello", 1.1, 1.5), w("there", 1.6, 2.0)], final_words=1, received=10.5)
    times.observe("final", [w("hello", 1.1, 1.5, "A"), w("there", 1.6, 2.0, "A")], final_words=2, received=11.0)
    times.observe("speaker_update", [w("hello", 1.1, 1.5, "A"), w("there", 1.6, 2.0, "B")], final_words=2,
                  received=13.0)
    hello, there = (times.words[("hello", 1.1, 1.5)], times.words[("there", 1.6, 2.0)])
    assert (hello.shown, hello.final, hello.label, hello.labelled) == (10.0, 10.5, "A", 11.0)
    assert (there.shown, there.final, there.label, there.labelled) == (10.5, 11.0, "B", 13.0)
    assert times.text == "hello there"


def test_word_times_ignore_session_state_and_count_each_final_word_once():
    times = WordTimes()
    times.observe("session_state", [], 0, 1.0)
    for received in (2.0, 3.0):
        times.observe("partial", [w("a", 0.0, 0.5)], final_words=1, received=received)
    times.observe("final", [w("a", 0.0, 0.5)], final_words=1, received=4.0)
    assert len(times.words) == 1
    record = times.words[("a", 0.0, 0.5)]
    assert (record.shown, record.final, record.label) == (2.0, 2.0, None)


def test_latencies_per_word_and_words_without_labels_have_no_speaker_latency():
    times = WordTimes()
    times.observe("partial", [w("x", 0.0, 0.4)], 0, 10.6)
    times.observe("final", [w("x", 0.0, 0.4, "S1"), w("y", 0.5, 0.9)], 2, 11.0)
    lat = latencies(times, lambda t: 10.0 + t)
    assert sorted(lat.final) == pytest.approx([0.1, 0.6])
    assert sorted(lat.partial) == pytest.approx([0.1, 0.2])
    assert lat.speaker == pytest.approx([0.6])
    assert latencies(times, lambda t: 10.0 + t, since=10.5).final == pytest.approx([0.1])
    assert latencies(times, lambda t: None).final == []


def test_percentiles_and_summary_use_null_for_nothing_measured():
    assert pct([], 95) is None
    assert pct([1.0, 2.0, 3.0], 50) == 2.0
    times = WordTimes()
    out = summary(latencies(times, lambda t: t))
    assert out["final_latency_p95"] is None and out["final_latencies"] == []


def test_backlog_bounded_compares_the_last_third_with_the_first():
    steady = [0.0, 0.6, 0.2, 0.8, 0.1, 0.7, 0.3, 0.9, 0.4]
    assert backlog_bounded(steady, tolerance=0.5)
    growing = [0.5 * i for i in range(12)]
    assert not backlog_bounded(growing, tolerance=1.0)
    assert backlog_bounded([3.0, 3.0, 3.0, 2.0, 2.0, 3.9], tolerance=1.0)
    with pytest.raises(ValueError):
        backlog_bounded([1.0, 2.0])


def test_per_session_reads_one_metric_by_session_label():
    exposition = """# HELP appliance_backlog_seconds Audio not yet decoded.
# TYPE appliance_backlog_seconds gauge
appliance_backlog_seconds{session="a",stage="source"} 2.0
appliance_backlog_seconds{session="a",stage="buffer"} 0.5
appliance_backlog_seconds{session="b",stage="buffer"} 1.25
# HELP appliance_merged_updates_total Decode steps folded.
# TYPE appliance_merged_updates_total counter
appliance_merged_updates_total{session="a"} 3.0
"""
    assert per_session(exposition, "appliance_backlog_seconds", stage="buffer") == {"a": 0.5, "b": 1.25}
    assert per_session(exposition, "appliance_backlog_seconds", stage="source") == {"a": 2.0}
    assert per_session(exposition, "appliance_merged_updates_total") == {"a": 3.0}


def test_histogram_quantiles_from_a_real_prometheus_exposition():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    histogram = Histogram("delay_seconds", "d", buckets=(0.01, 0.02, 0.05), registry=registry)
    for value in [0.005] * 50 + [0.015] * 40 + [0.04] * 9 + [3.0]:  # 100 observations
        histogram.observe(value)
    cumulative = histogram_buckets(generate_latest(registry).decode(), "delay_seconds")
    assert cumulative == {0.01: 50, 0.02: 90, 0.05: 99, float("inf"): 100}
    assert bucket_quantile(cumulative, 0.5) == pytest.approx(0.01)  # the 50th of 100 closes the first bucket
    assert bucket_quantile(cumulative, 0.7) == pytest.approx(0.015)  # halfway through the second
    assert bucket_quantile(cumulative, 0.99) == pytest.approx(0.05)
    assert bucket_quantile(cumulative, 1.0) == pytest.approx(0.05)  # in +Inf: the last finite bound
    assert bucket_quantile({}, 0.5) is None and bucket_quantile({0.01: 0, float("inf"): 0}, 0.5) is None
