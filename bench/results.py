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
# What decides the figures' values, not only their speed: the int8 and float kernels CTranslate2,
# onnxruntime and numpy pick by instruction set (two CPUs with the same model name gave streaming
# WER 0.136 and 0.173), and the interpreter for the pure-Python stages.
FINGERPRINT_PACKAGES = ("ctranslate2", "onnxruntime", "numpy")
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a /proc/cpuinfo text (all processors of a box are alike)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def fingerprint(cpu: dict[str, str], cores: int, python: str, packages: dict[str, str]) -> dict[str, object]:
    """What two machines must share for a timing or WER from one to be a pass/fail bar on the other (pure)."""
    flags = set(cpu.get("flags", "").split())
    return {
        "vendor": cpu.get("vendor_id", ""),
        "model_name": cpu.get("model name", ""),
        # A virtual machine may call every generation "AMD EPYC": family and model tell them apart.
        "family": cpu.get("cpu family", ""),
        "model": cpu.get("model", ""),
        "cores": cores,
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "python": ".".join(python.split(".")[:2]),
        "packages": {name: packages.get(name) for name in FINGERPRINT_PACKAGES},
    }


def machine() -> dict[str, object]:
    try:
        cpu = cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = {}
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0))
    return {
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "cores": cores,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "packages": versions,
        "fingerprint": fingerprint(cpu, cores, platform.python_version(), versions),
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
