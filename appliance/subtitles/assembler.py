"""Live cue assembly: ASR decisions in, subtitle events out. Pure (no I/O, no clock).

Final words go through the same CueBuilder as files, so live cues obey the caption
rules. The open cue is re-sent as a PARTIAL on every change (its final words first,
then the tentative tail); a FINAL closes it for good. A speech-region end closes the
open cue, so a pause never leaves a caption hanging. Speaker labels that change after
a cue was closed produce a SPEAKER_UPDATE for that cue, never a new text.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from appliance.subtitles.events import EventKind, SubtitleEvent
from appliance.subtitles.layout import CueBuilder, CueRules, layout_cues
from appliance.subtitles.types import Cue, Decision, Word

RELABEL_CUES = 64  # closed cues kept for late speaker labels


def dominant_speaker(words: Sequence[Word]) -> str | None:
    """The speaker who says most of the cue (by duration), None if none is known."""
    talk: dict[str, float] = {}
    for w in words:
        if w.speaker:
            talk[w.speaker] = talk.get(w.speaker, 0.0) + max(w.end - w.start, 0.01)
    return max(talk, key=talk.__getitem__) if talk else None


class CueAssembler:
    def __init__(self, rules: CueRules | None = None):
        self.rules = rules or CueRules()
        self._builder = CueBuilder(self.rules)
        self._pending: list[Word] = []  # final words of the open cue
        self._next_id = 1
        self.cues: dict[str, Cue] = {}  # every closed cue, by id (for export and relabelling)
        self._showing = False  # a PARTIAL with words is on screen

    def update(self, decision: Decision) -> list[SubtitleEvent]:
        events = []
        for word in decision.final:
            for cue in self._builder.add(word):
                events.append(self._close(cue))
            self._pending.append(word)
        if decision.closed:
            events += [self._close(cue) for cue in self._builder.flush()]
        else:
            events += self._partials(decision.partial, decision.stability)
        return events

    def relabel(self, relabel: Callable[[tuple[Word, ...]], tuple[Word, ...] | None]) -> list[SubtitleEvent]:
        """Late speaker labels: closed cues whose speaker changes get a SPEAKER_UPDATE; text never changes."""
        events = []
        for cue_id, cue in self.cues.items():
            words = relabel(cue.words)
            if words is None:
                continue
            speaker = dominant_speaker(words)
            self.cues[cue_id] = replace(cue, words=words, speaker=speaker)
            if speaker != cue.speaker:
                events.append(SubtitleEvent(EventKind.SPEAKER_UPDATE, cue_id, speaker, cue.start, cue.end,
                                            cue.lines, words, final_words=len(words)))
        self._builder.relabel(relabel)
        pending = relabel(tuple(self._pending))
        if pending is not None:
            self._pending = list(pending)
        return events

    def finish(self) -> list[SubtitleEvent]:
        return [self._close(cue) for cue in self._builder.flush()]

    def _close(self, cue: Cue) -> SubtitleEvent:
        cue_id = f"c{self._next_id}"
        self._next_id += 1
        self._pending = self._pending[len(cue.words):]
        self._showing = False
        cue = replace(cue, speaker=dominant_speaker(cue.words) or cue.speaker)
        self.cues[cue_id] = cue
        while len(self.cues) > RELABEL_CUES:  # labels settle within seconds: old cues never change
            del self.cues[next(iter(self.cues))]
        return SubtitleEvent(EventKind.FINAL, cue_id, cue.speaker, cue.start, cue.end, cue.lines, cue.words,
                             final_words=len(cue.words))

    def _partials(self, tentative: list[Word], stability: float) -> list[SubtitleEvent]:
        """The open cue (and any cue the tentative words would spill into), as PARTIALs."""
        words = self._pending + tentative
        if not words:
            if not self._showing:
                return []
            self._showing = False  # the tentative words were revised away: clear the caption
            return [SubtitleEvent(EventKind.PARTIAL, f"c{self._next_id}", stability=stability)]
        self._showing = True
        events, final_left = [], len(self._pending)
        for offset, cue in enumerate(layout_cues(words, self.rules)):
            final = min(final_left, len(cue.words))
            final_left -= final
            events.append(SubtitleEvent(
                EventKind.PARTIAL, f"c{self._next_id + offset}", dominant_speaker(cue.words), cue.start, cue.end,
                cue.lines, cue.words, final_words=final, stability=1.0 if final == len(cue.words) else stability,
            ))
        return events
