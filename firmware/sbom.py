"""The image's Python lock, from pip's install report: `name==version --hash=sha256:...` per line.

`pip install --require-hashes -r` reinstalls exactly these artefacts; the report itself (with
each artefact's URL) is kept next to it. The project's own wheel is a local file: its line
carries its hash under a comment instead of a requirement pip could not find on PyPI.
Usage: python firmware/sbom.py python-report.json > appliance.python-lock.txt
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def lock_lines(report: dict) -> list[str]:
    lines = []
    for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        archive = item["download_info"].get("archive_info", {})
        hashes = archive.get("hashes") or dict([archive["hash"].split("=", 1)] if "hash" in archive else [])
        if "sha256" not in hashes:
            raise ValueError(f"{name} {version}: no sha256 in pip's report")
        line = f"{name}=={version} --hash=sha256:{hashes['sha256']}"
        url = item["download_info"]["url"]
        lines.append(f"# {line}  (this tree's wheel, {url.rsplit('/', 1)[-1]})" if url.startswith("file:") else line)
    return lines


def main(argv: list[str]) -> None:
    report = json.loads(Path(argv[1]).read_text())
    print(f"# Python lock of the appliance image's /opt/appliance/venv (pip {report['pip_version']})")
    print("\n".join(lock_lines(report)))


if __name__ == "__main__":
    main(sys.argv)
