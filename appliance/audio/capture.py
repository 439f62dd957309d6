"""Live capture from a sound card through PortAudio (sounddevice) into AudioFrames.

The stream is opened at the device's own rate and channel count, so PortAudio never
resamples; the consumer normalises each block once (`Normalizer`). The PortAudio
callback only copies the block, stamps it and hands it to the event loop.

Audio time across an outage: when the device vanishes the source reports DOWN and keeps
trying to reopen it; when audio flows again, sample indices continue from where they
stopped. Pipeline time is *session audio received*: a gap is not inserted as silence,
so `frame.start / 16000` is not wall-clock time since start. Latency still holds,
because every frame carries the monotonic time its last sample was captured.

Hardening: sounddevice's callback is a cffi `ffi.callback`, which needs writable and
executable memory. Under MemoryDenyWriteExecute (kernel PR_SET_MDWE) opening a stream
fails with MemoryError "Cannot allocate write+execute memory for ffi.callback()".
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import sounddevice as sd

from appliance.audio.frames import SILENCE_DBFS, AudioFrame, level_dbfs
from appliance.audio.resample import Normalizer
from appliance.config import CaptureConfig, ConfigError

log = logging.getLogger(__name__)

STARTING, UP, DOWN, STOPPED = "STARTING", "UP", "DOWN", "STOPPED"
# PulseAudio's ALSA plugin takes 1.3-2 s to deliver the first block from an idle sink
# (measured), so a freshly opened stream gets longer than `stall_seconds` to start.
FIRST_BLOCK_GRACE = 5.0


@dataclass(frozen=True)
class InputDevice:
    index: int  # PortAudio's index: only valid until PortAudio re-enumerates
    name: str
    hostapi: str
    max_input_channels: int
    default_samplerate: float  # the device's native rate: capture opens it at this rate
    is_default: bool


@dataclass
class CaptureStats:
    """Counters for metrics. Changed only on the event loop thread."""

    overflows: int = 0  # blocks PortAudio flagged input_overflow: the driver lost audio
    dropped_blocks: int = 0  # blocks thrown away because the consumer fell queue_seconds behind
    reconnects: int = 0  # attempts to reopen the device after it went down (failed ones included)
    level_dbfs: float = SILENCE_DBFS  # RMS level of the last block, 16 kHz mono


def input_devices() -> list[InputDevice]:
    """Every device PortAudio can record from, as PortAudio enumerated them at its start."""
    default = sd.default.device[0]
    hostapis = sd.query_hostapis()
    return [
        InputDevice(
            index=d["index"],
            name=d["name"],
            hostapi=hostapis[d["hostapi"]]["name"],
            max_input_channels=d["max_input_channels"],
            default_samplerate=float(d["default_samplerate"]),
            is_default=d["index"] == default,
        )
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


class DeviceNotFound(ConfigError):
    """No input device matches: unlike a bad setting, plugging the device in fixes it."""


def resolve_device(config: CaptureConfig) -> InputDevice:
    """The input device `config` names; ConfigError naming it and listing the inputs if absent.

    A name matches exactly first, then as a unique case-insensitive substring.
    """
    devices = input_devices()
    listing = ", ".join(f"{d.index}: {d.name!r}" for d in devices) or "none"
    wanted = config.device
    if wanted is None:
        matches = [d for d in devices if d.is_default]
        what = "the default input"
    elif isinstance(wanted, int):
        matches = [d for d in devices if d.index == wanted]
        what = f"input device {wanted}"
    else:
        matches = [d for d in devices if d.name == wanted] or [
            d for d in devices if wanted.lower() in d.name.lower()
        ]
        what = f"input device {wanted!r}"
    if not matches:
        raise DeviceNotFound(f"capture.device: {what} not found; inputs: {listing}")
    if len(matches) > 1:
        names = ", ".join(f"{d.index}: {d.name!r}" for d in matches)
        raise ConfigError(f"capture.device: {what} is ambiguous ({names}); give a longer name or an index")
    device = matches[0]
    channels = open_channels(config, device)
    if channels > device.max_input_channels:
        raise ConfigError(
            f"capture.channels: {device.name!r} has {device.max_input_channels} input channels, {channels} asked"
        )
    return device


def open_channels(config: CaptureConfig, device: InputDevice) -> int:
    """How many channels to open: as configured, else the device's, at most 2 (see CaptureConfig)."""
    if config.channels is not None:
        return config.channels
    channels = min(device.max_input_channels, 2)
    return max(channels, config.channel + 1) if config.channel is not None else channels


