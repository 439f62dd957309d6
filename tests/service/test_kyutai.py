"""The Kyutai-compatible /api/asr-streaming with La Suite Meet's own client
(livekit-plugins-kyutai-lasuite, through livekit-agents' SpeechStream, real rtc.AudioFrames at
24 kHz, no LiveKit room), beside a gRPC push of the same audio; markers; bad input that closes
only its own connection."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import msgpack
import numpy as np
import pytest
import soxr
from lasuite.plugins import kyutai
from livekit import rtc
from livekit.agents import stt

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.http import sse
from appliance.evaluation import read_reference, word_error_rate
from appliance.service.client import Endpoint, chunks, transcribe
from appliance.subtitles.events import SessionState
from tests.service.conftest import serving

TOKEN = "meet-kyutai-key"
RATE = 24_000
STEP = 1920  # samples per message, as Meet's plugin sends (80 ms)


def frames_24k(sample: np.ndarray, silence_seconds: float) -> list[rtc.AudioFrame]:
    audio = np.concatenate([soxr.resample(sample, 16000, RATE), np.zeros(int(silence_seconds * RATE), np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    return [rtc.AudioFrame(pcm[i:i + 480].tobytes(), RATE, 1, len(pcm[i:i + 480]))  # 20 ms, as WebRTC's
            for i in range(0, len(pcm), 480)]


def audio_message(samples: np.ndarray) -> bytes:
    return msgpack.packb({"type": "Audio", "pcm": samples.astype(np.float32).tolist()}, use_single_float=True)


def new_session(daemon, before: set[str]):
    ids = [s for s in daemon.sessions if s not in before]
    return daemon.sessions[ids[0]] if ids else None


async def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := predicate()) in (None, False):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def export_json(address: str, session_id: str) -> dict:
    async with Endpoint(address, token_file=None).channel() as channel:
        response = await pb_grpc.SessionsStub(channel).Export(
            pb.ExportRequest(session_id=session_id, format=pb.JSON), metadata=(("authorization", f"Bearer {TOKEN}"),))
    return json.loads(response.content)


async def bad_client(url: str, messages: list[bytes | str], headers: dict) -> tuple[int | None, str]:
    """Connect, send `messages`, and return the close code and reason the server gives."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        for data in messages:
            await ws.send_str(data) if isinstance(data, str) else await ws.send_bytes(data)
        while True:
            message = await ws.receive(timeout=30)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code, str(message.extra or "")
            if message.type == aiohttp.WSMsgType.ERROR:
                return ws.close_code, str(message.data)


@pytest.fixture(scope="module")
def meet(models, sample, sample_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("kyutai") / "tokens"
    token_file.write_text(TOKEN + "\n")

    async def scenario():
        async with serving(models, token_file=token_file) as (daemon, address):
            url = f"ws://{daemon.http_address}/api/asr-streaming"
            endpoint = Endpoint(address, token_file=token_file)
            before = set(daemon.sessions)
            # The gRPC path first, alone: two flat-out pushes at once share decode batches, whose
            # padded windows and batched int8 products move a word or two of each (the comparison
            # is of the two paths, not of batching). It pushes the very bytes the plugin sends (24 kHz
            # s16, the same trailing silence): Whisper's words flip on perturbations as small as a
            # resampler's, so only the same audio tells the paths apart.
            frames = frames_24k(sample, silence_seconds=3.0)
            grpc_events = await _collect(transcribe(
                endpoint, chunks(b"".join(bytes(f.data) for f in frames), RATE, pb.PCM_S16LE, 1,
                                 session_id="grpc-room"), realtime=False))
            async with aiohttp.ClientSession() as http:
                plugin = kyutai.STT(api_key=TOKEN, base_url=url, http_session=http)
                stream = plugin.stream()
                events: list[stt.SpeechEvent] = []

                async def consume():
                    async for event in stream:
                        events.append(event)

                consumer = asyncio.create_task(consume())
                for frame in frames:
                    stream.push_frame(frame)
                session = await wait_for(lambda: new_session(daemon, before | {"grpc-room"}), what="the session")
                follower = asyncio.create_task(_follow_sse(daemon.http_address, session.session_id))
                # Meanwhile, clients that misbehave: each is closed alone, with its code.
                silence = np.zeros(STEP, np.float32)
                bad = await asyncio.gather(
                    bad_client(url, [], {"kyutai-api-key": "wrong"}),
                    bad_client(url, [], {}),
                    bad_client(url, [b"\xc1\x00not msgpack"], {"kyutai-api-key": TOKEN}),
                    bad_client(url, [msgpack.packb({"type": "Text", "text": "hi"})], {"kyutai-api-key": TOKEN}),
                    bad_client(url, [audio_message(np.full(STEP, np.nan, np.float32))], {"kyutai-api-key": TOKEN}),
                    bad_client(url, [audio_message(np.zeros(200_000, np.float32))], {"kyutai-api-key": TOKEN}),
                    bad_client(url, [audio_message(silence), "text frame"], {"kyutai-api-key": TOKEN}),
                )
                total = len(frames) * 480 / RATE

                def settled() -> bool:
                    p = session.pipeline
                    words = sum(len(c.words) for c in session.log.cues())
                    finals = sum(1 for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT)
                    return (p.audio_seconds >= total - 0.1 and p.busy_since is None
                            and p.asr.settled_seconds >= p.audio_seconds - 0.1 and words > 0 and finals == words)

                await wait_for(settled, timeout=120, what="the plugin's words")
                await stream.aclose()
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
            await wait_for(lambda: session.state == SessionState.ENDED, what="the Kyutai session's end")
            followed = await follower
            kyutai_export = await export_json(address, session.session_id)
            grpc_export = await export_json(address, "grpc-room")
            marker = await _marker_scenario(url + "?session=marker-room", sample)
            await wait_for(lambda: daemon.sessions["marker-room"].state == SessionState.ENDED, what="marker-room's end")
            marker += (await export_json(address, "marker-room"),)
            metrics = daemon.metrics.registry
            counts = {
                "auth": metrics.get_sample_value("appliance_auth_failures_total", {"grpc_method": "asr-streaming"}),
                "bad": metrics.get_sample_value("appliance_bad_input_total", {"grpc_method": "asr-streaming"}),
            }
            return events, kyutai_export, grpc_export, grpc_events, bad, marker, counts, followed

    return asyncio.run(scenario())


async def _follow_sse(http_address: str, session_id: str) -> list[dict]:
    """The room screen's view of the Kyutai connection: its SSE events to the end."""
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{http_address}/events/{session_id}", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 200
        return [m for m in sse.parse_stream((await response.read()).decode()) if "event" not in m]


async def _collect(stream) -> list:
    return [event async for event in stream]


async def _marker_scenario(url: str, sample: np.ndarray) -> tuple[list[dict], float]:
    """15 s of the sample (speech from 7.6 s), a Marker, then silence until the Marker comes back (as Kyutai's clients do)."""
    audio = soxr.resample(sample[: 15 * 16000], 16000, RATE).astype(np.float32)
    received: list[dict] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers={"kyutai-api-key": TOKEN}) as ws:
        for i in range(0, len(audio), STEP):
            await ws.send_bytes(audio_message(audio[i:i + STEP]))
        await ws.send_bytes(msgpack.packb({"type": "Marker", "id": 42}))

        async def silence():
            while True:
                await ws.send_bytes(audio_message(np.zeros(STEP, np.float32)))
                await asyncio.sleep(0.02)

        padding = asyncio.create_task(silence())
        try:
            async with asyncio.timeout(60):
                while not received or received[-1]["type"] != "Marker":
                    message = await ws.receive()
                    assert message.type == aiohttp.WSMsgType.BINARY, message
                    received.append(msgpack.unpackb(message.data))
        finally:
            padding.cancel()
    return received, len(audio) / RATE


