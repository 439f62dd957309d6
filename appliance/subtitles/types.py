"""The domain types every stage after ASR speaks: words, speaker turns, cues.

Times are seconds of session audio (sample index / 16000), never wall clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    text: str  # as the recognizer spelled it, leading space stripped
    start: float
    end: float
    probability: float = 1.0
    speaker: str | None = None


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Cue:
    """One caption on screen: at most two lines, one speaker."""

    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[Word, ...] = field(default=())
    speaker: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.lines)
