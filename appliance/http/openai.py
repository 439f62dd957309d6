"""An OpenAI-compatible `POST /v1/audio/transcriptions`: what La Suite Meet's post-meeting summary
posts recordings to (a WhisperX-style server), and what the `openai` client's
`audio.transcriptions.create` sends.

Multipart fields: `file` (required), `model` (accepted, ignored: the box has its model),
`language`, `response_format` (json, text, srt, vtt, verbose_json, diarized_json),
`timestamp_granularities[]` (word, segment). The bearer token is the other routes'.
Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 a bad upload,
413 past http.transcription_max_bytes, 429 with Retry-After when http.transcription_queue files are
already in (counted: appliance_transcription_refused_total{reason="queue_full"}). The files in are
decoded one at a time by the FileTranscriber, below the live rooms' priority (transcription.py).
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Protocol

from aiohttp import BodyPartReader, web

from appliance.audio.decode import AudioInputError
from appliance.config import HttpConfig
from appliance.subtitles.layout import layout_cues
from appliance.subtitles.types import Cue, Word
from appliance.subtitles.writers import CUE_WRITERS
from appliance.transcription import FileTranscriber, ModelRefused, Transcript, TranscriptionFailed

log = logging.getLogger(__name__)

ROUTE = "/v1/audio/transcriptions"
METHOD = "transcriptions"  # the metric label of this endpoint's bad input
FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("word", "segment")
FIELD_LIMIT = 4096  # bytes of a text field
CHUNK = 1 << 16
RETRY_AFTER = 30  # seconds a refused client is told to wait: about one meeting recording's turn


class TooLarge(web.HTTPClientError):
    """413 with our own body (aiohttp's HTTPRequestEntityTooLarge writes its own text)."""

    status_code = 413


class Hooks(Protocol):
    def bad_input_seen(self, method: str, reason: str) -> None: ...

    def transcription_refused(self, reason: str) -> None: ...

    def transcription_files(self, count: int) -> None: ...


def _error(status: type[web.HTTPException], message: str, param: str | None = None, code: str | None = None,
           **headers: str) -> web.HTTPException:
    kind = "invalid_request_error" if status.status_code < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return status(text=json.dumps(body, ensure_ascii=False) + "\n", content_type="application/json",
                  headers=headers)


def speaker_names(words: list[Word]) -> dict[str, str]:
    """The box's labels as WhisperX's (SPEAKER_00, SPEAKER_01, ...), by first appearance."""
    names: dict[str, str] = {}
    for word in words:
        if word.speaker and word.speaker not in names:
            names[word.speaker] = f"SPEAKER_{len(names):02d}"
    return names


def _segment(index: int, cue: Cue) -> dict:
    return {"id": index, "seek": 0, "start": cue.start, "end": cue.end, "text": cue.text, "tokens": [],
            "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}


def render(transcript: Transcript, response_format: str, granularities: set[str]) -> web.Response:
    """The answer in `response_format`, shaped as OpenAI's (diarized_json as WhisperX's)."""
    words, cues = transcript.words, layout_cues(transcript.words)  # a cue is one speaker's, caption-sized
    text = " ".join(cue.text for cue in cues)
    if response_format == "text":
        return web.Response(text=text + "\n", content_type="text/plain", charset="utf-8")
    if response_format in ("srt", "vtt"):
        body = CUE_WRITERS[response_format](cues, duration=transcript.duration, language=transcript.language)
        return web.Response(text=body, content_type="text/vtt" if response_format == "vtt" else "application/x-subrip",
                            charset="utf-8")
    if response_format == "json":
        return web.json_response({"text": text})
    if response_format == "verbose_json":
        answer: dict = {"task": "transcribe", "language": transcript.language,
                        "duration": round(transcript.duration, 3), "text": text}
        if "segment" in granularities or not granularities:
            answer["segments"] = [_segment(i, cue) for i, cue in enumerate(cues)]
        if "word" in granularities:
            answer["words"] = [{"word": w.text, "start": w.start, "end": w.end} for w in words]
        return web.json_response(answer)
    names = speaker_names(words)
    segments = [{
        "id": f"seg_{index}", "type": "transcript.text.segment", "start": cue.start, "end": cue.end,
        "text": cue.text, "speaker": names.get(cue.speaker or "", None),
        "words": [{"word": w.text, "start": w.start, "end": w.end, "score": round(w.probability, 3),
                   "speaker": names.get(w.speaker or "", None)} for w in cue.words],
    } for index, cue in enumerate(cues)]
    return web.json_response({"task": "transcribe", "text": text, "language": transcript.language,
                              "duration": round(transcript.duration, 3), "segments": segments})


class TranscriptionEndpoint:
    def __init__(self, transcriber: FileTranscriber, config: HttpConfig, hooks: Hooks):
        self.transcriber = transcriber
        self.config = config
        self.hooks = hooks
        self.accepted = 0  # files in: the one being transcribed and those waiting

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([web.post(ROUTE, self.handle)])

    def _bad(self, status: type[web.HTTPException], message: str, param: str | None = None,
             **headers: str) -> web.HTTPException:
        self.hooks.bad_input_seen(METHOD, message)
        log.warning("%s refused: %s", ROUTE, message)
        return _error(status, message, param, **headers)

    async def handle(self, request: web.Request) -> web.Response:
        limit = self.config.transcription_max_bytes
        if request.content_length is not None and request.content_length > limit + (1 << 20):
            raise self._bad(TooLarge, f"the upload is {request.content_length} bytes; "
                            f"the limit is {limit} bytes (http.transcription_max_bytes)", "file")
        if not request.content_type.startswith("multipart/form-data"):
            raise self._bad(web.HTTPBadRequest, "send multipart/form-data with a 'file' field "
                            f"(got {request.content_type or 'no content type'})")
        if self.accepted >= self.config.transcription_queue:
            self.hooks.transcription_refused("queue_full")
            log.warning("%s refused: %d files in (http.transcription_queue)", ROUTE, self.accepted)
            raise _error(web.HTTPTooManyRequests, f"{self.accepted} files are already being transcribed or "
                         f"waiting (http.transcription_queue); retry in {RETRY_AFTER} s", code="queue_full",
                         **{"Retry-After": str(RETRY_AFTER)})
        self.accepted += 1
        self.hooks.transcription_files(self.accepted)
        try:
            with tempfile.TemporaryDirectory(prefix="appliance-upload-") as folder:
                fields, path = await self._read(request, Path(folder) / "upload", limit)
                return await self._transcribe(fields, path)
        finally:
            self.accepted -= 1
            self.hooks.transcription_files(self.accepted)

    async def _read(self, request: web.Request, path: Path, limit: int) -> tuple[dict[str, list[str]], Path]:
        fields: dict[str, list[str]] = {}
        got_file = False
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise self._bad(web.HTTPBadRequest, "nested multipart is not accepted")
                if part.name == "file":
                    size = 0
                    with path.open("wb") as out:
                        while chunk := await part.read_chunk(CHUNK):
                            size += len(chunk)
                            if size > limit:
                                raise self._bad(TooLarge, f"the file is over the limit of "
                                                f"{limit} bytes (http.transcription_max_bytes)", "file")
                            out.write(chunk)
                    got_file = True
                elif part.filename is not None:
                    raise self._bad(web.HTTPBadRequest, f"unexpected file field {str(part.name)[:40]!r}: send the "
                                    "recording as the multipart field 'file'", part.name)
                else:
                    value = await part.read(decode=True)
                    if len(value) > FIELD_LIMIT:
                        raise self._bad(web.HTTPBadRequest, f"field {str(part.name)[:40]!r} is too long", part.name)
                    fields.setdefault(part.name or "", []).append(value.decode("utf-8", "replace"))
        except ValueError as exc:  # a body that is not the multipart it says
            raise self._bad(web.HTTPBadRequest, f"malformed multipart body: {exc}") from None
        if not got_file:
            raise self._bad(web.HTTPBadRequest, "no 'file' field: send the recording as the multipart field "
                            "'file'", "file")
        if path.stat().st_size == 0:
            raise self._bad(web.HTTPBadRequest, "the file is empty", "file")
        return fields, path

    async def _transcribe(self, fields: dict[str, list[str]], path: Path) -> web.Response:
        response_format = (fields.get("response_format") or ["json"])[-1]
        if response_format not in FORMATS:
            raise self._bad(web.HTTPBadRequest, f"response_format must be one of {', '.join(FORMATS)}",
                            "response_format")
        granularities = set(fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", []))
        if not granularities <= set(GRANULARITIES):
            raise self._bad(web.HTTPBadRequest, "timestamp_granularities[] must be word or segment",
                            "timestamp_granularities[]")
        language = (fields.get("language") or [""])[-1].strip() or None
        if language is not None and not (language.isalpha() and 2 <= len(language) <= 3):
            raise self._bad(web.HTTPBadRequest, "language must be an ISO-639-1 code such as 'en' or 'fr'", "language")
        diarize = response_format == "diarized_json"
        if diarize and not self.transcriber.diarizes:
            raise _error(web.HTTPBadRequest, "diarized_json needs the diarization models (diarization.live = true)",
                         "response_format")
        language = language.lower() if language else None
        model = (fields.get("model") or [""])[-1].strip() or None
        try:
            transcript = await self.transcriber.run(path, model, language, diarize)
        except ModelRefused as exc:
            raise self._bad(web.HTTPBadRequest, str(exc), "model") from None
        except AudioInputError as exc:
            raise self._bad(web.HTTPBadRequest, str(exc).replace(str(path), "the file"), "file") from None
        except TranscriptionFailed as exc:
            log.error("%s failed: %s", ROUTE, exc)
            raise _error(web.HTTPServiceUnavailable, f"the file could not be transcribed ({exc}); retry later",
                         **{"Retry-After": str(RETRY_AFTER)}) from None
        return render(transcript, response_format, granularities)
