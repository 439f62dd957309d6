"""Subtitle events as JSON and as Server-Sent Events messages (pure: no I/O)."""
from __future__ import annotations

import json

from appliance.subtitles.events import SubtitleEvent
from appliance.subtitles.types import Word


def word_to_json(word: Word) -> dict:
    return {"text": word.text, "start": word.start, "end": word.end, "probability": word.probability,
            "speaker": word.speaker or ""}


def event_to_json(event: SubtitleEvent) -> dict:
    """The fields of the gRPC SubtitleEvent, kinds and states as lower-case names."""
    return {
        "session_id": event.session_id,
        "seq": event.seq,
        "kind": str(event.kind),
        "cue_id": event.cue_id,
        "speaker": event.speaker or "",
        "start": event.start,
        "end": event.end,
        "text": event.text,
        "lines": list(event.lines),
        "words": [word_to_json(w) for w in event.words],
        "final_words": event.final_words,
        "stability": event.stability,
        "state": str(event.state) if event.state else "",
        "message": event.message,
        "created": event.created,  # wall clock, Unix seconds, at publication
        "language": event.language,
    }


def message(data: dict, *, event: str | None = None, id: int | None = None, retry_ms: int | None = None) -> bytes:
    """One SSE message. `data` is one line of JSON (json.dumps escapes newlines)."""
    head = ""
    if retry_ms is not None:
        head += f"retry: {retry_ms}\n"
    if id is not None:
        head += f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def subtitle_message(event: SubtitleEvent) -> bytes:
    """A subtitle event as SSE: `id:` is its seq (what Last-Event-ID resumes from), the default event type."""
    return message(event_to_json(event), id=event.seq)


def parse_stream(text: str) -> list[dict]:
    """SSE messages back to their fields ({'id', 'event', 'data'}), for clients and tests."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields.get(name, "") + ("\n" if name == "data" and name in fields else "") + value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            messages.append(fields)
    return messages
