"""Audio sources: async iterators of frame batches.

Each iteration yields every frame available now (at least one), so a consumer
that was busy catches up in one step instead of one step per frame.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import numpy as np

from appliance.audio.frames import AudioFrame
from appliance.audio.pcm import PcmFormat
from appliance.audio.resample import Normalizer
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
        self.position = 0  # samples yielded so far
        self._stopped = False

    @property
    def queued_seconds(self) -> float:
        """Real time: audio already due that the consumer has not taken (it fell behind)."""
        if not self.realtime or self.started_at is None:
            return 0.0
        due = min((self.clock() - self.started_at) * SAMPLE_RATE, len(self.samples))
        return max(0.0, due - self.position) / SAMPLE_RATE

    async def aclose(self) -> None:
        """End the replay early (shutdown); the iterator finishes at its next frame."""
        self._stopped = True

    async def __aiter__(self) -> AsyncIterator[list[AudioFrame]]:
        total, frame = len(self.samples), self.frame
        t0 = self.started_at = self.clock()
        self.position = 0
        while self.position < total and not self._stopped:
            position = self.position
            if not self.realtime:
                self.position = min(position + frame, total)
                yield [AudioFrame(self.samples[position : self.position], position, self.clock())]
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
            self.position = batch[-1].end
            yield batch


class PushSource:
    """Audio a client pushes over the network (Subtitles.Transcribe), in the format it declared.

    The source owns the decoding: `push_pcm` turns the client's bytes into 16 kHz mono
    frames, and `close` flushes the resampler, so the last milliseconds of a stream that is
    not 16 kHz are heard too. `push_pcm` waits while `max_queued` seconds wait for the pipeline,
    which holds back the client's stream through gRPC flow control instead of buffering without
    bound: a client pushing a file as fast as it can goes at the pace of the decodes, and the
    pipeline never takes in more at once than its buffers hold. Chunks are queued as frames of
    at most `frame_seconds` (a fast replay's 20 ms), so a batch can be finalised region by region
    and decoded at the same audio positions whatever size of chunk the client sends.
    """

    def __init__(self, audio_format: PcmFormat, max_queued: float = 2.0, frame_seconds: float = 0.02,
                 clock: Callable[[], float] = time.monotonic):
        self.format = audio_format
        self.clock = clock
        self._normalize = Normalizer(audio_format.sample_rate, audio_format.channels)
        self._frames: deque[AudioFrame] = deque()
        self._max = int(max_queued * SAMPLE_RATE)
        self._frame = int(frame_seconds * SAMPLE_RATE)
        self._queued = 0  # samples in `_frames`
        self._changed = asyncio.Condition()
        self._position = 0
        self._closed = False

    @property
    def queued_seconds(self) -> float:
        """Audio pushed and waiting for the pipeline."""
        return self._queued / SAMPLE_RATE

    async def push_pcm(self, data: bytes) -> None:
        """Decode one chunk of the declared format and queue it; PcmError if it is malformed."""
        await self._push(self._normalize(self.format.decode(data)))

    async def _push(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._queued < self._max or self._closed)
            self._append(samples)

    def _append(self, samples: np.ndarray) -> None:
        now = self.clock()
        for start in range(0, len(samples), self._frame):
            frame = AudioFrame(samples[start:start + self._frame], self._position, now)
            self._position = frame.end
            self._frames.append(frame)
            self._queued += len(frame.samples)
        self._changed.notify_all()

    async def close(self) -> None:
        """No more audio: the resampler's tail is queued, the pipeline finalises, the session ends.

        The tail (a few ms) goes in without waiting for room, so closing never blocks a shutdown."""
        async with self._changed:
            if self._closed:
                return
            tail = self._normalize.flush()
            if len(tail):
                self._append(tail)
            self._closed = True
            self._changed.notify_all()

    aclose = close

    async def __aiter__(self) -> AsyncIterator[list[AudioFrame]]:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self._frames or self._closed)
                batch = list(self._frames)
                self._frames.clear()
                self._queued = 0
                self._changed.notify_all()
            if batch:
                yield batch
            elif self._closed:
                return
