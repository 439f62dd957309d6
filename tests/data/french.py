"""French test speech with exact references, made here by espeak-ng's French voice (Debian).

The plumbing tests (language detection, a French room, translation) speak French through
espeak-ng: synthetic, so its WER says nothing of real French speech; it says whether French
reaches the French model and comes back as French words. Real French speech with its text
(Asterisk's French prompts, one voice) is in the evaluation set: tests/data/corpus.py,
recordings asterisk-fr-*. Files are written once into the cache.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.data.fetch import CACHE

SENTENCES = (
    "Bonjour à tous. Nous allons commencer la réunion du conseil municipal.",
    "Le premier point concerne le budget de l'année prochaine, qui doit être voté avant la fin du mois.",
    "La mairie souhaite rénover les écoles et agrandir la bibliothèque du quartier.",
    "Les habitants pourront donner leur avis pendant une consultation publique au printemps.",
    "Enfin, nous parlerons des transports, car beaucoup de familles attendent une nouvelle ligne de bus.",
    "Merci de votre attention. La séance est ouverte.",
)


def _speak(path: Path, text: str) -> Path:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng; `make deps` installs it)")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.wav")
        subprocess.run(["espeak-ng", "-v", "fr+m1", "-s", "150", "-w", str(partial), text], check=True)
        partial.replace(path)
    return path


def french_clip(cache: Path = CACHE) -> tuple[Path, str]:
    """A WAV of every sentence in turn (about 30 s) and its reference text."""
    text = " ".join(SENTENCES)
    return _speak(cache / "french" / "conseil.wav", text), text


def french_sentences(cache: Path = CACHE) -> list[tuple[Path, str]]:
    """Each sentence on its own (3 to 6 s of speech each), with its text."""
    return [(_speak(cache / "french" / f"phrase-{i}.wav", text), text) for i, text in enumerate(SENTENCES)]
