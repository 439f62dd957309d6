"""Shared benchmark helpers: the machine description and JSON results under bench/results/."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("ctranslate2", "faster-whisper", "onnxruntime", "numpy", "grpcio"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "packages": versions,
    }


def write_result(name: str, payload: dict[str, object]) -> Path:
    """bench/results/<name>.json: the latest run, with the machine it ran on."""
    RESULTS.mkdir(exist_ok=True)
    document = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    from tests.data.fetch import fetch

    return fetch()
