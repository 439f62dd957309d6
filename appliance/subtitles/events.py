"""SubtitleEvent: what the pipeline tells subscribers (the domain side of the proto)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from appliance.subtitles.types import Word


class EventKind(StrEnum):
    PARTIAL = "partial"  # the open cue as it stands (its words may be final or tentative)
    FINAL = "final"  # a closed cue: immutable
    SPEAKER_UPDATE = "speaker_update"  # a final cue's speaker changed after the fact
    SESSION_STATE = "session_state"


class SessionState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    UNAVAILABLE = "unavailable"
    ENDED = "ended"


@dataclass(frozen=True)
class SubtitleEvent:
    kind: EventKind
    cue_id: str = ""
    speaker: str | None = None
    start: float = 0.0
    end: float = 0.0
    lines: tuple[str, ...] = ()
    words: tuple[Word, ...] = ()
    final_words: int = 0  # PARTIAL: how many leading words are already final
    stability: float = 1.0
    state: SessionState | None = None
    message: str = ""
    # Set by the event log when the event is published:
    session_id: str = ""
    seq: int = 0
    created: float = 0.0  # wall clock (Unix seconds) at publication, for clients measuring delay
    language: str = ""  # the room's language at publication ("" while it is still being detected)

    @property
    def text(self) -> str:
        return " ".join(self.lines)
