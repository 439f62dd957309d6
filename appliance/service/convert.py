"""Domain types ⇄ protobuf: the one place the generated code meets the pipeline."""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance.delivery.encoding import EncodedOnce
from appliance.subtitles.events import EventKind, SessionState, SubtitleEvent
from appliance.subtitles.types import Word

_KINDS = {
    EventKind.PARTIAL: pb.SubtitleEvent.PARTIAL,
    EventKind.FINAL: pb.SubtitleEvent.FINAL,
    EventKind.SPEAKER_UPDATE: pb.SubtitleEvent.SPEAKER_UPDATE,
    EventKind.SESSION_STATE: pb.SubtitleEvent.SESSION_STATE,
}
_STATES = {
    SessionState.STARTING: pb.STARTING,
    SessionState.RUNNING: pb.RUNNING,
    SessionState.UNAVAILABLE: pb.UNAVAILABLE,
    SessionState.ENDED: pb.ENDED,
}


def word_to_pb(word: Word) -> pb.Word:
    return pb.Word(text=word.text, start=word.start, end=word.end, probability=word.probability,
                   speaker=word.speaker or "")


def event_to_pb(event: SubtitleEvent) -> pb.SubtitleEvent:
    created = Timestamp()
    created.FromNanoseconds(round(event.created * 1e9))
    return pb.SubtitleEvent(
        session_id=event.session_id,
        seq=event.seq,
        kind=_KINDS[event.kind],
        cue_id=event.cue_id,
        speaker=event.speaker or "",
        start=event.start,
        end=event.end,
        text=event.text,
        lines=event.lines,
        words=[word_to_pb(w) for w in event.words],
        stability=event.stability,
        state=_STATES[event.state] if event.state else pb.SESSION_STATE_UNSPECIFIED,
        message=event.message,
        final_words=event.final_words,
        created=created,
        language=event.language,
    )


class EncodedEvents(EncodedOnce):
    """Each event's protobuf bytes, serialised once however many subscribers it goes to."""

    def __init__(self, size: int = 256):
        super().__init__(lambda event: event_to_pb(event).SerializeToString(), size)


def state_to_pb(state: SessionState) -> int:
    return _STATES[state]


def word_from_pb(word: pb.Word) -> Word:
    return Word(word.text, word.start, word.end, word.probability, word.speaker or None)
