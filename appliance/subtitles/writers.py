"""Transcript writers: WebVTT, SRT, JSON, plain text and RTTM, from cues."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from appliance.subtitles.types import Cue, SpeakerTurn, Word


def _timestamp(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_webvtt(cues: Sequence[Cue], **_: object) -> str:
    blocks = ["WEBVTT"]
    for cue in cues:
        lines = list(cue.lines)
        if cue.speaker:  # WebVTT voice span: players can style or show the speaker
            lines[0] = f"<v {cue.speaker}>{lines[0]}"
        timing = f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}"
        blocks.append("\n".join([timing, *lines]))
    return "\n\n".join(blocks) + "\n"


def to_srt(cues: Sequence[Cue], **_: object) -> str:
    blocks = []
    for index, cue in enumerate(cues, start=1):
        lines = list(cue.lines)
        if cue.speaker:
            lines[0] = f"{cue.speaker}: {lines[0]}"
        timing = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append("\n".join([str(index), timing, *lines]))
    return "\n\n".join(blocks) + "\n"


def to_json(cues: Sequence[Cue], *, duration: float, language: str | None, **_: object) -> str:
    document = {
        "duration": round(duration, 3),
        "language": language,
        "segments": [
            {
                "start": cue.start,
                "end": cue.end,
                "speaker": cue.speaker,
                "text": cue.text,
                "words": [
                    {"start": w.start, "end": w.end, "text": w.text, "probability": w.probability}
                    | ({"speaker": w.speaker} if w.speaker else {})
                    for w in cue.words
                ],
            }
            for cue in cues
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_text(cues: Sequence[Cue], **_: object) -> str:
    return "".join(f"{cue.speaker}: {cue.text}\n" if cue.speaker else f"{cue.text}\n" for cue in cues)


def to_rttm(turns: Sequence[SpeakerTurn], uri: str) -> str:
    """NIST RTTM speaker turns (what diarization scorers read). RTTM fields are separated by white
    space, so a speaker's name ("Ada Lovelace") is written with underscores ("Ada_Lovelace")."""
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {'_'.join(t.speaker.split())} <NA> <NA>\n"
        for t in turns
    )


CUE_WRITERS: dict[str, Callable[..., str]] = {
    "vtt": to_webvtt,
    "srt": to_srt,
    "json": to_json,
    "txt": to_text,
}


def turns_from_words(words: Sequence[Word], max_gap: float = 1.0) -> list[SpeakerTurn]:
    """Speaker turns from attributed words: consecutive words of one speaker, pauses under max_gap."""
    turns: list[SpeakerTurn] = []
    for w in words:
        if not w.speaker:
            continue
        last = turns[-1] if turns else None
        if last and last.speaker == w.speaker and w.start - last.end <= max_gap:
            turns[-1] = SpeakerTurn(last.start, max(last.end, w.end), w.speaker)
        else:
            turns.append(SpeakerTurn(w.start, w.end, w.speaker))
    return turns
