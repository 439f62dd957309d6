"""Cue layout: common caption rules, as a pure incremental builder.

Words go in one at a time (offline: all of a file; live: each newly final word);
closed cues come out. No I/O, no clock: the same rules serve files and live rooms.

Rules (broadcast/streaming caption practice):
- at most `max_lines` lines of at most `max_line_chars` characters, balanced;
- a cue lasts at most `max_duration` seconds;
- a speaker change or a long pause starts a new cue;
- a sentence end closes the cue once it has been up for `min_duration`;
- a cue stays up at least `min_duration`, unless the next cue starts sooner.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.subtitles.types import Cue, Word

_SENTENCE_END = (".", "?", "!", "…")


@dataclass(frozen=True)
class CueRules:
    max_line_chars: int = 42
    max_lines: int = 2
    max_duration: float = 7.0
    min_duration: float = 1.0
    max_gap: float = 1.5  # a pause this long ends the cue

    def __post_init__(self) -> None:
        if self.max_line_chars < 10 or self.max_lines < 1:
            raise ValueError("cue rules: need at least one line of 10 characters")
        if not 0 <= self.min_duration <= self.max_duration:
            raise ValueError("cue rules: need 0 <= min_duration <= max_duration")


def wrap_lines(texts: list[str], max_chars: int, max_lines: int) -> tuple[str, ...] | None:
    """Words laid out in at most `max_lines` balanced lines of `max_chars`, or None if they don't fit.

    A single word longer than a line is allowed on its own line (nothing better exists).
    """
    if not texts:
        return ()
    whole = " ".join(texts)
    if len(whole) <= max_chars or len(texts) == 1:
        return (whole,)
    if max_lines == 1:
        return None
    best: tuple[str, ...] | None = None
    best_score = math.inf
    for cut in range(1, len(texts)):
        head = " ".join(texts[:cut])
        if len(head) > max_chars:
            break
        tail = wrap_lines(texts[cut:], max_chars, max_lines - 1)
        if tail is None:
            continue
        score = max(len(head), *(len(line) for line in tail))
        # Prefer breaking after punctuation when it costs little balance.
        if head.endswith((",", ".", "?", "!", ";", ":")):
            score -= 4
        if score < best_score:
            best, best_score = (head, *tail), score
    return best


class CueBuilder:
    """Accumulates words into the open cue and closes it when a rule says so."""

    def __init__(self, rules: CueRules | None = None):
        self.rules = rules or CueRules()
        self._words: list[Word] = []

    def add(self, word: Word) -> list[Cue]:
        """Append a word; return the cue it closed (zero or one)."""
        closed = []
        if self._words and self._breaks_before(word):
            closed.append(self._close(next_start=word.start))
        self._words.append(word)
        return closed

    def relabel(self, relabel: Callable[[tuple[Word, ...]], tuple[Word, ...] | None]) -> None:
        """Apply late speaker labels to the open cue's words."""
        changed = relabel(tuple(self._words))
        if changed is not None:
            self._words = list(changed)

    def pending(self) -> Cue | None:
        """The open cue as it stands (for live partial captions)."""
        return self._cue(self._words, next_start=math.inf) if self._words else None

    def flush(self) -> list[Cue]:
        """Close the open cue (end of stream or of a speech region)."""
        return [self._close(next_start=math.inf)] if self._words else []

    def _breaks_before(self, word: Word) -> bool:
        rules, first, last = self.rules, self._words[0], self._words[-1]
        if word.speaker != last.speaker:
            return True
        if word.start - last.end >= rules.max_gap or word.end - first.start > rules.max_duration:
            return True
        if last.text.endswith(_SENTENCE_END) and last.end - first.start >= rules.min_duration:
            return True
        texts = [w.text for w in self._words] + [word.text]
        return wrap_lines(texts, rules.max_line_chars, rules.max_lines) is None

    def _close(self, next_start: float) -> Cue:
        cue = self._cue(self._words, next_start)
        self._words = []
        return cue

    def _cue(self, words: list[Word], next_start: float) -> Cue:
        rules = self.rules
        lines = wrap_lines([w.text for w in words], rules.max_line_chars, rules.max_lines)
        if lines is None:  # only reachable if rules changed mid-cue; fall back to one line
            lines = (" ".join(w.text for w in words),)
        start, end = words[0].start, max(w.end for w in words)
        end = max(end, min(start + rules.min_duration, next_start))
        return Cue(start=start, end=round(end, 3), lines=lines, words=tuple(words), speaker=words[0].speaker)


def layout_cues(words: Iterable[Word], rules: CueRules | None = None) -> list[Cue]:
    """All cues of a finished transcript."""
    builder = CueBuilder(rules)
    cues = [cue for word in words for cue in builder.add(word)]
    return cues + builder.flush()
