"""VadPolicy with plain lists of probabilities.

Most tests use 0.1 s frames (1600 samples at 16 kHz) so times read as round
numbers; the rules do not depend on the frame size.
"""
import pytest

from appliance.config import VadConfig
from appliance.vad import VadEvent, VadPolicy

FRAME = 1600  # 0.1 s
CONFIG = VadConfig(threshold=0.5, min_speech_s=0.2, min_silence_s=0.3, speech_pad_s=0.1)


def policy(config: VadConfig = CONFIG) -> VadPolicy:
    return VadPolicy(config, frame_samples=FRAME)


def run(probabilities, config: VadConfig = CONFIG) -> list[tuple[str, float]]:
    p = policy(config)
    return [(e.kind, round(e.time, 6)) for e in p.extend(probabilities) + p.flush()]


def test_silence_gives_no_events():
    assert run([0.0] * 50) == []


def test_start_and_end_times_are_padded_frame_edges():
    # Speech in frames 5..9 (0.5 s .. 1.0 s), silence after.
    assert run([0.0] * 5 + [0.9] * 5 + [0.0] * 10) == [("start", 0.4), ("end", 1.1)]


def test_events_are_emitted_as_soon_as_they_are_certain():
    p = policy()
    emitted = {i: p.push(prob) for i, prob in enumerate([0.0] * 5 + [0.9] * 5 + [0.0] * 10)}
    decided = {i: events for i, events in emitted.items() if events}
    # The start is certain once 0.2 s of speech is seen (end of frame 6); the end
    # once 0.3 s of silence is seen (end of frame 12).
    assert decided == {6: [VadEvent("start", pytest.approx(0.4))], 12: [VadEvent("end", pytest.approx(1.1))]}


def test_in_speech_follows_the_emitted_events():
    p = policy()
    states = []
    for prob in [0.9] * 3 + [0.0] * 2 + [0.9] + [0.0] * 4:
        p.push(prob)
        states.append(p.in_speech)
    # Confirmed at frame 1; the 0.2 s pause is still inside the region; closed at frame 8.
    assert states == [False, True, True, True, True, True, True, True, False, False]


def test_pausing_is_a_pause_inside_an_open_region():
    p = policy()
    states = []
    for prob in [0.0, 0.9, 0.9, 0.0, 0.4, 0.9, 0.0, 0.0, 0.0, 0.0]:
        p.push(prob)
        states.append(p.pausing)
    # Silence before the region is no pause; 0.4 (between the thresholds) keeps the pause; speech ends
    # it; the third silent frame closes the region (0.3 s), which is no pause either.
    assert states == [False, False, False, True, True, False, True, True, False, False]


def test_hysteresis_between_the_thresholds():
    # neg_threshold defaults to 0.35: 0.4 neither opens speech nor closes it.
    assert run([0.4] * 30) == []
    assert run([0.9] * 3 + [0.4] * 30 + [0.0] * 5) == [("start", 0.0), ("end", 3.4)]
    # Once paused (below 0.35), 0.4 does not resume speech: the pause keeps counting.
    assert run([0.9] * 3 + [0.1] + [0.4] * 5) == [("start", 0.0), ("end", 0.4)]


def test_explicit_negative_threshold():
    config = VadConfig(threshold=0.5, neg_threshold=0.45, min_speech_s=0.2, min_silence_s=0.3, speech_pad_s=0.1)
    assert run([0.9] * 3 + [0.4] * 10, config) == [("start", 0.0), ("end", 0.4)]


def test_short_blips_are_ignored():
    assert run([0.0] * 5 + [0.9] + [0.0] * 10 + [0.9] + [0.0] * 10) == []
    p = policy()
    for prob in [0.9] + [0.0] * 5:
        assert p.push(prob) == []
        assert not p.in_speech


def test_short_pauses_are_bridged():
    # 0.2 s pause < 0.3 s min_silence: one region.
    assert run([0.9] * 5 + [0.0] * 2 + [0.9] * 5 + [0.0] * 5) == [("start", 0.0), ("end", 1.3)]


def test_bridged_blips_add_up_to_speech():
    # Two 0.1 s blips 0.2 s apart: the region spans 0.4 s, so it is speech.
    assert run([0.0] * 3 + [0.9] + [0.0] * 2 + [0.9] + [0.0] * 5) == [("start", 0.2), ("end", 0.8)]


def test_long_pause_splits_and_starts_never_precede_the_previous_end():
    assert run([0.9] * 5 + [0.0] * 5 + [0.9] * 5 + [0.0] * 5) == [
        ("start", 0.0), ("end", 0.6), ("start", 0.9), ("end", 1.6),
    ]
    # Padding (0.3 s) as long as the pause: the second start is clamped to the first end.
    wide = VadConfig(threshold=0.5, min_speech_s=0.2, min_silence_s=0.3, speech_pad_s=0.3)
    events = run([0.9] * 5 + [0.0] * 3 + [0.9] * 5 + [0.0] * 3, wide)
    assert events == [("start", 0.0), ("end", 0.8), ("start", 0.8), ("end", 1.6)]


def test_flush_closes_open_speech_at_the_end_of_audio():
    p = policy()
    assert p.extend([0.0] * 2 + [0.9] * 8) == [VadEvent("start", pytest.approx(0.1))]
    assert p.in_speech
    assert p.flush(end_sample=9 * FRAME + 100) == [VadEvent("end", pytest.approx(0.90625))]
    assert not p.in_speech
    assert p.flush() == []
    with pytest.raises(RuntimeError, match="after flush"):
        p.push(0.9)


def test_flush_during_a_pause_closes_at_the_pause_plus_padding():
    assert run([0.9] * 5 + [0.0] * 2) == [("start", 0.0), ("end", 0.6)]


def test_flush_drops_unconfirmed_speech_and_checks_end_sample():
    assert run([0.0] * 3 + [0.9]) == []
    with pytest.raises(ValueError, match="outside"):
        policy().flush(end_sample=1)


def test_times_with_silero_frames():
    # Real frame size: 512 samples = 32 ms; default config (pad 0.1 s, min silence 0.5 s).
    p = VadPolicy(VadConfig())
    events = p.extend([0.0] * 10 + [0.8] * 20 + [0.0] * 20) + p.flush()
    assert events == [
        VadEvent("start", pytest.approx(10 * 0.032 - 0.1)),
        VadEvent("end", pytest.approx(30 * 0.032 + 0.1)),
    ]
