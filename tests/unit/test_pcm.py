"""Pushed PCM: what a client encodes, the daemon decodes back (within one s16 step), clipped."""
import numpy as np
import pytest

from appliance.audio.pcm import PcmError, decode_pcm, encode_s16le


def test_s16le_round_trip_and_clipping():
    samples = np.array([0.0, 0.5, -0.5, 0.999, 1.7, -3.0], np.float32)
    decoded = decode_pcm(encode_s16le(samples), "PCM_S16LE", 1)[:, 0]
    assert decoded.shape == (6,)
    assert np.allclose(decoded, np.clip(samples, -1, 1), atol=1 / 32767)


def test_a_partial_frame_is_refused_naming_the_frame_size():
    with pytest.raises(PcmError, match="4 bytes each"):
        decode_pcm(encode_s16le(np.zeros(3, np.float32)), "PCM_S16LE", 2)
