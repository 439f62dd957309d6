"""streaming.vad_flush: a VAD speech end finalises pending words at once, or (off) agreement alone does.

The AsrStream under test is real; the recognizer and the VAD are scripted, because what
is tested is only when the stream decodes and what it finalises.
"""
import numpy as np

from appliance.asr.overload import Degradation, RoomLoad
from appliance.asr.stream import AsrStream
from appliance.config import SAMPLE_RATE, StreamingConfig
from appliance.subtitles.types import Word
from appliance.vad.policy import VadEvent

WORDS = [Word("hello", 0.2, 0.6), Word("world.", 1.2, 1.9)]
CHUNK = SAMPLE_RATE // 2  # 0.5 s per push


class ScriptedRecognizer:
    """Every word that ends inside the buffer (the buffer starts at audio time 0 here)."""

    multilingual = False

    def __init__(self):
        self.calls: list[tuple[float, int | None]] = []  # (buffer seconds, beam) of each decode

    def transcribe(self, samples, prompt=None, *, beam_size=None, language=None, task=None):
        self.calls.append((len(samples) / SAMPLE_RATE, beam_size))
        return [w for w in WORDS if w.end <= len(samples) / SAMPLE_RATE]


class ScriptedVad:
    """Speech starts at 0 s; its end (at 2.0 s) is announced once 2.0 s have been pushed."""

    pausing = False  # no pause inside the region

    def __init__(self):
        self.samples = 0
        self.script = [(0, VadEvent("start", 0.0)), (2 * SAMPLE_RATE, VadEvent("end", 2.0))]

    def push(self, samples):
        self.samples += len(samples)
        events = [event for due, event in self.script if due <= self.samples]
        self.script = [(due, event) for due, event in self.script if due > self.samples]
        return events

    def flush(self):
        return []


def run(config: StreamingConfig, seconds: float = 5.0) -> list[tuple[float, list[str], bool]]:
    """(audio time, newly final words, closed) of every decode, pushing 0.5 s at a time."""
    stream = AsrStream(ScriptedRecognizer(), ScriptedVad(), config)
    decodes = []
    for i in range(int(seconds * 2)):
        stream.push(np.zeros(CHUNK, dtype=np.float32))
        if stream.due():
            decision = stream.update()
            decodes.append(((i + 1) / 2, [w.text for w in decision.final], decision.closed))
    return decodes


def finalised_at(decodes, text: str) -> float:
    return next(at for at, final, _ in decodes if text in final)


def test_default_flushes_the_pending_words_at_the_speech_end():
    assert StreamingConfig().vad_flush is True
    decodes = run(StreamingConfig())
    assert finalised_at(decodes, "hello") == 1.5  # two hypotheses agreed
    assert decodes[-1] == (2.0, ["world."], True)  # the speech end closes it; no decode in the silence


def test_without_flush_words_settle_by_agreement_through_the_silence():
    decodes = run(StreamingConfig(vad_flush=False))
    assert not any(closed for _, _, closed in decodes)
    assert finalised_at(decodes, "hello") == 1.5
    assert finalised_at(decodes, "world.") == 2.5  # first seen at 2.0, agreed on by the next decode
    assert decodes[-1][0] == 2.5  # nothing pending any more: decoding stops
    assert [w for _, final, _ in decodes for w in final] == ["hello", "world."]


class LongScript:
    """A word every 0.7 s for 7 s of speech; the VAD announces its end only at 8 s."""

    multilingual = False
    words = [Word(f"w{i}", 0.7 * i + 0.1, 0.7 * i + 0.6, 0.95) for i in range(10)]

    def transcribe(self, samples, prompt=None, *, beam_size=None, language=None, task=None):
        return [w for w in self.words if w.end <= len(samples) / SAMPLE_RATE]


def test_the_most_degraded_room_decodes_every_third_step_keeps_its_finals_coming_and_publishes_no_partials():
    vad = ScriptedVad()
    vad.script = [(0, VadEvent("start", 0.0)), (8 * SAMPLE_RATE, VadEvent("end", 8.0))]
    config = StreamingConfig(trim_after=15.0)  # the script's times count from the buffer's start: no cuts
    stream = AsrStream(LongScript(), vad, config, load=RoomLoad(level=Degradation.NO_PARTIALS))
    decodes = []
    for i in range(16):
        stream.push(np.zeros(CHUNK, dtype=np.float32))
        if stream.due():
            decodes.append(((i + 1) / 2, stream.update()))
    assert [at for at, _ in decodes] == [1.5, 3.0, 4.5, 6.0, 7.5, 8.0]  # 3 x the 0.5 s step, then the speech end
    assert all(not decision.partial for _, decision in decodes)
    finals = {w.text: at for at, decision in decodes for w in decision.final}
    assert list(finals) == [w.text for w in LongScript.words]
    assert max(at for text, at in finals.items() if text != "w9") <= 7.5  # final during the speech, not at its end


class PausingVad(ScriptedVad):
    """Speech from 0 s to 2.0 s, then a pause heard as one from 2.0 s that ends the region at 3.0 s."""

    def __init__(self):
        super().__init__()
        self.script = [(0, VadEvent("start", 0.0)), (3 * SAMPLE_RATE, VadEvent("end", 2.0))]

    @property
    def pausing(self):
        return 2.0 < self.samples / SAMPLE_RATE < 3.0


def decodes_with_a_pause(config: StreamingConfig, vad: ScriptedVad | None = None,
                         ) -> tuple[list[tuple[float, list[str]]], ScriptedRecognizer, AsrStream]:
    recognizer = ScriptedRecognizer()
    stream = AsrStream(recognizer, vad or PausingVad(), config)
    decodes = []
    for i in range(8):
        stream.push(np.zeros(CHUNK, dtype=np.float32))
        if stream.due():
            decodes.append(((i + 1) / 2, [w.text for w in stream.update().final]))
    return decodes, recognizer, stream


def test_the_full_beam_decode_in_the_last_pause_is_the_regions_flush():
    assert StreamingConfig().pause_flush is True
    reused, reusing, stream = decodes_with_a_pause(StreamingConfig())
    fresh, flushing, _ = decodes_with_a_pause(StreamingConfig(pause_flush=False))
    # The same decisions at the same times ...
    assert reused == fresh == [(1.0, []), (1.5, ["hello"]), (2.0, []), (2.5, ["world."]), (3.0, [])]
    # ... from one decode fewer: the one at 2.5 s (in the pause) ran at the full beam and finalised
    # the region at 3.0 s, where the other stream decoded the region again.
    assert flushing.calls == [(1.0, 1), (1.5, 1), (2.0, 1), (2.5, 1), (2.0, None)]
    assert reusing.calls == [(1.0, 1), (1.5, 1), (2.0, 1), (2.5, None)]
    assert stream.stats.flushes == 1 and stream.stats.reused_flushes == 1


def test_a_pause_decode_that_did_not_hear_the_whole_region_is_not_reused():
    class LateEnd(PausingVad):  # the region's end lies past the pause decode's buffer
        def __init__(self):
            super().__init__()
            self.script = [(0, VadEvent("start", 0.0)), (3 * SAMPLE_RATE, VadEvent("end", 2.9))]

    _, recognizer, stream = decodes_with_a_pause(StreamingConfig(), LateEnd())
    assert recognizer.calls[-2:] == [(2.5, None), (2.9, None)]  # decoded again, up to the region's end
    assert stream.stats.reused_flushes == 0
