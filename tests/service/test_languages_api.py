"""A pushed stream declares its model, language and task on its first AudioChunk."""
from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.service.client import Endpoint, chunks, transcribe
from tests.data.french import french_clip
from tests.service.conftest import serving


def french_chunks(session_id: str, **declared) -> list[pb.AudioChunk]:
    audio = chunks(encode_s16le(load_audio(french_clip()[0])[: 16000 * 12]), 16000, pb.PCM_S16LE, 1,
                   session_id=session_id)
    audio[0].MergeFrom(pb.AudioChunk(**declared))
    return audio


def test_a_french_room_on_whisper_base_beside_the_default_model(models):
    async def scenario():
        async with serving(models) as (daemon, address):
            endpoint = Endpoint(address)
            events = [e async for e in transcribe(endpoint, french_chunks("salle", model="whisper-base",
                                                                           language="fr"), realtime=False)]
            async with endpoint.channel() as channel:
                sessions = pb_grpc.SessionsStub(channel)
                info = await sessions.Get(pb.GetSessionRequest(session_id="salle"))
                export = await sessions.Export(pb.ExportRequest(session_id="salle", format=pb.JSON))
            return events, info, export, models.recognizers.loaded("whisper-base")

    events, info, export, loaded = asyncio.run(scenario())
    assert (info.model, info.language, info.task) == ("whisper-base", "fr", "transcribe") and loaded
    finals = [e for e in events if e.kind == pb.SubtitleEvent.FINAL]
    assert finals and all(e.language == "fr" for e in finals)
    assert json.loads(export.content)["language"] == "fr"
    assert any(ch in " ".join(e.text for e in finals) for ch in "éàè")


@pytest.mark.parametrize("declared, message", [
    ({"language": "xx"}, "unknown language 'xx'"),
    ({"language": "fr"}, "English-only model; it cannot do language 'fr'"),
    ({"task": "translate"}, "English-only model; it cannot translate"),
    ({"task": "summarise"}, "unknown task 'summarise'"),
    ({"model": "/etc"}, "unknown model '/etc'"),
    ({"model": "whisper-huge"}, "unknown model 'whisper-huge'"),
])
def test_a_room_asking_what_cannot_be_done_is_refused_at_its_first_chunk(models, declared, message):
    async def scenario():
        async with serving(models) as (daemon, address):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                [e async for e in transcribe(Endpoint(address), french_chunks("bad", **declared)[:1], realtime=False)]
            return refused.value, daemon.get("bad")

    error, session = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details(), error.details()
    assert session is None  # nothing was started
