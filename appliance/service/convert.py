"""Domain types ⇄ protobuf: the one place the generated code meets the pipeline."""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from appliance._generated.appliance.v1 import appliance_pb2 as pb
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
    )


class EncodedEvents:
    """Each event's wire bytes, encoded once however many subscribers it goes to.

    Keyed by the event object (the one the event log published, shared by every
    subscriber's queue); the most recent `size` are kept, which covers one event's
    whole fan-out even with several sessions publishing.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._recent: dict[int, tuple[SubtitleEvent, bytes]] = {}  # id(event) -> (event, bytes)

    def __call__(self, event: SubtitleEvent) -> bytes:
        hit = self._recent.get(id(event))
        if hit is not None and hit[0] is event:  # the same object, not a later one at a reused id
            return hit[1]
        data = event_to_pb(event).SerializeToString()
        self._recent[id(event)] = (event, data)
        if len(self._recent) > self.size:
            del self._recent[next(iter(self._recent))]  # the oldest (dicts keep insertion order)
        return data


def state_to_pb(state: SessionState) -> int:
    return _STATES[state]


def word_from_pb(word: pb.Word) -> Word:
    return Word(word.text, word.start, word.end, word.probability, word.speaker or None)
