"""Audio sources: async iterators of frame batches.

Each iteration yields every frame available now (at least one), so a consumer
that was busy catches up in one step instead of one step per frame.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from appliance.audio.frames import AudioFrame
from appliance.config import SAMPLE_RATE


class FileReplaySource:
    """Replays decoded audio, at real-time pace (latency runs) or as fast as consumed (accuracy runs).

    In real time, frame i is due at t0 + (its last sample) / 16 kHz and is stamped with
    that due time, as a microphone would have delivered it, even if the consumer is late.
    """

    def __init__(
        self,
        samples: np.ndarray,
        realtime: bool,
        frame_seconds: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.samples = samples
        self.realtime = realtime
        self.frame = int(frame_seconds * SAMPLE_RATE)
        self.clock = clock
        self.started_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[list[AudioFrame]]:
        total, frame = len(self.samples), self.frame
        t0 = self.started_at = self.clock()
        position = 0
        while position < total:
            if not self.realtime:
                end = min(position + frame, total)
                yield [AudioFrame(self.samples[position:end], position, self.clock())]
                position = end
                continue
            now = self.clock()
            due = int((now - t0) * SAMPLE_RATE) // frame * frame  # whole frames arrived by now
            if due <= position:
                await asyncio.sleep(t0 + (position + frame) / SAMPLE_RATE - now)
                continue
            batch = []
            for start in range(position, min(due, total), frame):
                end = min(start + frame, total)
                batch.append(AudioFrame(self.samples[start:end], start, t0 + end / SAMPLE_RATE))
            position = batch[-1].end
            yield batch
