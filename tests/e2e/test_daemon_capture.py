"""The appliance as installed: the real daemon captures a (PulseAudio null-sink) microphone
through PortAudio, subtitles real speech, survives the device vanishing, and recovers."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.evaluation import read_reference, word_error_rate
from tests.e2e.daemon import DaemonProcess
from tests.pulse import Pulse

CONFIG = """
[server]
listen = "{address}"
grace_seconds = 2.0

[capture]
device = "pulse"

[[sessions]]
id = "room"
source = "microphone"
"""


@pytest.fixture
def daemon(pulse: Pulse, tmp_path):
    process = DaemonProcess(CONFIG, tmp_path, env=pulse.env | {"PULSE_SOURCE": "room.monitor"}).start()
    yield process
    assert process.stop() == 0, process.log.read_text()


async def _watch(address: str, into: list, stop: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.SubtitlesStub(channel).Subscribe(pb.SubscribeRequest(session_id="room"))
        reader = asyncio.ensure_future(_read(call, into))
        await stop.wait()
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _read(call, into: list) -> None:
    async for event in call:
        into.append(event)


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)


def test_room_microphone_is_subtitled_and_recovers_from_a_vanished_device(daemon, pulse, sample_dir):
    reference = read_reference(sample_dir / "sample.stm")
    wav = sample_dir / "sample.wav"

    def finals(events):
        return [e for e in events if e.kind == pb.SubtitleEvent.FINAL]

    def states(events):
        return [pb.SessionState.Name(e.state) for e in events if e.kind == pb.SubtitleEvent.SESSION_STATE]

    async def scenario():
        events: list[pb.SubtitleEvent] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(daemon.address, events, stop))
        await _until(lambda: "RUNNING" in states(events), 15, "the room to run")
        pulse.play(wav).wait()
        await _until(lambda: any("Jersey now" in e.text for e in finals(events)), 20, "the last words as final")
        first_pass = " ".join(e.text for e in finals(events))
        health_up = await daemon.health("session/room")

        module = pulse.sink_module()
        pulse.pactl("unload-module", module)
        await _until(lambda: "UNAVAILABLE" in states(events), 15, "the room to report the device gone")
        health_down = await daemon.health("session/room")
        pulse.pactl("load-module", "module-null-sink", "sink_name=room")
        await _until(lambda: states(events)[-1] == "RUNNING", 30, "capture to recover")
        before = len(finals(events))
        pulse.play(wav).wait()
        await _until(lambda: len(finals(events)) > before + 3, 20, "finals after recovery")
        health_again = await daemon.health("session/room")
        stop.set()
        await watcher
        return first_pass, health_up, health_down, health_again, states(events)

    first_pass, up, down, again, seen = asyncio.run(scenario())
    assert word_error_rate(reference, first_pass) <= 0.3, first_pass
    assert (up, down, again) == ("SERVING", "NOT_SERVING", "SERVING")
    assert seen[:1] == ["RUNNING"] and "UNAVAILABLE" in seen
    assert daemon.process.poll() is None  # the daemon never exited for the device
