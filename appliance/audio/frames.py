"""AudioFrame, the ring buffer of recent audio, and the audio-time → capture-time clock.

Capture normalises audio once into AudioFrames (16 kHz mono float32, stamped with the
index of their first sample and the monotonic time their last sample arrived). Every
later stage addresses audio by sample index, never by wall clock.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from appliance.config import SAMPLE_RATE


SILENCE_DBFS = -120.0  # the level reported for digital silence, instead of -inf


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


@dataclass(frozen=True)
class AudioFrame:
    samples: np.ndarray  # float32, mono, 16 kHz
    start: int  # index of the first sample since the session started
    captured_at: float  # time.monotonic() when the last sample arrived

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class RingBuffer:
    """The most recent `capacity` samples, addressed by absolute sample index.

    Preallocated and written in place: appending a frame never reallocates.
    """

    def __init__(self, capacity: int):
        self._data = np.zeros(capacity, dtype=np.float32)
        self.capacity = capacity
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Oldest absolute sample index still held."""
        return max(0, self.end - self.capacity)

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n >= self.capacity:
            samples, self.end = samples[-self.capacity :], self.end + n - self.capacity
            n = self.capacity
        at = self.end % self.capacity
        first = min(n, self.capacity - at)
        self._data[at : at + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self.end += n

    def read(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end); raises if that range is no longer (or not yet) held."""
        if start < self.start or end > self.end or start > end:
            raise IndexError(f"samples [{start}, {end}) outside buffer [{self.start}, {self.end})")
        a, b = start % self.capacity, end % self.capacity
        if end - start == 0:
            return np.zeros(0, dtype=np.float32)
        if a < b:
            return self._data[a:b].copy()
        return np.concatenate([self._data[a:], self._data[:b]])


class CaptureClock:
    """Maps audio time to the monotonic time the sample was captured (for latency).

    A sample's capture time is interpolated within its frame, whose last sample arrived
    at `captured_at`. Keeps only the last `horizon` frames.
    """

    def __init__(self, horizon: int = 4096):
        self._ends: deque[int] = deque(maxlen=horizon)
        self._times: deque[float] = deque(maxlen=horizon)

    def add(self, frame: AudioFrame) -> None:
        self._ends.append(frame.end)
        self._times.append(frame.captured_at)

    def capture_time(self, seconds: float) -> float | None:
        """When the sample at `seconds` of audio arrived, or None if it is not known."""
        sample = int(round(seconds * SAMPLE_RATE))
        ends = self._ends
        i = bisect.bisect_right(ends, sample)  # the frame whose samples [start, end) hold it
        if not ends or i == len(ends):
            return None
        return self._times[i] - max(0, ends[i] - sample) / SAMPLE_RATE
