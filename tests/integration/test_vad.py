"""Silero VAD streaming on the real model and the real two-speaker recording.

No skips: a missing or tampered model makes these tests fail.
"""
import dataclasses
import itertools
import wave
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.vad import SileroVADModel

from appliance.config import SAMPLE_RATE, VadConfig
from appliance.inference.manifest import ModelError, load_manifest, verified_path
from appliance.vad import FRAME_SAMPLES, SileroVad, VadEvent, VadStream


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.load()


@pytest.fixture(scope="module")
def audio(sample_dir: Path) -> np.ndarray:
    with wave.open(str(sample_dir / "sample.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def reference_speech(sample_dir: Path) -> list[tuple[float, float]]:
    """Union of the RTTM speaker turns."""
    turns = []
    for line in (sample_dir / "sample.rttm").read_text().splitlines():
        fields = line.split()
        start, duration = float(fields[3]), float(fields[4])
        turns.append((start, start + duration))
    return merge(turns)


def merge(intervals):
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(a, b) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def feed(stream: VadStream, audio: np.ndarray, chunk_sizes) -> list[VadEvent]:
    """Push `audio` in chunks cycling through `chunk_sizes`, then flush."""
    events: list[VadEvent] = []
    offset = 0
    for size in itertools.cycle(chunk_sizes):
        if offset >= len(audio):
            break
        events += stream.push(audio[offset : offset + size])
        offset += size
    return events + stream.flush()


def regions(events: list[VadEvent]) -> list[tuple[float, float]]:
    kinds = [e.kind for e in events]
    assert kinds == ["start", "end"] * (len(events) // 2), f"events do not alternate: {kinds}"
    times = [e.time for e in events]
    assert times == sorted(times), f"event times go backwards: {times}"
    return list(zip(times[::2], times[1::2]))


@pytest.fixture(scope="module")
def irregular_events(vad: SileroVad, audio: np.ndarray) -> list[VadEvent]:
    return feed(vad.stream(), audio, [160, 1000, 4096])


def test_first_speech_starts_near_the_first_word(irregular_events):
    assert irregular_events[0].kind == "start"
    assert irregular_events[0].time == pytest.approx(6.7, abs=0.3)


def test_detected_speech_covers_the_reference(irregular_events, reference_speech):
    detected = regions(irregular_events)
    covered = overlap(detected, reference_speech) / sum(e - s for s, e in reference_speech)
    assert covered >= 0.90, f"detected {detected} covers {covered:.1%} of the reference speech"
    assert overlap(detected, [(0.0, 6.0)]) == 0.0, f"speech detected in the leading silence: {detected}"
    assert detected[-1][1] <= 30.0


def test_chunking_does_not_change_anything(vad, audio, irregular_events):
    runs = {}
    for sizes in ([160], [320], [1000], [4096], [7, 513, 2048, 1], [len(audio)]):
        stream = vad.stream(keep_probabilities=True)
        runs[tuple(sizes)] = (feed(stream, audio, sizes), stream.probabilities)
    first_events, first_probs = runs[(160,)]
    assert first_events == irregular_events
    for sizes, (events, probs) in runs.items():
        assert events == first_events, f"chunk sizes {sizes} change the events"
        np.testing.assert_array_equal(probs, first_probs, err_msg=f"chunk sizes {sizes}")


def test_probabilities_match_faster_whisper_offline(vad, audio):
    stream = vad.stream(keep_probabilities=True)
    feed(stream, audio, [320])
    assert len(stream.probabilities) == -(-len(audio) // FRAME_SAMPLES)
    # faster-whisper's own batched feeding of the same model file, as the reference.
    offline = SileroVADModel(str(verified_path("silero-vad") / "silero_vad_v6.onnx"))
    padded = np.pad(audio, (0, -len(audio) % FRAME_SAMPLES))
    np.testing.assert_allclose(stream.probabilities, offline(padded).reshape(-1), atol=1e-5)


def test_streams_on_one_model_do_not_share_state(vad, audio, irregular_events):
    a, b = vad.stream(), vad.stream()
    events_a, events_b = [], []
    for offset in range(0, len(audio), 1000):
        events_a += a.push(audio[offset : offset + 1000])
        events_b += b.push(np.zeros(1000, dtype=np.float32))
    assert events_a + a.flush() == irregular_events
    assert events_b + b.flush() == []


@pytest.mark.parametrize("level", [0.0, 0.003, 0.01, 0.03])
def test_silence_and_low_white_noise_give_no_events(vad, level):
    noise = (np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE) * level).astype(np.float32)
    stream = vad.stream()
    assert feed(stream, noise, [320]) == []
    assert not stream.in_speech


def test_in_speech_and_sample_clock(vad, audio):
    stream = vad.stream(VadConfig())
    stream.push(audio[: 8 * SAMPLE_RATE])
    assert stream.in_speech and stream.samples == 8 * SAMPLE_RATE
    stream.push(audio[8 * SAMPLE_RATE :])
    assert stream.flush()[-1] == VadEvent("end", pytest.approx(len(audio) / SAMPLE_RATE))
    assert not stream.in_speech
    with pytest.raises(RuntimeError, match="after flush"):
        stream.push(audio[:10])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(512, dtype=np.int16),
        np.zeros(512, dtype=np.float64),
        np.zeros((2, 512), dtype=np.float32),
        [0.0] * 512,
    ],
    ids=["int16", "float64", "2-D", "list"],
)
def test_bad_input_is_refused_clearly(vad, bad):
    with pytest.raises(ValueError, match="1-D float32 array of 16 kHz mono samples"):
        vad.stream().push(bad)


def test_probabilities_need_opting_in(vad):
    with pytest.raises(RuntimeError, match="keep_probabilities"):
        vad.stream().probabilities


def test_a_model_that_does_not_match_the_manifest_is_refused():
    manifest = load_manifest()
    spec = manifest["silero-vad"]
    tampered = dataclasses.replace(spec, files={name: "0" * 64 for name in spec.files})
    with pytest.raises(ModelError, match="does not match the manifest"):
        SileroVad.load(manifest={**manifest, "silero-vad": tampered})
