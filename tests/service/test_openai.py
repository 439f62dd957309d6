"""The OpenAI-compatible POST /v1/audio/transcriptions against the in-process daemon on loopback:
La Suite Meet's summary request (multipart, diarized_json), the `openai` client, the other
response formats, and bad uploads (4xx, counted), the size limit (413) and the bounded queue (429)."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from appliance.config import HttpConfig
from appliance.evaluation import read_reference, word_error_rate
from tests.service.conftest import serving

TOKEN = "meet-summary-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 1_500_000  # bytes: the sample (0.96 MB) fits, 2 MB does not


def meet_form(wav: bytes, response_format: str = "diarized_json", field: str = "file") -> aiohttp.FormData:
    """What Meet's summary worker posts (a WhisperX-style server's fields)."""
    form = aiohttp.FormData()
    form.add_field(field, wav, filename="recording.wav", content_type="audio/wav")
    form.add_field("model", "whisperx")
    form.add_field("language", "en")
    form.add_field("response_format", response_format)
    form.add_field("timestamp_granularities[]", "word")
    form.add_field("timestamp_granularities[]", "segment")
    return form


async def held_upload(http: aiohttp.ClientSession, url: str, wav: bytes, release: asyncio.Event,
                      fields: dict[str, str]) -> tuple[int, bytes]:
    """A multipart upload whose body stalls after its first bytes until `release`: it holds a place
    in the transcription queue. `fields`: the form fields after the file. (status, response body)."""
    boundary = "held-upload"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"held.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    tail = "".join(f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}"
                   for name, value in fields.items()) + f"\r\n--{boundary}--\r\n"

    async def body():
        yield head + wav[:1000]
        await release.wait()
        yield wav[1000:] + tail.encode()

    async with http.post(url, data=body(), headers=AUTH | {
            "Content-Type": f"multipart/form-data; boundary={boundary}"}) as response:
        return response.status, await response.read()


@pytest.fixture(scope="module")
def summary(models, sample_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("openai") / "tokens"
    token_file.write_text(TOKEN + "\n")
    wav = (sample_dir / "sample.wav").read_bytes()
    http_config = HttpConfig(listen="127.0.0.1:0", transcription_max_bytes=LIMIT, transcription_queue=1)

    async def scenario():
        async with serving(models, http=http_config, token_file=token_file) as (daemon, _):
            base = f"http://{daemon.http_address}"
            url = f"{base}/v1/audio/transcriptions"
            results: dict = {}
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data=meet_form(wav), headers=AUTH) as response:
                    results["meet"] = (response.status, await response.json())
                async with http.post(url, data=meet_form(wav, "srt"), headers=AUTH) as response:
                    results["srt"] = (response.status, await response.text())
                bad = {}
                for name, form, headers in [
                    ("no token", meet_form(wav), {}),
                    ("not audio", meet_form(b"this is not a recording\n" * 100), AUTH),
                    ("empty", meet_form(b""), AUTH),
                    ("wrong field", meet_form(wav, field="audio"), AUTH),
                    ("bad format", meet_form(wav, "docx"), AUTH),
                    ("too big", meet_form(b"\0" * 2_000_000), AUTH),
                ]:
                    async with http.post(url, data=form, headers=headers) as response:
                        bad[name] = (response.status, await response.text())
                async with http.post(url, data=b"file=x", headers=AUTH | {
                        "Content-Type": "application/x-www-form-urlencoded"}) as response:
                    bad["not multipart"] = (response.status, await response.text())
                release = asyncio.Event()
                held = asyncio.create_task(held_upload(http, url, wav, release, {"response_format": "json"}))
                for _ in range(100):  # the held upload is in once a second one is refused
                    await asyncio.sleep(0.05)
                    async with http.post(url, data=meet_form(wav, "json"), headers=AUTH) as response:
                        if response.status == 429:
                            results["full"] = (response.status, response.headers.get("Retry-After"),
                                               await response.json())
                            break
                release.set()
                results["held"], _ = await held
                results["bad"] = bad
            client = openai.AsyncOpenAI(api_key=TOKEN, base_url=f"{base}/v1", max_retries=0)
            with (sample_dir / "sample.wav").open("rb") as audio:
                results["openai_verbose"] = await client.audio.transcriptions.create(
                    file=audio, model="whisper-1", response_format="verbose_json",
                    timestamp_granularities=["word", "segment"])
            with (sample_dir / "sample.wav").open("rb") as audio:
                results["openai_diarized"] = await client.audio.transcriptions.create(
                    file=audio, model="whisper-1", response_format="diarized_json")
            with (sample_dir / "sample.wav").open("rb") as audio:
                results["openai_text"] = await client.audio.transcriptions.create(
                    file=audio, model="whisper-1", response_format="text")
            try:
                await client.audio.transcriptions.create(file=("notes.txt", b"not audio at all"), model="whisper-1")
            except openai.BadRequestError as exc:
                results["openai_bad"] = exc
            await client.close()
            results["bad_count"] = daemon.metrics.registry.get_sample_value(
                "appliance_bad_input_total", {"grpc_method": "transcriptions"})
            return results

    return asyncio.run(scenario())


def test_meet_summary_request_parses_into_meets_shape(summary, sample_dir):
    status, answer = summary["meet"]
    assert status == 200
    segments = answer["segments"]
    assert segments and all({"start", "end", "text", "speaker", "words"} <= set(s) for s in segments)
    words = [w for s in segments for w in s["words"]]
    assert all({"word", "start", "end", "score", "speaker"} <= set(w) for w in words)
    assert all(0 <= w["score"] <= 1 and w["start"] <= w["end"] for w in words)
    assert len({s["speaker"] for s in segments} - {None}) >= 2
    assert {w["speaker"] for w in words} - {None} <= {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02", "SPEAKER_03"}
    reference = read_reference(sample_dir / "sample.stm")
    wer = word_error_rate(reference, " ".join(w["word"] for w in words))
    print(f"offline WER {wer:.4f}")
    assert wer < 0.35  # the offline path on the sample (tiny.en, int8), with a margin for CPU spread


def test_other_formats_and_the_openai_client(summary):
    status, srt = summary["srt"]
    assert status == 200 and srt.startswith("1\n") and " --> " in srt
    verbose = summary["openai_verbose"]
    assert verbose.text and verbose.duration == pytest.approx(30.0, abs=0.1)
    assert verbose.words and verbose.segments and verbose.words[0].start <= verbose.words[-1].end
    assert " ".join(w.word for w in verbose.words).split() == verbose.text.split()
    diarized = summary["openai_diarized"]
    assert len({s.speaker for s in diarized.segments}) >= 2
    text = summary["openai_text"]
    assert isinstance(text, str) and text.strip() == verbose.text


def test_bad_uploads_get_a_clear_4xx_and_are_counted(summary):
    bad = summary["bad"]
    assert {name: status for name, (status, _) in bad.items()} == {
        "no token": 401, "not audio": 400, "empty": 400, "wrong field": 400, "bad format": 400, "too big": 413,
        "not multipart": 400}
    messages = {name: json.loads(body)["error"]["message"] for name, (_, body) in bad.items() if name != "no token"}
    assert "cannot decode audio" in messages["not audio"] and "the file" in messages["not audio"]
    assert "empty" in messages["empty"] and "'file'" in messages["wrong field"]
    assert "response_format" in messages["bad format"] and str(LIMIT) in messages["too big"]
    assert isinstance(summary["openai_bad"], openai.BadRequestError)
    assert summary["bad_count"] == 7.0  # the six above but the token, the client's, and the non-multipart


def test_a_full_queue_is_refused_with_429_and_the_held_upload_completes(summary):
    status, retry_after, body = summary["full"]
    assert status == 429 and retry_after == "30" and body["error"]["code"] == "queue_full"
    assert summary["held"] == 200
