"""Fixtures shared by every test tier. Keep minimal: others add theirs here too."""
from pathlib import Path

import pytest

from tests.data.fetch import fetch


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The cache holding sample.wav / .rttm / .stm (fetched once if missing)."""
    return fetch()
