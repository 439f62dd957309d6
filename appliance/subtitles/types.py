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


@dataclass(frozen=True)
class Decision:
    """What the streaming recognizer decided after one decode: the words that became final, the tentative tail."""

    final: list[Word] = field(default_factory=list)  # newly final, in time order
    partial: list[Word] = field(default_factory=list)  # the current tentative tail (replaces the last one)
    stability: float = 0.0  # estimate that the partial will not change (mean word probability)
    closed: bool = False  # a speech region (or the stream) ended: nothing is pending any more
