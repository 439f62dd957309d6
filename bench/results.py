"""Benchmark result files: one JSON per run under bench/results/, with the machine it ran on."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("ctranslate2", "faster-whisper", "onnxruntime", "numpy", "grpcio", "protobuf")


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
    for package in PACKAGES:
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


class RunResults:
    """The sections one benchmark run measured, written together when the run ends."""

    def __init__(self, directory: Path = RESULTS) -> None:
        self.directory = directory
        self.started = datetime.datetime.now(datetime.UTC)
        self.sections: dict[str, dict] = {}

    def record(self, section: str, payload: dict) -> None:
        self.sections[section] = payload

    def write(self) -> Path | None:
        if not self.sections:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"run-{self.started:%Y%m%dT%H%M%SZ}.json"
        document = {
            "date": self.started.isoformat(timespec="seconds"),
            "machine": machine(),
            "sections": self.sections,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def runs(directory: Path = RESULTS) -> list[Path]:
    """Run files, oldest first (their names sort by time)."""
    return sorted(directory.glob("run-*.json"))


def latest(section: str, directory: Path = RESULTS) -> tuple[dict, dict]:
    """(run document, section) from the newest run that measured `section`."""
    for path in reversed(runs(directory)):
        document = json.loads(path.read_text())
        if section in document["sections"]:
            return document, document["sections"][section]
    raise LookupError(f"no run in {directory} has a {section!r} section: run `make bench`")
