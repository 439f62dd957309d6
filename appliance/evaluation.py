"""Accuracy measures used by the replay harness, the tests and the benchmarks."""
from __future__ import annotations

from pathlib import Path

import jiwer

from appliance.subtitles.text import normalize


def read_reference(path: Path) -> str:
    """Reference text from a NIST STM file (text after the 5th field) or plain text."""
    text = path.read_text()
    if path.suffix.lower() != ".stm":
        return text
    lines = (line.split(maxsplit=5) for line in text.splitlines() if line and not line.startswith(";;"))
    return " ".join(fields[5] for fields in lines if len(fields) == 6)


def word_error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    return jiwer.wer(normalize(reference, language), normalize(hypothesis, language))
