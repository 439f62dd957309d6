"""Audio sources report the audio they hold that the pipeline has not taken yet (the backlog gauge's source stage)."""
import asyncio

import numpy as np

from appliance.audio.pcm import PcmFormat, encode_s16le
from appliance.audio.sources import FileReplaySource, PushSource
from appliance.config import SAMPLE_RATE

MONO_16K = PcmFormat(SAMPLE_RATE, "F32LE", 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_push_source_counts_pushed_audio_until_the_pipeline_takes_it():
    async def scenario():
        source = PushSource(MONO_16K)
        await source.push_pcm(np.zeros(SAMPLE_RATE // 10, "<f4").tobytes())
        await source.push_pcm(np.zeros(SAMPLE_RATE // 4, "<f4").tobytes())
        queued = source.queued_seconds
        frames = source.__aiter__()
        batch = await anext(frames)
        return queued, [len(frame.samples) for frame in batch], source.queued_seconds

    queued, taken, after = asyncio.run(scenario())
    # A chunk longer than a frame (20 ms) is queued as frames, so a batch can be decoded step by step.
    assert queued == 0.35 and taken == [320] * 17 + [160] and after == 0.0


def test_push_source_holds_the_client_back_once_two_seconds_wait():
    async def scenario():
        source = PushSource(MONO_16K)
        await source.push_pcm(np.zeros(2 * SAMPLE_RATE, "<f4").tobytes())
        blocked = asyncio.ensure_future(source.push_pcm(np.zeros(SAMPLE_RATE // 10, "<f4").tobytes()))
        await asyncio.sleep(0.05)
        waited = not blocked.done()
        await anext(source.__aiter__())  # the pipeline takes the queue: the push goes through
        await asyncio.wait_for(blocked, 1.0)
        return waited, source.queued_seconds

    assert asyncio.run(scenario()) == (True, 0.1)


def test_real_time_replay_counts_audio_that_fell_due_while_the_consumer_was_busy():
    async def scenario():
        clock = FakeClock()
        source = FileReplaySource(np.zeros(10 * SAMPLE_RATE, np.float32), realtime=True, clock=clock)
        assert source.queued_seconds == 0.0  # not started
        frames = source.__aiter__()
        pending = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0)  # the replay starts at clock 100 and waits for its first frame
        clock.now += 1.0
        first = await pending  # one second fell due: all of it taken
        taken_then = source.queued_seconds
        clock.now += 2.5  # the consumer decodes for 2.5 s
        late = source.queued_seconds
        clock.now += 100  # long past the end: at most what is left of the recording
        return first[-1].end, taken_then, late, source.queued_seconds

    end, taken_then, late, capped = asyncio.run(scenario())
    assert end == SAMPLE_RATE and taken_then == 0.0
    assert abs(late - 2.5) < 1e-6 and abs(capped - 9.0) < 1e-6


def test_fast_replay_never_queues():
    source = FileReplaySource(np.zeros(SAMPLE_RATE, np.float32), realtime=False)
    assert source.queued_seconds == 0.0


def test_push_source_decodes_48k_stereo_and_flushes_the_resampler_tail_on_close():
    """Every pushed second comes out as 16 kHz samples: the resampler's last samples too."""
    async def scenario():
        source = PushSource(PcmFormat(48_000, "PCM_S16LE", 2))
        t = np.arange(48_000 * 3 // 2) / 48_000  # 1.5 s, sent in uneven chunks
        tone = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t))[:, None], 2, axis=1)
        data = encode_s16le(tone.ravel())
        for start in range(0, len(data), 4 * 1234):
            await source.push_pcm(data[start:start + 4 * 1234])
        await source.close()
        return sum([len(f.samples) for batch in [b async for b in source] for f in batch])

    assert asyncio.run(scenario()) == int(1.5 * SAMPLE_RATE)
