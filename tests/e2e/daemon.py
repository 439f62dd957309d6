"""The real daemon as a subprocess (`python -m appliance serve`), for end-to-end tests."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from appliance.service.client import free_port, health_status

__all__ = ["DaemonProcess", "free_port"]


class DaemonProcess:
    def __init__(self, config_text: str, workdir: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log_level: str | None = "INFO"):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = workdir / "appliance.toml"
        if "[metrics]" not in config_text:  # not the default port: other daemons may be running
            config_text += '\n[metrics]\nlisten = "127.0.0.1:0"\n'
        if "[http]" not in config_text:
            config_text += '\n[http]\nlisten = "127.0.0.1:0"\n'
        self.config.write_text(config_text.replace("{address}", self.address))
        self.log = workdir / "daemon.log"
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.log_level = log_level  # None: the config's [log] level decides
        self.process: subprocess.Popen | None = None

    def launch(self) -> DaemonProcess:
        """Start the process without waiting for it to serve."""
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "appliance", *(["--log-level", self.log_level] if self.log_level else []),
                 "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
            )
        return self

    def start(self, timeout: float = 60.0, ready=None) -> DaemonProcess:
        """Launch and wait until `ready()` (default: plaintext health reports SERVING)."""
        ready = ready or (lambda: asyncio.run(self.health("")) == "SERVING")
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log.read_text()}")
            if ready():
                return self
            time.sleep(0.2)
        raise AssertionError(f"daemon not SERVING within {timeout} s:\n{self.log.read_text()}")

    async def health(self, service: str) -> str:
        async with grpc.aio.insecure_channel(self.address) as channel:
            return await health_status(channel, service)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"daemon ignored SIGTERM for {timeout} s:\n{self.log.read_text()}") from None
