"""In-process daemon on loopback with the real models, shared by the service tests."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from appliance.audio.decode import load_audio
from prometheus_client import CollectorRegistry

from appliance.config import AppConfig, DiarizationConfig, HttpConfig, MetricsConfig, ServerConfig
from appliance.daemon import Daemon, Models, running


@pytest.fixture(scope="session")
def models() -> Models:
    return Models.load(AppConfig())


@pytest.fixture(scope="session")
def sample(sample_dir) -> np.ndarray:
    return load_audio(sample_dir / "sample.wav")


@contextlib.asynccontextmanager
async def serving(models: Models, http: HttpConfig | None = None, diarization: DiarizationConfig | None = None,
                  **server) -> AsyncIterator[tuple[Daemon, str]]:
    """The daemon on a free loopback port, with metrics on a fresh registry (served on a free port),
    and the HTTP face on a free port (its address in `daemon.http_address`)."""
    config = AppConfig(server=ServerConfig(**{"listen": "127.0.0.1:0", "grace_seconds": 1.0} | server),
                       metrics=MetricsConfig(listen="127.0.0.1:0"), http=http or HttpConfig(listen="127.0.0.1:0"),
                       diarization=diarization or DiarizationConfig())
    async with running(config, models, registry=CollectorRegistry()) as live:
        live.daemon.metrics_address = f"127.0.0.1:{live.metrics_port}"
        live.daemon.http_address = f"127.0.0.1:{live.http_port}"
        yield live.daemon, f"127.0.0.1:{live.port}"
