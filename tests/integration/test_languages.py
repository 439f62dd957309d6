"""A multilingual room on whisper-base: the language detected and kept, French decoded as French,
translation to English, English-only models refusing what they cannot do. Real models; French
speech read by a person (Asterisk's prompts, tests/data/corpus.py) and from espeak-ng
(tests/data/french.py: exact sentences for the translation and accent checks), English from
the sample conversation."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from appliance.audio.decode import load_audio
from appliance.build import Recognizers
from appliance.config import AppConfig, AsrConfig, ConfigError, RoomAsr
from appliance.evaluation import word_error_rate
from appliance.inference.manifest import load_manifest
from appliance.replay import replay
from appliance.subtitles.text import normalize
from appliance.vad.silero import SileroVad
from tests.data.corpus import asr_set
from tests.data.french import french_clip, french_sentences

SAMPLE_RATE = 16_000


@pytest.fixture(scope="module")
def recognizers() -> Recognizers:
    return Recognizers(AsrConfig(), load_manifest())


@pytest.fixture(scope="module")
def french() -> tuple[np.ndarray, str]:
    path, text = french_clip()
    return load_audio(path), text


@pytest.fixture(scope="module")
def english(sample_dir) -> np.ndarray:
    return load_audio(sample_dir / "sample.wav")[int(6.5 * SAMPLE_RATE):int(20 * SAMPLE_RATE)]


@pytest.fixture(scope="module")
def real_french() -> list:
    return [r for r in asr_set(None) if r.language == "fr"]


def test_each_model_is_loaded_once_and_shared(recognizers):
    assert recognizers.get("whisper-base") is recognizers.get("whisper-base")
    assert recognizers.get("whisper-base").multilingual and not recognizers.get("whisper-tiny.en").multilingual


def test_language_is_detected_on_clips_of_three_seconds_of_speech_or_more(recognizers, english):
    """Real English: every clip. espeak-ng's French is robotic enough that Whisper base calls a
    sentence of it Thai now and then (a limit of the test speech, not of real French): most
    sentences, and the room as a whole (next test), must come out French."""
    base = recognizers.get("whisper-base")
    for seconds in (3, 6, 12):
        assert base.detect_language(english[: seconds * SAMPLE_RATE])[0][0] == "en", seconds
    detected = []
    for path, _ in french_sentences():
        audio = load_audio(path)
        assert len(audio) >= 3 * SAMPLE_RATE
        detected.append(base.detect_language(audio)[0][0])
    assert detected.count("fr") >= 4, detected


def test_an_auto_room_settles_on_french_and_never_flips(recognizers, french):
    audio, _ = french
    result = asyncio.run(replay(audio, recognizers.get("whisper-base"), SileroVad.load(), realtime=False,
                                language="auto"))
    assert result.language == "fr" and result.stats.language_changes == 0
    # French words came back. The real-French test below holds the WER: on espeak-ng's robotic voice
    # the streamed WER moves with the CPU's int8 kernels (0.97 on an AVX-512 VNNI EPYC on 2026-12-07,
    # under 0.9 before; offline 0.29 there), so a bound on it here says nothing portable.
    assert {"conseil", "municipal", "bibliothèque"} & set(normalize(result.text, "fr").split())


def test_language_is_detected_on_every_clip_of_real_french(recognizers, real_french):
    """Clips of 3, 6 and 12 s cut every 14 s from each real French recording (pauses included)."""
    base = recognizers.get("whisper-base")
    clips = 0
    for recording in real_french:
        audio = recording.audio()
        for seconds in (3, 6, 12):
            for start in range(0, len(audio) // SAMPLE_RATE - seconds, 14):
                clip = audio[start * SAMPLE_RATE:(start + seconds) * SAMPLE_RATE]
                assert base.detect_language(clip)[0][0] == "fr", (recording.name, seconds, start)
                clips += 1
    assert clips >= 50


def test_an_auto_room_on_real_french_settles_on_french_and_never_flips(recognizers, real_french):
    recording = next(r for r in real_french if r.split == "tune")
    result = asyncio.run(replay(recording.audio(), recognizers.get("whisper-base"), SileroVad.load(),
                                realtime=False, language="auto"))
    assert result.language == "fr" and result.stats.language_changes == 0
    # Offline whisper-base scores 0.10-0.24 on these recordings; the bench holds the stream to offline + 0.03.
    assert word_error_rate(recording.reference, result.text, "fr") < 0.4


def test_an_english_room_on_the_multilingual_model_stays_english(recognizers, english):
    result = asyncio.run(replay(english, recognizers.get("whisper-base"), SileroVad.load(), realtime=False,
                                language="auto"))
    assert result.language == "en" and result.stats.language_changes == 0


def test_translate_gives_english_subtitles_of_french_speech(recognizers, french):
    audio, _ = french
    words = recognizers.get("whisper-base").transcribe(audio[: 8 * SAMPLE_RATE], language="fr", task="translate")
    heard = set(normalize(" ".join(w.text for w in words)).split())
    assert {"the"} <= heard and {"council", "municipal", "meeting"} & heard, heard
    assert not {"le", "la", "du", "les", "nous"} & heard


def test_offline_french_keeps_its_accents(recognizers, french):
    audio, text = french
    words, language = recognizers.get("whisper-base").transcribe_file(audio, language="fr")
    assert language == "fr"
    assert word_error_rate(text, " ".join(w.text for w in words), "fr") < 0.5
    assert any(ch in " ".join(w.text for w in words) for ch in "éàè")


@pytest.mark.parametrize("room, message", [
    (RoomAsr("whisper-tiny.en", "fr"), "English-only model; it cannot do language 'fr'"),
    (RoomAsr("whisper-tiny.en", None, "translate"), "English-only model; it cannot translate"),
])
def test_an_english_only_model_refuses_other_languages_and_translation(recognizers, room, message):
    with pytest.raises(ConfigError, match=message):
        recognizers.check(room, "sessions.room.model")


def test_a_room_table_overrides_asr_and_a_pushed_stream_overrides_both():
    from appliance.config import SessionConfig

    config = AppConfig(asr=AsrConfig(language="en"),
                       sessions=(SessionConfig("salle", model="whisper-base", language="fr"),))
    assert config.room_asr(config.sessions[0]) == RoomAsr("whisper-base", "fr", "transcribe")
    assert config.room_asr() == RoomAsr("whisper-tiny.en", "en", "transcribe")
    assert config.room_asr(None, "whisper-base", "auto", "translate") == RoomAsr("whisper-base", "auto", "translate")
