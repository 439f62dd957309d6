"""Shared benchmark plumbing: the machine description and one results file per run.

Every benchmark records its figures as a named section through the `results` fixture; at the
end of the run they are written together to bench/results/run-<UTC time>.json with the
machine they ran on. `bench.results.latest(section)` finds the newest run holding a section,
so a partial run (`pytest bench -k fanout`) updates only what it measured.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.audio.decode import load_audio
from appliance.evaluation import read_reference
from bench.results import RunResults


@pytest.fixture(scope="session")
def results():
    run = RunResults()
    yield run
    path = run.write()
    if path is not None:
        print(f"\nbenchmark results: {path}")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    from tests.data.fetch import fetch

    return fetch()


@pytest.fixture(scope="session")
def audio(sample_dir: Path) -> np.ndarray:
    """The sample conversation (30 s, two speakers), 16 kHz mono float32."""
    return load_audio(sample_dir / "sample.wav")


@pytest.fixture(scope="session")
def reference(sample_dir: Path) -> str:
    """Its reference transcript."""
    return read_reference(sample_dir / "sample.stm")
