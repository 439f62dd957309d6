import numpy as np
import pytest

from appliance.audio.resample import Normalizer
from appliance.config import SAMPLE_RATE


def sine(freq: float, rate: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t + phase).astype(np.float32)


def blocks(signal: np.ndarray, size: int):
    return [signal[i : i + size] for i in range(0, len(signal), size)]


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_stereo_blocks_become_16k_mono_with_the_same_frequency_and_length(rate):
    left, right = sine(440, rate, 2.0), sine(440, rate, 2.0, phase=0.3)
    stereo = np.stack([left, right], axis=1)
    normalizer = Normalizer(rate, channels=2)
    out = [normalizer(block) for block in blocks(stereo, int(rate * 0.02))] + [normalizer.flush()]
    mono = np.concatenate(out)

    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in out)
    assert abs(len(mono) - 2.0 * SAMPLE_RATE) <= 2  # every input sample accounted for at 16/rate
    assert dominant_frequency(mono, SAMPLE_RATE) == pytest.approx(440, abs=1)
    # The mean of two slightly shifted sines: amplitude cos(0.15), not a sum that clips.
    steady = mono[1000:-1000]
    assert np.max(np.abs(steady)) == pytest.approx(np.cos(0.15), abs=0.01)


def test_blocks_resample_as_one_continuous_signal():
    rate = 48_000
    signal = sine(1000, rate, 1.0)[:, None]
    whole = Normalizer(rate, channels=1)
    reference = np.concatenate([whole(signal), whole.flush()])
    streamed = Normalizer(rate, channels=1)
    odd_sizes = [7, 441, 960, 1, 2048, 333]  # block boundaries anywhere must not show in the output
    pieces, at, i = [], 0, 0
    while at < len(signal):
        size = odd_sizes[i % len(odd_sizes)]
        pieces.append(streamed(signal[at : at + size]))
        at, i = at + size, i + 1
    pieces.append(streamed.flush())
    out = np.concatenate(pieces)
    assert len(out) == len(reference)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    # and no clicks: sample-to-sample steps stay those of a 1 kHz sine at 16 kHz
    assert np.max(np.abs(np.diff(out[200:-200]))) < 2 * np.sin(np.pi * 1000 / SAMPLE_RATE) + 0.01


def test_selected_channel_ignores_the_others():
    rate = 44_100
    block = np.stack([sine(300, rate, 1.0), sine(2000, rate, 1.0), np.zeros(rate, np.float32)], axis=1)
    normalizer = Normalizer(rate, channels=3, channel=1)
    mono = np.concatenate([normalizer(b) for b in blocks(block, 882)] + [normalizer.flush()])
    assert dominant_frequency(mono, SAMPLE_RATE) == pytest.approx(2000, abs=2)


def test_16k_input_is_only_downmixed():
    block = np.array([[0.5, -0.5], [1.0, 0.0]], dtype=np.float32)
    normalizer = Normalizer(SAMPLE_RATE, channels=2)
    np.testing.assert_array_equal(normalizer(block), np.array([0.0, 0.5], dtype=np.float32))
    assert len(normalizer.flush()) == 0


def test_mismatched_blocks_and_channels_are_refused():
    with pytest.raises(ValueError, match="channel 2"):
        Normalizer(48_000, channels=2, channel=2)
    with pytest.raises(ValueError, match=r"\[frames, 2\]"):
        Normalizer(48_000, channels=2)(np.zeros((10, 1), np.float32))