def test_plugin_final_words_match_the_session_export(meet):
    events, kyutai_export, *_ = meet
    finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    exported = [w for segment in kyutai_export["segments"] for w in segment["words"]]
    assert len(exported) > 20
    assert [e.alternatives[0].text for e in finals] == [w["text"] for w in exported]
    assert [e.alternatives[0].start_time for e in finals] == pytest.approx([w["start"] for w in exported])


def test_plugin_wer_is_the_grpc_paths(meet, sample_dir):
    events, kyutai_export, grpc_export, grpc_events, *_ = meet
    reference = read_reference(sample_dir / "sample.stm")
    kyutai_text = " ".join(e.alternatives[0].text for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT)
    grpc_text = " ".join(e.text for e in grpc_events if e.kind == pb.SubtitleEvent.FINAL)
    kyutai_wer, grpc_wer = word_error_rate(reference, kyutai_text), word_error_rate(reference, grpc_text)
    print(f"WER kyutai plugin {kyutai_wer:.4f}, gRPC push {grpc_wer:.4f}")
    assert kyutai_wer <= grpc_wer + 0.02


def test_the_connection_is_a_session_with_speaker_labels(meet):
    _, kyutai_export, grpc_export, *_ = meet
    followed = [m["data"] for m in meet[7] if m["data"]["kind"] == "final"]
    assert [e["text"] for e in followed] == [s["text"] for s in kyutai_export["segments"]]
    assert len({e["speaker"] for e in followed} - {None, ""}) >= 1
    speakers = {w.get("speaker") for s in kyutai_export["segments"] for w in s["words"]} - {None}
    grpc_speakers = {w.get("speaker") for s in grpc_export["segments"] for w in s["words"]} - {None}
    assert len(speakers) >= min(2, len(grpc_speakers)) >= 1


def test_bad_input_closes_only_its_connection_with_a_code(meet):
    bad, counts = meet[4], meet[6]
    codes = [code for code, _ in bad]
    assert codes == [1008, 1008, 1007, 1003, 1007, 1009, 1003]
    assert "kyutai-api-key" in bad[0][1] and "kyutai-api-key" in bad[1][1]
    assert "msgpack" in bad[2][1] and "Text" in bad[3][1] and "NaN" in bad[4][1]
    assert counts == {"auth": 2.0, "bad": 5.0}


def test_marker_comes_back_after_the_words_before_it(meet):
    received, marked_at, marker_export = meet[5]
    assert received[0] == {"type": "Ready"}
    assert received[-1] == {"type": "Marker", "id": 42}
    words = [m for m in received if m["type"] == "Word"]
    ends = [m for m in received if m["type"] == "EndWord"]
    assert len(words) == len(ends) > 3
    assert all(b["stop_time"] >= a["start_time"] for a, b in zip(words, ends))
    # Every word of the audio before the marker came before it (the session's own record).
    before = [w["text"] for s in marker_export["segments"] for w in s["words"] if w["end"] <= marked_at]
    assert [m["text"] for m in words][:len(before)] == before
