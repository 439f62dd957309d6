"""In-process daemon on loopback with the real models, shared by the service tests."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import numpy as np
import pytest

from appliance.audio.decode import load_audio
from appliance.config import AppConfig, ServerConfig
from appliance.daemon import Daemon, Models, running


@pytest.fixture(scope="session")
def models() -> Models:
    return Models.load(AppConfig())


@pytest.fixture(scope="session")
def sample(sample_dir) -> np.ndarray:
    return load_audio(sample_dir / "sample.wav")


@contextlib.asynccontextmanager
async def serving(models: Models, **server) -> AsyncIterator[tuple[Daemon, str]]:
    config = AppConfig(server=ServerConfig(**{"listen": "127.0.0.1:0", "grace_seconds": 1.0} | server))
    async with running(config, models) as (daemon, port):
        yield daemon, f"127.0.0.1:{port}"


def with_server(config: ServerConfig, listen: str) -> ServerConfig:
    return dataclasses.replace(config, listen=listen)
