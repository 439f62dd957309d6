"""Raw PCM from the network (pushed audio): checked, then decoded to float32 frames."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENCODINGS = {"PCM_S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8


class PcmError(ValueError):
    """Pushed audio is malformed; the message says how, for the client's developer."""


def check_format(sample_rate: int, encoding: str, channels: int) -> None:
    if encoding not in ENCODINGS:
        raise PcmError(f"unsupported encoding {encoding!r}: use PCM_S16LE or F32LE")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise PcmError(f"unsupported sample_rate {sample_rate}: must be {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise PcmError(f"unsupported channels {channels}: must be 1..{MAX_CHANNELS}")


@dataclass(frozen=True)
class PcmFormat:
    """What a pushed stream declares on its first chunk; checked when made."""

    sample_rate: int
    encoding: str  # a key of ENCODINGS
    channels: int

    def __post_init__(self) -> None:
        check_format(self.sample_rate, self.encoding, self.channels)

    def decode(self, data: bytes) -> np.ndarray:
        return decode_pcm(data, self.encoding, self.channels)


def decode_pcm(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """Interleaved bytes → float32 array [frames, channels] in [-1, 1]."""
    dtype = ENCODINGS[encoding]
    frame_bytes = dtype.itemsize * channels
    if len(data) % frame_bytes:
        raise PcmError(
            f"chunk of {len(data)} bytes is not a whole number of {channels}-channel {encoding} frames "
            f"({frame_bytes} bytes each)"
        )
    samples = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "i":
        samples = samples.astype(np.float32) / 32768.0
    elif not np.isfinite(samples).all():
        raise PcmError("chunk contains NaN or infinite samples")
    else:
        samples = samples.astype(np.float32)
    return samples.reshape(-1, channels)


def encode_s16le(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] → PCM_S16LE bytes (what a client pushes), clipped."""
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
