"""No word is final twice: the commit policy driven across trim, flush and forced-commit boundaries
by real decodes (tiny.en on the real conversation, the real Silero VAD).

A config with a short buffer bound makes every kind of boundary happen on 30 s of speech: the
buffer is cut at pauses and sentence ends, forced final beyond 3 s, flushed at each VAD speech
end and at the end of the stream, with greedy tentative decodes and the time guard on. Then no
two final words may have the same text at overlapping times, and no phrase may follow itself.
"""
import numpy as np
import pytest

from appliance.asr.policy import same_word
from appliance.asr.recognizer import WhisperRecognizer
from appliance.asr.stream import AsrStream
from appliance.audio.decode import load_audio
from appliance.config import SAMPLE_RATE, AsrConfig, StreamingConfig
from appliance.inference.whisper import load_whisper
from appliance.subtitles.text import normalize
from appliance.vad.silero import SileroVad

BOUNDARIES = StreamingConfig(step=0.5, tentative_beam=1, commit_guard=0.5, commit_probability=0.85,
                             first_decode=1.0, trim_after=2.0, trim_pause=0.15, max_buffer=3.0,
                             force_margin=1.0, max_word_rate=6.0)


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    config = AsrConfig()
    return WhisperRecognizer(load_whisper(config), config)


def stream_finals(recognizer, audio: np.ndarray, config: StreamingConfig):
    stream = AsrStream(recognizer, SileroVad.load().stream(), config)
    finals = []
    chunk = SAMPLE_RATE // 10
    for i in range(0, len(audio), chunk):
        stream.push(audio[i : i + chunk])
        if stream.due():
            finals += stream.update().final
    finals += stream.finish().final
    return finals, stream.stats


def repeated_phrases(words, min_ngram: int = 3) -> list[str]:
    keys = [normalize(w.text) for w in words]
    return [" ".join(keys[i : i + n]) for i in range(len(keys)) for n in range(min_ngram, 9)
            if keys[i : i + n] == keys[i + n : i + 2 * n] and len(keys[i : i + n]) == n]


@pytest.mark.parametrize("config", [BOUNDARIES, StreamingConfig()], ids=["boundaries", "defaults"])
def test_no_word_is_final_twice_across_boundaries(recognizer, sample_dir, config):
    audio = load_audio(sample_dir / "sample.wav")
    audio = np.concatenate([audio, audio[6 * SAMPLE_RATE :]])  # 54 s: the conversation, then again
    finals, stats = stream_finals(recognizer, audio, config)
    assert len(finals) > 100
    if config is BOUNDARIES:  # every boundary kind was crossed
        assert stats.trims > 0 and stats.forced > 0 and stats.flushes > 1, stats
    twice = [(a, b) for i, b in enumerate(finals) for a in finals[max(0, i - 60) : i] if same_word(a, b)]
    assert twice == []
    assert repeated_phrases(finals) == []
    starts = [w.start for w in finals]
    assert all(b >= a - 0.1 for a, b in zip(starts, starts[1:])), "finals out of time order"


def test_a_decoder_that_stops_hearing_its_buffer_starts_again_after_its_final_words():
    """The first 21 s of conv-tune-3 (evaluation set, tune) decoded without a previous-text prompt.

    Measured on AMD EPYC: from a buffer starting at 5.2 s, every decode ended at "...some speech
    errors but" for 12 s while the speech went on (an early end-of-text), and the flush at the
    region's end committed that alone: "Mr. John Dashwood had then leisure to consider ... this is
    me talking really slow" (33 words) was lost. With the stall rule the buffer starts again after
    "but" once 2 s pass with nothing heard past it, and the passage is heard.
    """
    from tests.data.corpus import asr_set

    recording = next(r for r in asr_set("tune") if r.name == "conv-tune-3")
    config = AsrConfig(prompt_tokens=0)
    recognizer = WhisperRecognizer(load_whisper(config), config)
    finals, stats = stream_finals(recognizer, recording.audio()[: 21 * SAMPLE_RATE], StreamingConfig())
    heard = {normalize(w.text) for w in finals}
    passage = "mr john dashwood had then leisure to consider how much there might be prudently in his power".split()
    assert len([w for w in passage if w in heard]) >= 0.8 * len(passage), (stats, [w.text for w in finals])
    assert [(a, b) for i, b in enumerate(finals) for a in finals[:i] if same_word(a, b)] == []
