"""Live captions in a terminal: how `appliance subscribe` and `appliance demo` print events."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from google.protobuf import json_format

from appliance._generated.appliance.v1 import appliance_pb2 as pb

_COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]


def _timestamp(t: float) -> str:
    hours, rest = divmod(t, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"


class CaptionPrinter:
    """text: final cues as lines, partials redrawn in place on a terminal; vtt: WebVTT blocks; json: one event a line."""

    def __init__(self, fmt: str = "text", out: TextIO = sys.stdout, status: TextIO = sys.stderr):
        self.fmt = fmt
        self.out = out
        self.status = status
        self.tty = out.isatty()
        self._colours: dict[str, str] = {}
        if fmt == "vtt":
            print("WEBVTT\n", file=out, flush=True)

    def _label(self, speaker: str) -> str:
        if not speaker:
            return ""
        if not self.tty:
            return f"{speaker}: "
        colour = self._colours.setdefault(speaker, _COLOURS[len(self._colours) % len(_COLOURS)])
        return f"{colour}{speaker}\033[0m: "

    def __call__(self, event: pb.SubtitleEvent) -> None:
        out, kind = self.out, event.kind
        if self.fmt == "json":
            print(json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True)), file=out, flush=True)
        elif kind == pb.SubtitleEvent.FINAL and self.fmt == "vtt":
            voice = f"<v {event.speaker}>" if event.speaker else ""
            print(f"{_timestamp(event.start)} --> {_timestamp(event.end)}\n{voice}" + "\n".join(event.lines) + "\n",
                  file=out, flush=True)
        elif kind == pb.SubtitleEvent.FINAL:
            print(("\r\033[K" if self.tty else "") + self._label(event.speaker) + event.text, file=out, flush=True)
        elif kind == pb.SubtitleEvent.PARTIAL and self.fmt == "text" and event.text:
            if self.tty:  # redraw the forming caption in place, dimmed
                print(f"\r\033[K\033[2m{self._label(event.speaker)}{event.text}\033[0m", end="", file=out, flush=True)
            else:
                print(f"… {self._label(event.speaker)}{event.text}", file=out, flush=True)
        elif kind == pb.SubtitleEvent.SESSION_STATE and self.fmt == "text":
            message = f" - {event.message}" if event.message else ""
            print(f"[session {event.session_id}: {pb.SessionState.Name(event.state).lower()}{message}]",
                  file=self.status, flush=True)
