"""Live capture through real PortAudio and a real PulseAudio null sink.

A private PulseAudio daemon plays the reference recording into the sink `room`; PortAudio
records its monitor through ALSA's `pulse` device. Nothing is skipped: if PulseAudio
cannot start, these tests fail and say why (`make system-deps` installs it).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.frames import AudioFrame
from appliance.config import SAMPLE_RATE, CaptureConfig, ConfigError
from tests.pulse import Pulse

SPEECH_ONSET = 6.7  # seconds into sample.wav where the first speaker starts
ENVELOPE_HOP = 800  # 50 ms envelope steps at 16 kHz


@pytest.fixture(scope="module")
def recording(sample_dir: Path) -> np.ndarray:
    with wave.open(str(sample_dir / "sample.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def envelope(samples: np.ndarray) -> np.ndarray:
    n = len(samples) // ENVELOPE_HOP
    return np.sqrt(np.mean(samples[: n * ENVELOPE_HOP].reshape(n, ENVELOPE_HOP) ** 2, axis=1))


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(SAMPLE_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)


def test_devices_command_lists_pulse(pulse: Pulse):
    out = subprocess.run([sys.executable, "-m", "appliance", "devices"], capture_output=True, text=True, env=pulse.env)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert any("pulse" in row and "ALSA" in row for row in rows), out.stdout
    assert out.stdout.rstrip().endswith("* default input")


def test_devices_command_without_any_device(tmp_path: Path):
    # ALSA's own config without the plugin includes (pulse, jack, ...) on a box without sound cards.
    config = tmp_path / "alsa.conf"
    config.write_text(Path("/usr/share/alsa/alsa.conf").read_text().replace('"/etc/alsa/conf.d"', '"/nonexistent"'))
    env = {**os.environ, "ALSA_CONFIG_PATH": str(config)}
    out = subprocess.run([sys.executable, "-m", "appliance", "devices"], capture_output=True, text=True, env=env)
    assert (out.returncode, out.stdout) == (0, "no input devices\n"), out.stderr


def test_unknown_device_names_itself_and_lists_inputs(pulse: Pulse):
    from appliance.audio.capture import resolve_device

    with pytest.raises(ConfigError, match=r"'no-such-mic' not found; inputs: .*'pulse'"):
        resolve_device(CaptureConfig(device="no-such-mic"))
    assert resolve_device(CaptureConfig(device="pulse")).name == "pulse"


def test_capture_follows_playback_survives_the_sink_vanishing_and_resumes(
    pulse: Pulse, recording: np.ndarray, tmp_path: Path
):
    from appliance.audio.capture import DOWN, STOPPED, UP, MicrophoneSource, resolve_device

    config = CaptureConfig(device="pulse", reconnect_initial=0.2, reconnect_max=1.0)
    device = resolve_device(config)
    states: list[tuple[str, str]] = []
    source = MicrophoneSource(config, on_state=lambda state, reason: states.append((state, reason)))
    frames: list[AudioFrame] = []
    speech = write_wav(tmp_path / "speech.wav", recording[int(SPEECH_ONSET * SAMPLE_RATE) :][: 4 * SAMPLE_RATE])

    async def consume() -> None:
        async for batch in source:
            assert batch, "a batch holds at least one frame"
            frames.extend(batch)

    async def scenario() -> None:
        task = asyncio.create_task(consume())
        await until(lambda: source.state == UP, 8, "the first block from the null sink")

        # 1. The recording played into the sink comes back, in time with playback.
        played_at = time.monotonic()
        player = pulse.play(_sample(recording, tmp_path))
        await asyncio.sleep(SPEECH_ONSET + 2.0)
        player.terminate(), player.wait()
        first_part = len(frames)
        check_against_playback(frames[:first_part], recording, played_at)
        assert source.native_rate == device.default_samplerate != SAMPLE_RATE  # PortAudio did not resample
        assert source.channels == 2 and source.stats.dropped_blocks == 0
        assert source.stats.level_dbfs > -60

        # 2. The sink vanishes: DOWN, reopen attempts counted, the iterator keeps going.
        pulse.pactl("unload-module", pulse.sink_module())
        await until(lambda: source.state == DOWN, 3, "DOWN after unloading the sink")
        await until(lambda: source.stats.reconnects >= 2, 3, "reconnect attempts while the sink is gone")
        assert source.reason.startswith("cannot open:"), source.reason
        assert not task.done()
        gone_at = len(frames)

        # 3. The sink returns: UP again and audio flows.
        pulse.pactl("load-module", "module-null-sink", "sink_name=room")
        await until(lambda: source.state == UP, 8, "UP after reloading the sink")
        player = pulse.play(speech)
        await asyncio.sleep(2.5)
        player.terminate(), player.wait()
        resumed = np.concatenate([f.samples for f in frames[gone_at:]])
        assert envelope(resumed).max() > 0.01, "no audio after the sink came back"

        source.stop()
        await asyncio.wait_for(task, 2)  # ends normally: nothing was raised out of the iterator
        assert source.state == STOPPED

    asyncio.run(scenario())
    assert [s for s, _ in states] == [UP, DOWN, UP, STOPPED], states
    # Sample indices run on across the gap: session audio received, no silence inserted.
    assert frames[0].start == 0
    assert all(a.end == b.start for a, b in zip(frames, frames[1:]))
    assert all(f.samples.dtype == np.float32 and f.samples.ndim == 1 for f in frames)
    assert all(a.captured_at <= b.captured_at for a, b in zip(frames, frames[1:]))


def _sample(recording: np.ndarray, tmp_path: Path) -> Path:
    """The first 9 s of the recording: speech starts at 6.7 s."""
    return write_wav(tmp_path / "head.wav", recording[: 9 * SAMPLE_RATE])


def check_against_playback(frames: list[AudioFrame], recording: np.ndarray, played_at: float) -> None:
    captured = np.concatenate([f.samples for f in frames])
    # 16 kHz: one second of session audio per second of capture (within block granularity).
    span = frames[-1].captured_at - frames[0].captured_at
    assert abs((frames[-1].end - frames[0].end) / SAMPLE_RATE - span) < 0.2

    # Where does the played recording sit in the capture? Cross-correlate the envelopes.
    played, heard = envelope(recording[: 9 * SAMPLE_RATE]), envelope(captured)
    best, best_lag = -1.0, 0
    for lag in range(0, len(heard) - len(played) // 2):
        a = heard[lag : lag + len(played)]
        b = played[: len(a)]
        if a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best:
            best, best_lag = r, lag
    assert best > 0.8, f"captured audio does not resemble the played recording (r = {best:.2f})"

    # The recording's start, mapped to capture time through the frames' stamps, is when we played it.
    start_sample = best_lag * ENVELOPE_HOP
    frame = next(f for f in frames if f.end > start_sample)
    heard_start = frame.captured_at - (frame.end - start_sample) / SAMPLE_RATE
    assert abs(heard_start - played_at) < 0.5, f"playback heard {heard_start - played_at:+.2f} s off"

    # And the speech onset: the first 50 ms above 8 % of the peak after playback begins
    # (a faint sound at 2.4 s reaches 5.5 %; speech at 6.7 s starts above 11 %).
    loud = np.flatnonzero(heard[best_lag:] > 0.08 * heard.max())
    assert loud.size and abs(loud[0] * ENVELOPE_HOP / SAMPLE_RATE - SPEECH_ONSET) < 0.3


def test_a_consumer_that_falls_behind_loses_the_oldest_blocks_counted(pulse: Pulse):
    from appliance.audio.capture import UP, MicrophoneSource

    source = MicrophoneSource(CaptureConfig(device="pulse", queue_seconds=0.1))  # 5 blocks of 20 ms
    frames: list[AudioFrame] = []

    async def scenario() -> None:
        async for batch in source:
            frames.extend(batch)
            if source.state == UP and source.stats.dropped_blocks == 0:
                time.sleep(0.5)  # a stuck consumer: blocks pile up behind the event loop
            elif source.stats.dropped_blocks:
                source.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert source.stats.dropped_blocks >= 10  # ~25 blocks arrived, 5 kept
    assert all(a.end == b.start for a, b in zip(frames, frames[1:]))  # dropped audio leaves no index gap


def test_a_device_that_appears_later_is_found_by_re_enumerating(pulse: Pulse, tmp_path: Path):
    from appliance.audio.capture import DOWN, UP, MicrophoneSource

    # PortAudio lists devices once, at initialisation; an ALSA device defined afterwards
    # (as a replugged USB card would appear) is only seen after re-initialising PortAudio.
    alsa_conf = tmp_path / "alsa.conf"
    base = Path("/usr/share/alsa/alsa.conf").read_text()
    alsa_conf.write_text(base)
    states: list[str] = []
    source = MicrophoneSource(
        CaptureConfig(device="roomcap", reconnect_initial=0.2, reconnect_max=0.4),
        on_state=lambda state, reason: states.append(state),
    )
    frames: list[AudioFrame] = []

    async def scenario() -> None:
        async def consume() -> None:
            async for batch in source:
                frames.extend(batch)

        task = asyncio.create_task(consume())
        await until(lambda: source.state == DOWN, 3, "DOWN for a device not (yet) listed")
        assert "'roomcap' not found" in source.reason
        alsa_conf.write_text(base + "\npcm.roomcap { type pulse\n device room.monitor }\n")
        await until(lambda: source.state == UP, 8, "UP once the device is defined")
        source.stop()
        await asyncio.wait_for(task, 2)

    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALSA_CONFIG_PATH", str(alsa_conf))
        import sounddevice as sd

        sd._terminate(), sd._initialize()  # start from a PortAudio that read this config
        try:
            asyncio.run(scenario())
        finally:
            env.undo()
            sd._terminate(), sd._initialize()  # back to the system's device list
    assert states[:2] == [DOWN, UP] and source.device.name == "roomcap" and frames


def test_a_stream_that_stops_delivering_is_reopened(pulse: Pulse):
    from appliance.audio.capture import DOWN, UP, MicrophoneSource

    # A suspended sink leaves the stream open and active but silent: only the stall
    # watchdog notices.
    source = MicrophoneSource(CaptureConfig(device="pulse", reconnect_initial=0.2, reconnect_max=0.4))

    async def scenario() -> None:
        async def consume() -> None:
            async for _ in source:
                pass

        task = asyncio.create_task(consume())
        await until(lambda: source.state == UP, 8, "the first block")
        pulse.pactl("suspend-sink", "room", "1")
        try:
            await until(lambda: source.state == DOWN, 4, "DOWN when blocks stop")
            assert source.reason.startswith("no audio for")
        finally:
            pulse.pactl("suspend-sink", "room", "0")
        await until(lambda: source.state == UP, 8, "UP when the sink resumes")
        source.stop()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())