class _Handoff:
    """Blocks from one open stream, waiting for the consumer. Touched only on the loop thread."""

    def __init__(self, max_blocks: int, stats: CaptureStats):
        self.blocks: deque[tuple[np.ndarray, float]] = deque()
        self.max_blocks = max_blocks
        self.stats = stats
        self.arrived = asyncio.Event()
        self.last_at: float | None = None
        self.ended: str | None = None  # why the stream stopped delivering, once it has

    def put(self, block: np.ndarray, captured_at: float, overflow: bool) -> None:
        if overflow:
            self.stats.overflows += 1
        if len(self.blocks) >= self.max_blocks:  # keep the newest audio: subtitles are live
            self.blocks.popleft()
            self.stats.dropped_blocks += 1
        self.blocks.append((block, captured_at))
        self.last_at = captured_at
        self.arrived.set()

    def end(self, reason: str) -> None:
        self.ended = self.ended or reason
        self.arrived.set()


class MicrophoneSource:
    """A sound card as an audio source: async iterable of `list[AudioFrame]`, like FileReplaySource.

    Never raises for a missing or vanished device: it reports DOWN (`state`, `on_state`)
    and reopens with exponential backoff until the device returns or `stop()` is called.
    Iteration then ends normally.
    """

    def __init__(
        self,
        config: CaptureConfig,
        on_state: Callable[[str, str], None] | None = None,
    ):
        self.config = config
        self.on_state = on_state
        self.state = STARTING
        self.reason = ""
        self.stats = CaptureStats()
        self.device: InputDevice | None = None  # the device of the stream last opened
        self.native_rate: float | None = None
        self.channels: int | None = None
        self._position = 0  # next sample index: continues across reconnects
        self._stream: sd.InputStream | None = None
        self._handoff: _Handoff | None = None
        self._stopping = asyncio.Event()

    @property
    def queued_seconds(self) -> float:
        """Captured blocks waiting for the pipeline (at most capture.queue_seconds)."""
        if self._handoff is None or not self.native_rate:
            return 0.0
        return sum(len(block) for block, _ in self._handoff.blocks) / self.native_rate

    def stop(self) -> None:
        """Close the device; iteration ends at its next step. Call on the event loop thread."""
        self._stopping.set()
        if self._handoff is not None:
            self._handoff.end("stopped")
        self._close()
        self._set_state(STOPPED, "stopped")

    async def aclose(self) -> None:
        self.stop()

    async def __aiter__(self) -> AsyncIterator[list[AudioFrame]]:
        loop = asyncio.get_running_loop()
        delay, attempts = self.config.reconnect_initial, 0
        try:
            while not self._stopping.is_set():
                if attempts:
                    await self._sleep(delay)
                    if self._stopping.is_set():
                        break
                    self.stats.reconnects += 1
                    delay = min(2 * delay, self.config.reconnect_max)
                attempts += 1
                try:
                    normalizer = self._open(loop, reenumerate=attempts > 1)
                except (sd.PortAudioError, ConfigError) as exc:
                    self._set_state(DOWN, f"cannot open: {exc}")
                    continue
                got_audio = False
                async for frames in self._frames(normalizer):
                    if not got_audio:  # the device really works again: start backoff afresh
                        got_audio, delay = True, self.config.reconnect_initial
                        self._set_state(UP, f"{self.device.name!r} at {self.native_rate:g} Hz")
                    yield frames
                reason = self._handoff.ended or "stream ended"
                self._close()
                if not self._stopping.is_set():
                    self._set_state(DOWN, reason)
        finally:
            self._close()

    def _open(self, loop: asyncio.AbstractEventLoop, reenumerate: bool) -> Normalizer:
        try:
            device = resolve_device(self.config)
        except ConfigError:
            if not reenumerate:
                raise
            # PortAudio lists devices once, at initialisation: a replugged card appears only
            # after re-initialising, which also closes every other stream in this process.
            sd._terminate()
            sd._initialize()
            device = resolve_device(self.config)
        channels = open_channels(self.config, device)
        rate = device.default_samplerate
        handoff = _Handoff(max(2, round(self.config.queue_seconds / self.config.block_seconds)), self.stats)

        def callback(indata: np.ndarray, frames: int, time_info: object, status: sd.CallbackFlags) -> None:
            # PortAudio's thread: copy, stamp, hand over; everything else happens on the loop.
            try:
                loop.call_soon_threadsafe(handoff.put, indata.copy(), time.monotonic(), status.input_overflow)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                raise sd.CallbackAbort from None

        def finished() -> None:  # the stream stopped: aborted by the host (device gone) or closed by us
            try:
                loop.call_soon_threadsafe(handoff.end, "stream stopped by the audio system")
            except RuntimeError:
                pass

        stream = sd.InputStream(
            device=device.index,
            samplerate=rate,
            channels=channels,
            dtype="float32",
            blocksize=max(1, round(rate * self.config.block_seconds)),
            callback=callback,
            finished_callback=finished,
        )
        try:
            stream.start()
        except sd.PortAudioError:
            stream.close()
            raise
        self._stream, self._handoff = stream, handoff
        self.device, self.native_rate, self.channels = device, rate, channels
        log.info("capture: opened %r at %g Hz, %d channels", device.name, rate, channels)
        return Normalizer(rate, channels, self.config.channel)

    async def _frames(self, normalizer: Normalizer) -> AsyncIterator[list[AudioFrame]]:
        """Batches of frames from the open stream, until it ends, stalls or we stop."""
        handoff = self._handoff
        opened_at = time.monotonic()
        while True:
            if not handoff.blocks and handoff.ended is None:
                silent_for = time.monotonic() - (handoff.last_at or opened_at)
                limit = self.config.stall_seconds if handoff.last_at else FIRST_BLOCK_GRACE
                if silent_for >= limit:
                    handoff.end(f"no audio for {silent_for:.1f} s")
                    continue
                handoff.arrived.clear()
                try:
                    await asyncio.wait_for(handoff.arrived.wait(), limit - silent_for)
                except TimeoutError:
                    pass
                continue
            frames = []
            while handoff.blocks:
                block, captured_at = handoff.blocks.popleft()
                frames.extend(self._frame(normalizer(block), captured_at))
            if handoff.ended is not None and not self._stopping.is_set():
                frames.extend(self._frame(normalizer.flush(), handoff.last_at or time.monotonic()))
            if frames:
                yield frames
            if handoff.ended is not None:
                return

    def _frame(self, samples: np.ndarray, captured_at: float) -> list[AudioFrame]:
        if len(samples) == 0:  # the resampler's filter is still filling
            return []
        frame = AudioFrame(samples, self._position, captured_at)
        self._position = frame.end
        self.stats.level_dbfs = level_dbfs(samples)
        return [frame]

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()  # waits for a running callback to return
            except sd.PortAudioError as exc:  # a stream the host already killed
                log.debug("capture: closing stream: %s", exc)

    def _set_state(self, state: str, reason: str) -> None:
        self.reason = reason  # the latest, e.g. each failed reopen; listeners hear transitions only
        if state == self.state:
            return
        self.state = state
        log.log(logging.WARNING if state == DOWN else logging.INFO, "capture %s: %s", state, reason)
        if self.on_state is not None:
            self.on_state(state, reason)
