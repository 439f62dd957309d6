"""The upload queue of POST /v1/audio/transcriptions holds its bound while a live room runs.

The in-process daemon on loopback (its real HTTP face, gRPC server and transcription worker
process), with http.transcription_queue = 2. A live room pushes the sample at real-time pace over
gRPC `Transcribe` the whole time. Two uploads hold the queue (their bodies stall until released);
three more sent at once are each refused with 429, Retry-After and code queue_full, and counted
in appliance_transcription_refused_total; the two held ones, released, complete with the right
transcript; once they are out an upload is accepted again; and the room's captions came through.
And a worker killed mid-file: that request is a 503, the next upload gets a fresh worker.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance.config import HttpConfig
from appliance.evaluation import read_reference, word_error_rate
from appliance.service.client import Endpoint, chunks, transcribe
from tests.service.conftest import serving
from tests.service.test_openai import AUTH, TOKEN, held_upload, meet_form

BOUND = 2
EXTRA = 3  # uploads sent at once while the queue is full


async def until(condition, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def queued(models, sample, sample_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("queue") / "tokens"
    token_file.write_text(TOKEN + "\n")
    wav = (sample_dir / "sample.wav").read_bytes()
    http_config = HttpConfig(listen="127.0.0.1:0", transcription_queue=BOUND)

    async def scenario():
        async with serving(models, http=http_config, token_file=token_file) as (daemon, address):
            registry = daemon.metrics.registry
            url = f"http://{daemon.http_address}/v1/audio/transcriptions"
            pcm = (np.clip(sample, -1, 1) * 32767).astype("<i2").tobytes()
            room = asyncio.create_task(_collect(transcribe(
                Endpoint(address, token_file=token_file),
                chunks(pcm, 16000, pb.PCM_S16LE, 1, session_id="live-room"), realtime=True)))
            results: dict = {}
            async with aiohttp.ClientSession() as http:
                release = asyncio.Event()
                fields = {"response_format": "verbose_json", "language": "en"}
                held = [asyncio.create_task(held_upload(http, url, wav, release, fields))
                        for _ in range(BOUND)]
                await until(lambda: registry.get_sample_value("appliance_transcription_files") == BOUND,
                            "the held uploads to be in")

                async def extra() -> tuple[int, str | None, dict]:
                    async with http.post(url, data=meet_form(wav, "json"), headers=AUTH) as response:
                        return response.status, response.headers.get("Retry-After"), await response.json()

                results["refused"] = await asyncio.gather(*(extra() for _ in range(EXTRA)))
                results["refused_count"] = registry.get_sample_value(
                    "appliance_transcription_refused_total", {"reason": "queue_full"})
                results["in_while_full"] = registry.get_sample_value("appliance_transcription_files")
                release.set()
                results["held"] = [(status, json.loads(body)) for status, body in await asyncio.gather(*held)]
                results["room_running_after_files"] = not room.done()
                async with http.post(url, data=meet_form(wav, "json"), headers=AUTH) as response:
                    results["after"] = (response.status, await response.json())
            results["room"] = await room
            results["refused_total"] = registry.get_sample_value(
                "appliance_transcription_refused_total", {"reason": "queue_full"})
            results["files_at_end"] = registry.get_sample_value("appliance_transcription_files")
            return results

    return asyncio.run(scenario())


async def _collect(stream) -> list:
    return [event async for event in stream]


def test_uploads_past_the_bound_are_refused_clearly_and_counted(queued):
    assert len(queued["refused"]) == EXTRA
    for status, retry_after, body in queued["refused"]:
        assert status == 429 and retry_after == "30"
        assert body["error"]["code"] == "queue_full" and "http.transcription_queue" in body["error"]["message"]
    assert queued["refused_count"] == EXTRA and queued["refused_total"] == EXTRA
    assert queued["in_while_full"] == BOUND  # the refused never counted as in


def test_the_accepted_uploads_complete_with_the_right_transcript(queued, sample_dir):
    reference = read_reference(sample_dir / "sample.stm")
    assert [status for status, _ in queued["held"]] == [200] * BOUND
    for _, answer in queued["held"]:
        assert answer["duration"] == pytest.approx(30.0, abs=0.1) and answer["segments"]
        assert word_error_rate(reference, answer["text"]) < 0.35  # offline tiny.en int8, margin for CPU spread
    status, answer = queued["after"]
    assert status == 200 and word_error_rate(reference, answer["text"]) < 0.35  # the bound frees with them
    assert queued["files_at_end"] == 0


def test_the_live_room_kept_its_captions_meanwhile(queued, sample_dir):
    finals = [w.text for e in queued["room"] if e.kind == pb.SubtitleEvent.FINAL for w in e.words]
    assert len(finals) > 40
    wer = word_error_rate(read_reference(sample_dir / "sample.stm"), " ".join(finals))
    print(f"live room WER beside the uploads {wer:.3f}")
    assert wer < 0.35  # the streaming path on the sample: 0.14-0.17 (README), margin for CPU spread


def test_a_worker_killed_mid_file_is_a_503_and_the_next_upload_gets_a_new_one(models, sample, sample_dir):
    """The transcription worker dies (killed, as the OOM killer would) while it decodes a file:
    that request gets 503 with Retry-After, the daemon and its live rooms go on, and the next
    upload starts a fresh worker and succeeds."""
    import io
    import multiprocessing
    import os
    import signal
    import wave

    long = np.tile(sample, 4)  # 2 minutes: still decoding when the worker is killed
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(long, -1, 1) * 32767).astype("<i2").tobytes())
    long_wav, wav = buffer.getvalue(), (sample_dir / "sample.wav").read_bytes()

    async def scenario():
        async with serving(models) as (daemon, _):
            url = f"http://{daemon.http_address}/v1/audio/transcriptions"
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data=meet_form(wav, "json")) as response:  # starts the worker
                    assert response.status == 200
                (worker,) = [p for p in multiprocessing.active_children() if p.name == "appliance-transcription"]

                async def doomed():
                    async with http.post(url, data=meet_form(long_wav, "json")) as response:
                        return response.status, response.headers.get("Retry-After"), await response.json()

                pending = asyncio.create_task(doomed())
                await asyncio.sleep(3.0)  # the upload is in and its decoding has begun
                assert not pending.done()
                os.kill(worker.pid, signal.SIGKILL)
                killed = await pending
                async with http.post(url, data=meet_form(wav, "json")) as response:
                    after = response.status, await response.json()
                fresh = [p.pid for p in multiprocessing.active_children() if p.name == "appliance-transcription"]
            return killed, after, worker.pid, fresh

    (status, retry_after, body), (after_status, after_body), old_pid, new_pids = asyncio.run(scenario())
    assert status == 503 and retry_after == "30" and "retry later" in body["error"]["message"]
    assert after_status == 200
    reference = read_reference(sample_dir / "sample.stm")
    assert word_error_rate(reference, after_body["text"]) < 0.35
    assert len(new_pids) == 1 and new_pids[0] != old_pid
