"""The pure parts of the Meet/LiveKit faces: Kyutai message parsing and close codes, each final
word once, the OpenAI answer shapes and WhisperX speaker names, [http] validation."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from appliance.config import ConfigError, HttpConfig
from appliance.http.kyutai import Audio, BadMessage, FinalWords, Marker, parse_message, word_messages
from appliance.http.openai import speaker_names
from appliance.subtitles.events import EventKind, SubtitleEvent
from appliance.subtitles.types import Word


def test_audio_and_marker_messages_parse():
    audio = parse_message(msgpack.packb({"type": "Audio", "pcm": [0.0, 0.5, -0.25]}, use_single_float=True))
    assert isinstance(audio, Audio) and audio.samples.dtype == np.float32
    assert audio.samples.tolist() == [0.0, 0.5, -0.25]
    assert parse_message(msgpack.packb({"type": "Marker", "id": 3})) == Marker(3)


@pytest.mark.parametrize("data, code, words", [
    (b"\xc1", 1007, "msgpack"),
    (msgpack.packb([1, 2]), 1003, "map"),
    (msgpack.packb({"type": "Text"}), 1003, "Text"),
    (msgpack.packb({"type": "Audio", "pcm": "abc"}), 1007, "list"),
    (msgpack.packb({"type": "Audio", "pcm": [0.1, float("nan")]}), 1007, "NaN"),
    (msgpack.packb({"type": "Audio", "pcm": [True]}), 1007, "float32"),
    (msgpack.packb({"type": "Marker", "id": "x"}), 1007, "integer"),
])
def test_bad_messages_say_why_with_a_close_code(data, code, words):
    with pytest.raises(BadMessage) as caught:
        parse_message(data)
    assert caught.value.code == code and words in caught.value.reason


def w(text, start, speaker=None):
    return Word(text, start, start + 0.3, 0.9, speaker)


def test_each_final_word_once_from_partials_and_finals():
    words = FinalWords()
    a, b, c = w("one", 0.0), w("two", 0.5), w("three", 1.0)
    partial = SubtitleEvent(EventKind.PARTIAL, "c1", words=(a, b, c), final_words=1)
    assert words.new(partial) == [a]
    assert words.new(partial) == []  # re-sent partial: nothing new
    assert words.new(SubtitleEvent(EventKind.PARTIAL, "c1", words=(a, b, c), final_words=2)) == [b]
    relabelled = (a, b, Word("three", 1.0, 1.3, 0.9, "S2"))
    assert words.new(SubtitleEvent(EventKind.FINAL, "c1", words=relabelled, final_words=3)) == [relabelled[2]]
    assert words.new(SubtitleEvent(EventKind.SPEAKER_UPDATE, "c1", words=relabelled)) == []


def test_word_messages_are_kyutais():
    word, end = (msgpack.unpackb(m) for m in word_messages(w("hi", 1.25)))
    assert word == {"type": "Word", "text": "hi", "start_time": 1.25} and end == {"type": "EndWord", "stop_time": 1.55}


def test_speaker_names_are_whisperx_style_by_first_appearance():
    assert speaker_names([w("a", 0, "S2"), w("b", 1), w("c", 2, "S1"), w("d", 3, "S2")]) == {
        "S2": "SPEAKER_00", "S1": "SPEAKER_01"}


@pytest.mark.parametrize("field, value", [("asr_max_message_bytes", 10), ("transcription_max_bytes", 0),
                                          ("transcription_queue", 0), ("transcription_nice", -1),
                                          ("transcription_nice", 20), ("transcription_cpu_threads", 0)])
def test_http_limits_are_validated(field, value):
    with pytest.raises(ConfigError, match=f"http.{field}"):
        HttpConfig(**{field: value})
