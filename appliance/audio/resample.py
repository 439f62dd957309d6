"""Downmix and resample a sound card's blocks to the pipeline's 16 kHz mono float32.

Pure: blocks in, samples out. The resampler is soxr's streaming one, so its filter
state carries across blocks and a stream of blocks resamples as one signal.
"""
from __future__ import annotations

import numpy as np
import soxr

from appliance.config import SAMPLE_RATE


class Normalizer:
    """One per opened stream: `native_rate` Hz × `channels` float32 blocks → 16 kHz mono.

    Downmix first (the mean of all channels, or the one selected), then resample:
    resampling one channel costs a fraction of resampling all of them.
    """

    def __init__(self, native_rate: float, channels: int, channel: int | None = None):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if channel is not None and not 0 <= channel < channels:
            raise ValueError(f"channel {channel} is not among {channels} channels (0-based)")
        if native_rate <= 0:
            raise ValueError(f"native_rate must be > 0, got {native_rate}")
        self.native_rate = native_rate
        self.channels = channels
        self.channel = channel
        # None when the device already runs at 16 kHz: nothing to resample.
        self._resampler = (
            None if native_rate == SAMPLE_RATE else soxr.ResampleStream(native_rate, SAMPLE_RATE, 1, dtype="float32")
        )

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """A [frames, channels] float32 block → the 16 kHz mono samples it completes (may be empty)."""
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected a [frames, {self.channels}] block, got shape {block.shape}")
        if self.channel is not None:
            mono = block[:, self.channel]
        else:
            mono = block.mean(axis=1, dtype=np.float32)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._resampler is None:
            return mono
        return self._resampler.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler's filter; call once when the stream ends."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
