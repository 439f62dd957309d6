"""A room's language when it is to be detected ("auto"): decided once, kept stable. Pure.

Detection on every decode would flip on a short or noisy buffer (and costs an encoder pass
over the whole buffer each time); a room is one language far more often than not. So the
first decision waits for `min_speech` seconds of speech; after that the language is checked
again every `recheck_every` seconds of speech and changes only when another language wins
`switch_after` checks in a row, each with at least `confidence`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LanguagePolicy:
    min_speech: float = 3.0
    recheck_every: float = 30.0
    confidence: float = 0.6
    switch_after: int = 2
    language: str | None = None  # decided so far (None: not yet)
    changes: int = 0  # times the decided language changed after the first decision
    _next_check: float = field(default=0.0, init=False)
    _challenger: str | None = field(default=None, init=False)
    _wins: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._next_check = self.min_speech

    def due(self, speech_seconds: float) -> bool:
        """Whether the room has heard enough more speech to (re)check its language."""
        return speech_seconds >= self._next_check

    def observe(self, ranked: list[tuple[str, float]], speech_seconds: float) -> str | None:
        """A detection over the recent speech ((code, probability), most likely first); returns
        the room's language after it."""
        self._next_check = speech_seconds + self.recheck_every
        if not ranked:
            return self.language
        best, probability = ranked[0]
        if self.language is None:
            self.language = best  # the first decision takes the best guess: decoding needs one
        elif best == self.language or probability < self.confidence:
            self._challenger, self._wins = None, 0
        else:
            self._wins = self._wins + 1 if best == self._challenger else 1
            self._challenger = best
            if self._wins >= self.switch_after:
                self.language, self.changes = best, self.changes + 1
                self._challenger, self._wins = None, 0
        return self.language
