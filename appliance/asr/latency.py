"""When each word was first shown: pairs final words with their earlier partial sightings.

Pure bookkeeping for latency measures (replay harness, metrics): a partial word is
the "same" word as a later one if the text matches and the start is within
`tolerance` seconds (successive decodes move timestamps a little).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.subtitles.text import normalize
from appliance.subtitles.types import Word


@dataclass
class _Sighting:
    key: str
    start: float
    first: float


class FirstShown:
    def __init__(self, tolerance: float = 0.5):
        self.tolerance = tolerance
        self._open: list[_Sighting] = []

    def _match(self, word: Word) -> _Sighting | None:
        key = normalize(word.text)
        for sighting in self._open:
            if sighting.key == key and abs(sighting.start - word.start) <= self.tolerance:
                return sighting
        return None

    def partial(self, words: list[Word], emitted: float) -> None:
        for word in words:
            sighting = self._match(word)
            if sighting is None:
                self._open.append(_Sighting(normalize(word.text), word.start, emitted))
            else:
                sighting.start = word.start

    def final(self, words: list[Word], emitted: float) -> list[float]:
        """For each final word, when it was first shown (as partial or now as final)."""
        shown = []
        for word in words:
            sighting = self._match(word)
            if sighting is not None:
                self._open.remove(sighting)
            shown.append(min(sighting.first, emitted) if sighting else emitted)
        # Sightings well before the newest final word will never be finalised: forget them.
        if words:
            horizon = words[-1].start - 5.0
            self._open = [s for s in self._open if s.start >= horizon]
        return shown


def word_latencies(
    shown: FirstShown, partial: list[Word], final: list[Word], emitted: float,
    capture_time: Callable[[float], float | None],
) -> list[tuple[float, float]]:
    """(partial, final) latency of each newly final word, per DESIGN.md §2.

    `emitted` is when the decision was sent; `capture_time(t)` when audio time t arrived.
    Words whose capture time is unknown (already out of the clock's horizon) are skipped.
    """
    shown.partial(partial, emitted)
    latencies = []
    for word, first in zip(final, shown.final(final, emitted)):
        captured = capture_time(word.end)
        if captured is not None:
            latencies.append((first - captured, emitted - captured))
    return latencies
