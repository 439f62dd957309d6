import json

from appliance.subtitles.types import Cue, SpeakerTurn, Word
from appliance.subtitles.writers import to_json, to_rttm, to_srt, to_text, to_webvtt

CUES = [
    Cue(0.5, 2.0, ("Hello there.",), (Word("Hello", 0.5, 0.9), Word("there.", 1.0, 1.5)), "S1"),
    Cue(3661.25, 3663.0, ("Second line", "of text"), (), None),
]


def test_webvtt_timestamps_and_voice_tag():
    text = to_webvtt(CUES)
    assert text.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\n<v S1>Hello there.\n")
    assert "01:01:01.250 --> 01:01:03.000\nSecond line\nof text\n" in text


def test_srt_numbering_and_comma_decimal():
    text = to_srt(CUES)
    assert text.startswith("1\n00:00:00,500 --> 00:00:02,000\nS1: Hello there.\n\n2\n01:01:01,250")


def test_json_schema():
    doc = json.loads(to_json(CUES, duration=3663.0, language="en"))
    assert doc["duration"] == 3663.0 and doc["language"] == "en"
    first = doc["segments"][0]
    assert first["speaker"] == "S1" and first["text"] == "Hello there."
    assert first["words"][0] == {"start": 0.5, "end": 0.9, "text": "Hello", "probability": 1.0}
    assert doc["segments"][1]["speaker"] is None


def test_text_and_rttm():
    assert to_text(CUES) == "S1: Hello there.\nSecond line of text\n"
    assert to_rttm([SpeakerTurn(1.0, 2.5, "S1")], "room") == "SPEAKER room 1 1.000 1.500 <NA> <NA> S1 <NA> <NA>\n"
