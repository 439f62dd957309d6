"""A session's transcript as a file (WebVTT, SRT, JSON, RTTM): what every face's export returns."""
from __future__ import annotations

from dataclasses import dataclass

from appliance.delivery.eventlog import EventLog
from appliance.subtitles.writers import CUE_WRITERS, to_rttm, turns_from_words

# format name -> media type; the names are the HTTP face's file extensions.
MEDIA_TYPES = {"vtt": "text/vtt", "srt": "application/x-subrip", "json": "application/json", "rttm": "text/plain"}


class NoSpeakerLabels(Exception):
    """RTTM asked of a session whose words carry no speaker."""


@dataclass(frozen=True)
class Export:
    content: str
    media_type: str


def export(log: EventLog, fmt: str, *, duration: float, language: str | None) -> Export:
    """The retained final cues (speaker updates applied) in `fmt`, one of MEDIA_TYPES."""
    cues = log.cues()
    if fmt == "rttm":
        turns = turns_from_words([w for cue in cues for w in cue.words])
        if not turns:
            raise NoSpeakerLabels(f"session {log.session_id!r} has no speaker labels "
                                  "(diarization off or no speech yet)")
        content = to_rttm(turns, log.session_id)
    else:
        content = CUE_WRITERS[fmt](cues, duration=duration, language=language)
    return Export(content, MEDIA_TYPES[fmt])
