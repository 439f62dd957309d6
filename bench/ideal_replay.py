"""The replay on an ideal machine: what latency the streaming design costs when compute is free.

Word latency has two parts: audio-time waits fixed by the streaming config (a word waits for
the next 0.5 s step, then for a second agreeing decode, or for the VAD to call the speech
over) and compute time (decodes, queueing behind a slow decode). This replay drives the
real session over the sample with a virtual clock that stands still during a decode and
moves only with the audio: each frame is captured at its audio time, each decision is
emitted at the audio time it was made. What remains is the fixed part alone, the latency
floor. Every decode sees exactly the same audio whatever the machine, so its text (and
WER) is deterministic too.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from appliance.asr.recognizer import Recognizer
from appliance.asr.stream import AsrStream
from appliance.audio.frames import AudioFrame
from appliance.audio.sources import FileReplaySource
from appliance.config import SAMPLE_RATE, StreamingConfig
from appliance.replay import ReplayResult, collect
from appliance.session import Pipeline
from appliance.vad.silero import SileroVad


class _AudioClock:
    """Audio time of the newest frame handed to the pipeline: the ideal machine's wall clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _frames(samples: np.ndarray, clock: _AudioClock) -> AsyncIterator[list[AudioFrame]]:
    async for batch in FileReplaySource(samples, realtime=False):
        clock.now = batch[-1].end / SAMPLE_RATE
        yield [replace(frame, captured_at=frame.end / SAMPLE_RATE) for frame in batch]


async def _replay(samples: np.ndarray, recognizer: Recognizer, vad: SileroVad,
                  streaming: StreamingConfig | None) -> ReplayResult:
    clock = _AudioClock()
    stream = AsrStream(recognizer, vad.stream(), streaming)
    result = ReplayResult(audio_seconds=len(samples) / SAMPLE_RATE, stats=stream.stats)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ideal-asr") as executor:
        await collect(Pipeline(_frames(samples, clock), stream, executor, clock), result)
    return result


def ideal_replay(samples: np.ndarray, recognizer: Recognizer, vad: SileroVad,
                 streaming: StreamingConfig | None = None) -> ReplayResult:
    """The latency floor and the deterministic text (the CPU and wall fields stay 0)."""
    return asyncio.run(_replay(samples, recognizer, vad, streaming))
