"""Fixtures shared by every test tier. Keep minimal: others add theirs here too."""
from pathlib import Path

import pytest

from tests.data.fetch import fetch
from tests.pulse import pulse  # noqa: F401  (fixture: a private PulseAudio with a null sink)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The cache holding sample.wav / .rttm / .stm (fetched once if missing)."""
    return fetch()
