"""Speaker labels for live words: provisional at once, final when the diarizer settles them.

Pure bookkeeping between the streaming diarizer and the cue assembler. A word gets the
best current guess when it becomes final in ASR (so cues can break at speaker
changes without waiting); once the diarizer's final horizon passes the word, its
label is final, and words whose final label differs from the guess are reported so
their cue can announce a SPEAKER_UPDATE.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from appliance.diarization.streaming import StreamingUpdate
from appliance.diarization.words import attach_speakers
from appliance.subtitles.types import SpeakerTurn, Word


@dataclass
class Settled:
    words: list[Word] = field(default_factory=list)  # words whose label just became final (final label)
    changed: list[tuple[Word, Word]] = field(default_factory=list)  # (as labelled before, as final)


class SpeakerLabeler:
    def __init__(self) -> None:
        self.final_turns: list[SpeakerTurn] = []
        self._current: list[SpeakerTurn] = []  # open + tentative turns after the final horizon
        self.final_until = 0.0
        self._pending: list[Word] = []  # labelled provisionally, label not final yet

    def update(self, update: StreamingUpdate) -> Settled:
        """A diarizer step: record its turns, settle the pending words it now covers."""
        self.final_turns += update.final
        self._current = update.open + update.tentative
        self.final_until = max(self.final_until, update.final_until)
        settled = Settled()
        keep = []
        for word in self._pending:
            if word.end > self.final_until:
                keep.append(word)
                continue
            (final,) = attach_speakers([word], self._near(word))
            settled.words.append(final)
            if final.speaker != word.speaker:
                settled.changed.append((word, final))
        self._pending = keep
        # Turns long past every pending word are not needed any more.
        horizon = min([w.start for w in keep] + [self.final_until]) - 30.0
        self.final_turns = [t for t in self.final_turns if t.end >= horizon]
        return settled

    def label(self, words: list[Word], track: bool = True) -> tuple[list[Word], list[Word]]:
        """Words with their best current speaker; returns (labelled, those whose label is final).

        With `track`, words whose label is not final yet are remembered until it is
        (final ASR words); partial words are labelled without tracking.
        """
        labelled, final = [], []
        for word in words:
            (word,) = attach_speakers([word], self._near(word))
            labelled.append(word)
            if word.end <= self.final_until:
                final.append(word)
            elif track:
                self._pending.append(word)
        return labelled, final

    def _near(self, word: Word) -> list[SpeakerTurn]:
        turns = self.final_turns + self._current
        return [t for t in turns if t.end >= word.start - 1.0 and t.start <= word.end + 1.0]

    @staticmethod
    def same(a: Word, b: Word) -> bool:
        return (a.text, a.start, a.end) == (b.text, b.start, b.end)


def relabel(words: tuple[Word, ...], changed: list[tuple[Word, Word]]) -> tuple[Word, ...] | None:
    """`words` with the changed labels applied, or None if none of them is in `words`."""
    out, hit = list(words), False
    for i, word in enumerate(out):
        for before, after in changed:
            if SpeakerLabeler.same(word, before):
                out[i], hit = replace(word, speaker=after.speaker), True
    return tuple(out) if hit else None
