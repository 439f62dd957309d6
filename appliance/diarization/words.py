"""Who said each word: attach speaker turns to recognised words (pure)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from appliance.subtitles.types import SpeakerTurn, Word


def dominant_speaker(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker talking over most of [start, end]; None when nobody overlaps it.

    Overlapped speech: the one covering more of the span wins (ties: the earlier
    turn). A zero-length word takes whoever is talking at that instant.
    """
    best, best_overlap = None, 0.0
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if end == start and turn.start <= start <= turn.end:
            overlap = 1e-9
        if overlap > best_overlap:
            best, best_overlap = turn.speaker, overlap
    return best


def attach_speakers(words: Sequence[Word], turns: Sequence[SpeakerTurn]) -> list[Word]:
    """Copies of `words` with `speaker` set from `turns` (None where no turn overlaps).

    Per word the cost is the number of turns; a long transcript is attached in
    chunks by the caller (cue assembly does it per cue).
    """
    return [replace(w, speaker=dominant_speaker(w.start, w.end, turns)) for w in words]
