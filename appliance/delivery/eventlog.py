"""A session's event log: sequence numbers, retention, and resume by seq.

Every published event gets the next seq. FINAL, SPEAKER_UPDATE and SESSION_STATE
events are retained (bounded by count) so a subscriber that reconnects with the last
seq it saw gets everything it missed; of PARTIALs only the latest is kept, since each
replaces the one before.
"""
from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from appliance.subtitles.events import EventKind, SubtitleEvent
from appliance.subtitles.types import Cue


class ResumeError(Exception):
    """`from_seq` cannot be honoured (events no longer retained, or not yet published)."""


class EventLog:
    def __init__(self, session_id: str, retained: int = 100_000, clock: Callable[[], float] = time.time):
        self.session_id = session_id
        self.clock = clock  # wall clock: clients compare `created` with their own receipt time
        # Names this log among the logs a session id has had (a daemon restart begins a new one
        # at seq 1): a client resuming by seq checks it, so it never resumes into another log.
        self.epoch = secrets.token_hex(6)
        self.last_seq = 0
        self.last_created = 0.0
        self._kept: deque[SubtitleEvent] = deque(maxlen=retained)
        self._partial: SubtitleEvent | None = None

    def publish(self, event: SubtitleEvent, language: str = "") -> SubtitleEvent:
        self.last_seq += 1
        # The wall clock may step back (NTP); `created` must not within a session.
        self.last_created = max(self.last_created, self.clock())
        event = replace(event, session_id=self.session_id, seq=self.last_seq, created=self.last_created,
                        language=language)
        if event.kind == EventKind.PARTIAL:
            self._partial = event
        else:
            self._kept.append(event)
        return event

    @property
    def first_retained(self) -> int:
        return self._kept[0].seq if self._kept else self.last_seq + 1

    def since(self, from_seq: int) -> list[SubtitleEvent]:
        """Retained events after `from_seq`, in order (the latest PARTIAL included if newer)."""
        if from_seq > self.last_seq:
            raise ResumeError(f"from_seq {from_seq} is ahead of this session (last seq {self.last_seq})")
        if from_seq and from_seq + 1 < self.first_retained and len(self._kept) == self._kept.maxlen:
            raise ResumeError(
                f"events after seq {from_seq} are no longer retained (oldest is {self.first_retained}); "
                "subscribe with from_seq=0 for everything retained"
            )
        events = [e for e in self._kept if e.seq > from_seq]
        if self._partial is not None and self._partial.seq > from_seq:
            events.append(self._partial)
            events.sort(key=lambda e: e.seq)
        return events

    def cues(self) -> list[Cue]:
        """The retained final cues, with later speaker updates applied (for export)."""
        cues: dict[str, Cue] = {}
        for event in self._kept:
            if event.kind == EventKind.FINAL:
                cues[event.cue_id] = Cue(event.start, event.end, event.lines, event.words, event.speaker)
            elif event.kind == EventKind.SPEAKER_UPDATE and event.cue_id in cues:
                cues[event.cue_id] = replace(cues[event.cue_id], speaker=event.speaker, words=event.words)
        return list(cues.values())

    @property
    def final_cues(self) -> int:
        return sum(1 for e in self._kept if e.kind == EventKind.FINAL)
