"""Shared benchmark plumbing: the machine description and one results file per run.

Every benchmark records its figures as a named section through the `results` fixture; at the
end of the run they are written together to bench/results/run-<UTC time>.json with the
machine they ran on. `bench.results.latest(section)` finds the newest run holding a section,
so a partial run (`pytest bench -k fanout`) updates only what it measured.
"""
from __future__ import annotations

from pathlib import Path

import pytest

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
