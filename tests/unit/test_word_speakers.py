from appliance.diarization.words import attach_speakers
from appliance.subtitles.types import SpeakerTurn, Word


def test_each_word_takes_the_speaker_over_most_of_its_span():
    turns = [SpeakerTurn(0.0, 2.0, "S1"), SpeakerTurn(1.8, 4.0, "S2")]
    words = [Word("hello", 0.5, 0.9), Word("there", 1.7, 2.1), Word("yes", 1.9, 2.6), Word("gap", 5.0, 5.5)]
    out = attach_speakers(words, turns)
    assert [w.speaker for w in out] == ["S1", "S1", "S2", None]
    # Everything else of the word is kept; the input is not modified (frozen dataclass copies).
    assert [(w.text, w.start, w.end) for w in out] == [(w.text, w.start, w.end) for w in words]
    assert all(w.speaker is None for w in words)


def test_a_word_in_a_short_gap_takes_the_nearest_turn():
    turns = [SpeakerTurn(0.0, 1.0, "S1"), SpeakerTurn(3.0, 4.0, "S2")]
    words = [Word("a", 1.2, 1.4), Word("b", 2.7, 2.9), Word("c", 1.7, 2.1)]
    assert [w.speaker for w in attach_speakers(words, turns)] == ["S1", "S2", None]
    assert attach_speakers(words, turns, max_gap=1.0)[2].speaker == "S1"


def test_zero_length_word_and_no_turns():
    assert attach_speakers([Word("a", 1.0, 1.0)], [SpeakerTurn(0.5, 1.5, "S3")])[0].speaker == "S3"
    assert attach_speakers([Word("a", 1.0, 2.0)], [])[0].speaker is None
