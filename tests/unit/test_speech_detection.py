"""The speech-detection study's frame counting (bench/speech_detection.py) and DER's parts (bench/diarization_eval.py)."""
import numpy as np
import pytest

from appliance.subtitles.types import SpeakerTurn
from bench.diarization_eval import score
from bench.speech_detection import (
    Counts,
    RecordingFrames,
    compare,
    counts,
    recoverable,
    speaker_time,
    speech_mask,
    vad_mask,
)


def turn(start, end, speaker):
    return SpeakerTurn(start=start, end=end, speaker=speaker)


def test_speech_mask_and_speaker_time_on_the_10ms_grid():
    turns = [turn(0.10, 0.30, "A"), turn(0.20, 0.40, "B"), turn(0.25, 0.35, "A")]
    mask = speech_mask(turns, duration=0.5)
    assert len(mask) == 50
    assert np.flatnonzero(mask).tolist() == list(range(10, 40))
    count = speaker_time(turns, duration=0.5)
    # A: 0.10-0.35 (its own overlapping turns count once), B: 0.20-0.40
    assert count[15] == 1 and count[25] == 2 and count[34] == 2 and count[36] == 1 and count[45] == 0
    assert count.sum() == 25 + 20


def test_vad_mask_maps_each_32ms_frame_onto_its_samples():
    probabilities = np.array([0.1, 0.6, 0.2, 0.5], dtype=np.float32)
    mask = vad_mask(probabilities, duration=0.128, threshold=0.5)
    # frame 1: 0.032-0.064 s -> 10 ms frames 3..5; frame 3: 0.096-0.128 s -> 10..12
    assert np.flatnonzero(mask).tolist() == [3, 4, 5, 10, 11, 12]
    assert not vad_mask(probabilities, duration=0.128, threshold=0.7).any()


def test_counts_and_recoverable_speech():
    reference = np.array([1, 1, 1, 1, 0, 0, 2, 2], dtype=np.int32)  # speakers per frame
    diarized = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    vad = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    c = counts(reference > 0, diarized)
    assert c == Counts(speech=6, missed=3, false_alarm=1)
    assert c.miss_rate == pytest.approx(0.5) and c.false_alarm_rate == pytest.approx(1 / 6)
    assert c + Counts(4, 1, 0) == Counts(10, 4, 1)
    # the VAD adds frames 2 (1 speaker), 5 (nobody) and 7 (2 speakers)
    assert recoverable(reference, diarized, vad) == (3, 1)


def test_compare_sums_frames_over_recordings_of_a_kind():
    rows = [
        RecordingFrames("a", "meeting", np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1], bool),
                        np.array([0.9]), duration=0.04),
        RecordingFrames("b", "meeting", np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1], bool),
                        np.array([0.0]), duration=0.04),
    ]
    summary = compare(rows, thresholds=[0.5])
    meeting = summary["meeting"]
    assert meeting["recordings"] == 2 and summary["all"]["recordings"] == 2
    assert meeting["segmentation"] == {"miss": pytest.approx(1 / 6), "false_alarm": pytest.approx(1 / 6)}
    # recording a's VAD frame covers 10 ms frames 0..2: it recovers frame 1, adds false alarm at 2
    union = meeting["union@0.5"]
    assert union["miss"] == 0.0 and union["false_alarm"] == pytest.approx(2 / 6)
    assert union["best_case_der_gain"] == pytest.approx(1 / 6)
    assert union["added_false_alarm_der"] == pytest.approx(1 / 6)
    assert meeting["vad@0.5"]["miss"] == pytest.approx(4 / 6)


def test_der_parts_add_up_to_der():
    reference = [turn(0.0, 4.0, "A"), turn(4.0, 8.0, "B"), turn(6.0, 8.0, "A")]
    hypothesis = [turn(0.0, 3.0, "S1"), turn(4.0, 10.0, "S2")]
    s = score("x", "meeting", reference, hypothesis, duration=10.0)
    # 10 s of reference speaker time: A 0-3 right, 3-4 missed; B 4-8 right; A 6-8 missed (overlap);
    # 8-10 false alarm; no confusion.
    assert s.missed == pytest.approx(0.3) and s.false_alarm == pytest.approx(0.2) and s.confusion == 0.0
    assert s.der == pytest.approx(s.missed + s.false_alarm + s.confusion)
