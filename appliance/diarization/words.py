"""Who said each word: attach speaker turns to recognised words (pure)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from appliance.subtitles.types import SpeakerTurn, Word

# ASR word timestamps are approximate (±0.2 s is common), so a word in a short
# gap between turns still belongs to the nearest one.
MAX_GAP = 0.5


def dominant_speaker(start: float, end: float, turns: Sequence[SpeakerTurn],
                     max_gap: float = MAX_GAP) -> str | None:
    """The speaker talking over most of [start, end].

    Overlapped speech: the one covering more of the span wins (ties: the first
    turn given). No turn overlaps: the nearest within `max_gap` seconds, else None.
    """
    end = max(end, start + 1e-6)  # a zero-length word: whoever talks at that instant
    best, best_overlap = None, 0.0
    nearest, nearest_gap = None, max_gap
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if overlap > best_overlap:
            best, best_overlap = turn.speaker, overlap
        elif overlap <= 0 and (nearest is None or -overlap < nearest_gap) and -overlap <= max_gap:
            nearest, nearest_gap = turn.speaker, -overlap
    return best if best is not None else nearest


def attach_speakers(words: Sequence[Word], turns: Sequence[SpeakerTurn],
                    max_gap: float = MAX_GAP) -> list[Word]:
    """Copies of `words` with `speaker` set from `turns` (None where nobody spoke near).

    Cost is words x turns: the cue assembler calls it per cue with the turns near it.
    """
    return [replace(w, speaker=dominant_speaker(w.start, w.end, turns, max_gap)) for w in words]
