from pathlib import Path

import pytest

from tests.data.fetch import fetch


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return fetch()
