"""A LiveKit Agents STT plugin over the box's gRPC `Transcribe` (`pip install appliance[livekit]`).

For agents that want what the Kyutai protocol drops: interim results, speaker labels and word
timings. One `stream()` is one pushed session on the box (a participant's track), so the room
screen and other subscribers follow it too:

    from appliance.integrations.livekit import STT
    stt = STT(address="box:50051", token="...", ca="/etc/appliance/ca.pem")
    stream = stt.stream()          # then stream.push_frame(rtc.AudioFrame), async for event in stream

Events: a PARTIAL cue → INTERIM_TRANSCRIPT (its text, speaker, words); a FINAL cue →
FINAL_TRANSCRIPT with `speaker_id` and timed words (one cue is one speaker's); START_OF_SPEECH
before a cue's first words, END_OF_SPEECH after its FINAL.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, APIStatusError, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc

SAMPLE_RATE = 16_000  # what the box decodes at: frames are resampled to it before they leave
_streams = itertools.count(1)


class STT(stt.STT):
    def __init__(self, *, address: str = "127.0.0.1:50051", token: str | None = None, ca: str | Path | None = None,
                 session_prefix: str | None = None, language: str = "en"):
        """`token`: a bearer token of the box (else APPLIANCE_TOKEN); `ca`: the box's CA (or
        self-signed certificate) for TLS; `session_prefix`: session ids are `<prefix>-<n>`
        (else the box names them `push-<n>`)."""
        super().__init__(capabilities=stt.STTCapabilities(
            streaming=True, interim_results=True, diarization=True, aligned_transcript="word",
            offline_recognize=False))
        self.address = address
        self.token = token or os.environ.get("APPLIANCE_TOKEN")
        self.ca = Path(ca).read_bytes() if ca else None
        self.session_prefix = session_prefix
        self.language = language

    @property
    def provider(self) -> str:
        return "appliance"

    def channel(self) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(self.ca))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def _recognize_impl(self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN,
                              conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> stt.SpeechEvent:
        raise NotImplementedError("the appliance STT streams; use stream() (files: POST /v1/audio/transcriptions)")

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SpeechStream:
        session_id = f"{self.session_prefix}-{next(_streams)}" if self.session_prefix else ""
        return SpeechStream(stt=self, conn_options=conn_options, session_id=session_id)


def _words(event: pb.SubtitleEvent, language: str) -> stt.SpeechData:
    words = [TimedString(w.text, start_time=w.start, end_time=w.end, confidence=w.probability,
                         speaker_id=w.speaker or event.speaker or None) for w in event.words]  # else its cue's
    confidence = sum(w.probability for w in event.words) / len(event.words) if event.words else 0.0
    text = event.text or " ".join(w.text for w in event.words)  # a forming cue not laid out into lines yet
    return stt.SpeechData(language=event.language or language, text=text, start_time=event.start, end_time=event.end,
                          confidence=confidence, speaker_id=event.speaker or None, words=words)


class Events:
    """Box events → SpeechEvents (pure; one per stream)."""

    def __init__(self, language: str, request_id: str = ""):
        self.language = language
        self.request_id = request_id
        self.speaking = False

    def __call__(self, event: pb.SubtitleEvent) -> list[stt.SpeechEvent]:
        out = []
        if event.kind == pb.SubtitleEvent.PARTIAL and event.words:
            if not self.speaking:
                self.speaking = True
                out.append(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH, self.request_id))
            out.append(stt.SpeechEvent(stt.SpeechEventType.INTERIM_TRANSCRIPT, self.request_id,
                                       [_words(event, self.language)]))
        elif event.kind == pb.SubtitleEvent.FINAL and event.words:
            if not self.speaking:
                out.append(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH, self.request_id))
            self.speaking = False
            out.append(stt.SpeechEvent(stt.SpeechEventType.FINAL_TRANSCRIPT, self.request_id,
                                       [_words(event, self.language)]))
            out.append(stt.SpeechEvent(stt.SpeechEventType.END_OF_SPEECH, self.request_id))
        return out


class SpeechStream(stt.RecognizeStream):
    def __init__(self, *, stt: STT, conn_options: APIConnectOptions, session_id: str):
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._appliance = stt
        self._session_id = session_id

    async def _chunks(self) -> AsyncIterator[pb.AudioChunk]:
        first = True
        async for data in self._input_ch:
            if isinstance(data, rtc.AudioFrame):  # flush sentinels: the box settles words on its own
                chunk = pb.AudioChunk(data=bytes(data.data))
                if first:  # the first chunk declares the format (the box downmixes)
                    chunk.MergeFrom(pb.AudioChunk(session_id=self._session_id, sample_rate=data.sample_rate,
                                                  encoding=pb.PCM_S16LE, channels=data.num_channels))
                    first = False
                yield chunk

    async def _run(self) -> None:
        events = Events(self._appliance.language, self._session_id)
        try:
            async with self._appliance.channel() as channel:
                call = pb_grpc.SubtitlesStub(channel).Transcribe(self._chunks(), metadata=self._appliance.metadata())
                async for event in call:
                    if event.kind == pb.SubtitleEvent.SESSION_STATE and not events.request_id:
                        events.request_id = event.session_id  # the box's name for this stream
                    for speech in events(event):
                        self._event_ch.send_nowait(speech)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise APIConnectionError(f"appliance at {self._appliance.address}: {exc.details()}") from exc
            raise APIStatusError(f"appliance: {exc.code().name}: {exc.details()}", status_code=exc.code().value[0],
                                 retryable=False) from exc
