"""Speaker names: what a person calls a diarizer label ("S1" → "Alice"). Pure (no I/O, no clock).

The pipeline keeps working with the diarizer's labels; names are applied to events as they
are published. Naming a label re-publishes that speaker's past final cues as SPEAKER_UPDATEs
carrying the name, so a subscriber (live or resuming by seq) and every export see it.
"""
from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from dataclasses import replace

from appliance.subtitles.events import EventKind, SubtitleEvent

MAX_NAME_CHARACTERS = 64
_LABEL = re.compile(r"S\d+")  # the diarizer's own labels: a name that looks like one would mislead


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a speaker, or None. The message never repeats the name (names are
    personal data and error messages end up in logs)."""
    if not name.strip():
        return "the name is empty"
    if len(name) > MAX_NAME_CHARACTERS:
        return f"the name has {len(name)} characters; at most {MAX_NAME_CHARACTERS}"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "the name contains control characters"
    if name != name.strip():
        return "the name starts or ends with white space"
    if _LABEL.fullmatch(name):
        return "the name looks like a diarizer label (S1, S2, ...); choose another"
    return None


class SpeakerNames:
    """One session's names for its speaker labels, and the raw final cues needed to rename them.

    `apply` turns an event as the pipeline made it (labels) into the event as published
    (names); `rename` gives a label a name and returns the SPEAKER_UPDATEs of its past cues.
    At most `keep` cues are remembered (the event log's retention: older ones cannot be resent).
    """

    def __init__(self, keep: int = 100_000):
        self._names: dict[str, str] = {}
        self._cues: OrderedDict[str, SubtitleEvent] = OrderedDict()  # cue id -> latest, with labels
        self._keep = keep
        self.labels: set[str] = set()  # every label seen in an event

    def display(self, label: str | None) -> str | None:
        return self._names.get(label, label) if label else label

    @property
    def names(self) -> dict[str, str]:
        return dict(self._names)

    def resolve(self, speaker: str) -> str | None:
        """The label `speaker` designates: a label seen, or the name exactly one label carries."""
        if speaker in self.labels:
            return speaker
        holders = [label for label, name in self._names.items() if name == speaker]
        return holders[0] if len(holders) == 1 else None

    def apply(self, event: SubtitleEvent) -> SubtitleEvent:
        labels = {w.speaker for w in event.words if w.speaker} | ({event.speaker} if event.speaker else set())
        self.labels |= labels
        if event.kind in (EventKind.FINAL, EventKind.SPEAKER_UPDATE) and event.cue_id:
            self._cues[event.cue_id] = event
            self._cues.move_to_end(event.cue_id)
            while len(self._cues) > self._keep:
                self._cues.popitem(last=False)
        return self._named(event) if labels & self._names.keys() else event

    def rename(self, label: str, name: str) -> list[SubtitleEvent]:
        """Name `label` (empty `name`: back to the label); the SPEAKER_UPDATEs of its past cues
        whose shown speaker or words change."""
        before = {cue_id: self._named(cue) for cue_id, cue in self._cues.items()
                  if cue.speaker == label or any(w.speaker == label for w in cue.words)}
        if name and name != label:
            self._names[label] = name
        else:
            self._names.pop(label, None)
        updates = []
        for cue_id, shown in before.items():
            now = self._named(self._cues[cue_id])
            if (now.speaker, now.words) != (shown.speaker, shown.words):
                updates.append(replace(now, kind=EventKind.SPEAKER_UPDATE, final_words=len(now.words),
                                       stability=1.0, seq=0, session_id="", created=0.0))
        return updates

    def _named(self, event: SubtitleEvent) -> SubtitleEvent:
        return replace(event, speaker=self.display(event.speaker),
                       words=tuple(replace(w, speaker=self.display(w.speaker)) if w.speaker in self._names else w
                                   for w in event.words))
