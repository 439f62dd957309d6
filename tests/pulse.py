"""A private PulseAudio daemon with a null sink `room`, for tests of the real capture path."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Pulse:
    """A PulseAudio daemon of our own, with a null sink `room`."""

    def __init__(self, runtime: Path):
        self.runtime = runtime
        self.socket = runtime / "native"
        # HOME and XDG_RUNTIME_DIR in tmp: the daemon writes its cookie and state there, not in /root.
        self.env = {**os.environ, "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime),
                    "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": f"unix:{self.socket}"}
        self.process: subprocess.Popen | None = None
        self.log = runtime / "pulseaudio.log"

    def start(self) -> None:
        for tool in ("pulseaudio", "pactl", "paplay"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run `make system-deps` (Debian pulseaudio, pulseaudio-utils)")
        command = [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
            "--log-target=stderr",
            # Anonymous auth on our private socket: clients need no cookie.
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            "--load=module-null-sink sink_name=room",
        ]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"PulseAudio exited with {self.process.returncode}:\n{self.log.read_text()}")
            if self.pactl("info", check=False).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"PulseAudio did not answer within 10 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=5)

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=check)

    def play(self, path: Path) -> subprocess.Popen:
        return subprocess.Popen(["paplay", "--device=room", str(path)], env=self.env)

    def sink_module(self) -> str:
        for line in self.pactl("list", "short", "modules").stdout.splitlines():
            if "module-null-sink" in line:
                return line.split()[0]
        raise AssertionError("the null sink module is not loaded")


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    daemon = Pulse(tmp_path_factory.mktemp("pulse"))
    daemon.start()
    with pytest.MonkeyPatch.context() as env:
        # Read by ALSA's pulse plugin each time PortAudio opens the `pulse` device.
        env.setenv("PULSE_SERVER", daemon.env["PULSE_SERVER"])
        env.setenv("PULSE_SOURCE", "room.monitor")
        # PortAudio lists devices once, when it initialises: if an earlier test in this
        # process loaded it, its list predates this PulseAudio. Make it look again.
        import sounddevice

        sounddevice._terminate()
        sounddevice._initialize()
        yield daemon
    daemon.stop()
