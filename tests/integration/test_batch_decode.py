"""The decode scheduler on the real model and real speech: batched results equal unbatched ones.

Buffers are cut from the sample conversation at the offsets and lengths rooms decode (2 to 12 s,
with and without previous-text prompts). Equality is up to int8 noise: a batch changes the
shapes of the int8 matrix products, so a word's time may move by a frame or two and, rarely,
a near tie may flip; the bounds below allow that and nothing more.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from appliance.asr.batch import BatchDecoder, DecodeScheduler, Request
from appliance.asr.recognizer import WhisperRecognizer
from appliance.audio.decode import load_audio
from appliance.config import SAMPLE_RATE, AsrConfig
from appliance.evaluation import read_reference, word_error_rate
from appliance.inference.whisper import load_whisper
from appliance.subtitles.types import Word

TIME_TOLERANCE = 0.1  # seconds between the same word's times batched and alone
MAX_WER = 0.05  # between batched and unbatched words, over all buffers


@pytest.fixture(scope="module")
def model():
    return load_whisper(AsrConfig())


@pytest.fixture(scope="module")
def audio(sample_dir):
    return load_audio(sample_dir / "sample.wav")


@pytest.fixture(scope="module")
def prompts(sample_dir) -> list[str]:
    """Real earlier text: the reference's first words, as a room's committed text would be."""
    words = read_reference(sample_dir / "sample.stm").split()
    return [" ".join(words[:4]), " ".join(words[:9])]


def requests(audio: np.ndarray, prompts: list[str]) -> list[Request]:
    cuts = [(6.5, 2.0), (7.5, 4.0), (9.0, 5.5), (11.0, 7.0), (13.0, 9.5), (16.0, 3.0), (18.0, 6.0), (20.0, 8.0)]
    out = [Request(audio[int(s * SAMPLE_RATE): int((s + d) * SAMPLE_RATE)]) for s, d in cuts]
    out += [Request(audio[int(s * SAMPLE_RATE): int((s + d) * SAMPLE_RATE)], p)
            for (s, d), p in zip([(14.0, 6.0), (19.0, 7.0), (21.0, 5.0)], prompts * 3)]
    return out


def assert_same(alone: list[list[Word]], batched: list[list[Word]]) -> None:
    text = lambda words: " ".join(w.text for w in words)  # noqa: E731
    assert sum(map(len, alone)) >= 4 * len(alone), "the buffers should hold real speech"
    wer = word_error_rate(" ".join(map(text, alone)), " ".join(map(text, batched)))
    assert wer <= MAX_WER, (wer, [text(a) for a in alone], [text(b) for b in batched])
    for a, b in zip(alone, batched):
        if [w.text for w in a] == [w.text for w in b]:
            drift = max((abs(x.start - y.start) + abs(x.end - y.end) for x, y in zip(a, b)), default=0.0)
            assert drift <= 2 * TIME_TOLERANCE, (text(a), [(w.start, w.end) for w in a], [(w.start, w.end) for w in b])


def test_one_batched_call_gives_each_buffer_what_it_gets_alone(model, audio, prompts):
    decoder = BatchDecoder(WhisperRecognizer(model, AsrConfig()))
    batch = requests(audio, prompts)
    alone = [decoder.decode([r])[0] for r in batch]
    assert_same(alone, decoder.decode(batch))


def test_batched_equals_the_unbatched_recognizer_where_their_inputs_agree(model, audio, prompts):
    """Buffers up to the 10 s window floor (where the grid window is WhisperRecognizer's window)."""
    config = AsrConfig()
    recognizer = WhisperRecognizer(model, config)
    decoder = BatchDecoder(recognizer)
    batch = [r for r in requests(audio, prompts) if len(r.samples) <= config.min_window * SAMPLE_RATE]
    assert any(r.prompt for r in batch)
    alone = [recognizer.transcribe(r.samples, r.prompt) for r in batch]
    assert_same(alone, decoder.decode(batch))


def test_rooms_calling_at_once_share_batches_and_get_their_own_words(model, audio, prompts):
    config = AsrConfig()
    scheduler = DecodeScheduler(BatchDecoder(WhisperRecognizer(model, config)), max_batch=8, gather=1.0)
    batch = requests(audio, prompts)[:6]
    alone = [scheduler.decoder.decode([r])[0] for r in batch]
    rooms = [scheduler.room(f"room-{i}") for i in range(len(batch))]  # open now: expected due at once
    with ThreadPoolExecutor(len(rooms)) as pool:
        futures = [pool.submit(room.transcribe, r.samples, r.prompt) for room, r in zip(rooms, batch)]
        together = [f.result(timeout=120) for f in futures]
    assert_same(alone, together)
    assert scheduler.mean_batch > 1, "the rooms due together were decoded one by one"
    assert all(room.load.decodes == 1 and room.load.batched_decodes == 1 for room in rooms), [room.load for room in rooms]


def test_long_previous_texts_become_prompts_of_one_length_that_batch(model, audio, sample_dir):
    """Rooms with different histories get prompts of exactly asr.prompt_tokens tokens (the end of
    their text), so their decodes can share a call; a short history is kept whole."""
    config = AsrConfig()
    recognizer = WhisperRecognizer(model, config)
    words = read_reference(sample_dir / "sample.stm").split()
    histories = [" ".join(words[:70]), " ".join(words[8:]), " ".join(words[:5])]
    tokens = [recognizer.previous_tokens(h) for h in histories]
    whole = [model.hf_tokenizer.encode(" " + h, add_special_tokens=False).ids for h in histories]
    assert [len(t) for t in tokens] == [config.prompt_tokens, config.prompt_tokens, len(whole[2])]
    assert all(t == w[-len(t):] for t, w in zip(tokens, whole))
    decoder = BatchDecoder(recognizer)
    batch = [Request(audio[int(s * SAMPLE_RATE): int((s + 6.0) * SAMPLE_RATE)], h)
             for s, h in zip((14.0, 19.0), histories)]
    alone = [recognizer.transcribe(r.samples, r.prompt) for r in batch]
    assert_same(alone, decoder.decode(batch))


def test_a_bad_buffer_fails_alone_and_its_batch_mates_get_their_words(model, audio, prompts):
    decoder = BatchDecoder(WhisperRecognizer(model, AsrConfig()))
    good = requests(audio, prompts)[2]
    bad = [Request(np.zeros(31 * SAMPLE_RATE, np.float32)), Request(np.full(SAMPLE_RATE, np.nan, np.float32)),
           Request(good.samples.astype(np.float64))]
    out = decoder.decode([bad[0], good, bad[1], bad[2]])
    assert [type(o) for o in (out[0], out[2], out[3])] == [ValueError] * 3
    assert "at most 30 s" in str(out[0]) and "NaN" in str(out[2]) and "float32" in str(out[3])
    assert out[1] == decoder.decode([good])[0] and out[1]


def test_a_per_call_beam_size_is_honoured(model, audio, prompts):
    """beam_size=1 (greedy, with the loop guard) batched matches the unbatched recognizer's greedy call."""
    recognizer = WhisperRecognizer(model, AsrConfig())
    decoder = BatchDecoder(recognizer)
    batch = [r for r in requests(audio, prompts) if len(r.samples) <= 10 * SAMPLE_RATE]
    alone = [recognizer.transcribe(r.samples, r.prompt, beam_size=1) for r in batch]
    greedy_batch = [Request(r.samples, r.prompt, beam_size=1) for r in batch]
    assert_same(alone, decoder.decode(greedy_batch))


def test_silence_next_to_speech_gives_what_it_gives_alone(model, audio, prompts):
    """Silence shares a call with speech and neither changes: the silence rule is applied per item."""
    recognizer = WhisperRecognizer(model, AsrConfig())
    decoder = BatchDecoder(recognizer)
    speech = requests(audio, prompts)[3]
    silence = Request(np.zeros(3 * SAMPLE_RATE, np.float32))
    out = decoder.decode([silence, speech, silence])
    alone = recognizer.transcribe(silence.samples)
    assert out[0] == out[2] == alone
    assert_same([recognizer.transcribe(speech.samples)], [out[1]])


@pytest.fixture(scope="module")
def multilingual():
    return load_whisper(AsrConfig(model="whisper-base"))


@pytest.mark.parametrize("language", [None, "en"])
def test_a_multilingual_model_batches_with_a_language_and_detects_one_by_one_without(
        multilingual, audio, prompts, language):
    config = AsrConfig(model="whisper-base", language=language)
    recognizer = WhisperRecognizer(multilingual, config)
    decoder = BatchDecoder(recognizer)
    batch = requests(audio, prompts)[1:4]
    alone = [recognizer.transcribe(r.samples, r.prompt) for r in batch]
    assert_same(alone, decoder.decode(batch))
