"""The HTTP face against the in-process daemon on loopback, with real speech pushed over gRPC:
SSE resume with Last-Event-ID, exports equal to gRPC Export, tokens, a slow SSE reader, 404/400."""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.http import sse
from appliance.service.client import Endpoint, chunks, transcribe
from tests.service.conftest import serving

TOKEN = "room-screen-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATIC = Path(__file__).resolve().parents[2] / "appliance" / "http" / "static"


async def read_sse(response: aiohttp.ClientResponse, stop_after_finals: int | None = None) -> list[dict]:
    """Messages of an SSE response until it ends (or after `stop_after_finals` FINALs)."""
    messages, block = [], ""
    async for line in response.content:
        block += line.decode()
        if block.endswith("\n\n"):
            messages += sse.parse_stream(block)
            block = ""
            finals = sum(1 for m in messages if "event" not in m and m["data"]["kind"] == "final")
            if stop_after_finals is not None and finals >= stop_after_finals:
                break
    return messages


def subtitle(messages: list[dict]) -> list[dict]:
    """The subtitle events (not hello/heartbeat), with the SSE id checked against the seq."""
    events = [m for m in messages if "event" not in m]
    assert all(int(m["id"]) == m["data"]["seq"] for m in events)
    return [m["data"] for m in events]


def finals(events) -> list[tuple[int, str, str]]:
    return [(e["seq"], e["cue_id"], e["text"]) for e in events if e["kind"] == "final"]


async def open_events(http: aiohttp.ClientSession, base: str, session_id: str, **kwargs) -> aiohttp.ClientResponse:
    """GET /events/<session> as soon as the push has created the session."""
    for _ in range(500):
        response = await http.get(f"{base}/events/{session_id}", **kwargs)
        if response.status != 404:
            assert response.status == 200, await response.text()
            return response
        response.release()
        await asyncio.sleep(0.02)
    raise AssertionError(f"session {session_id} never appeared")


async def never_reads(port: int, path: str, until: asyncio.Task) -> bytes:
    """A raw SSE reader with a tiny receive buffer that reads nothing until `until` is done, then
    all it was sent until the server closes the connection."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    await asyncio.wait([until])
    received = b""
    try:
        while data := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            received += data
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return received


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.fixture(scope="module")
def pki_tokens(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"{TOKEN}\nanother-token\n")
    return path


@pytest.fixture(scope="module")
def meeting(models, sample, pki_tokens):
    """The sample pushed four times over gRPC (as fast as taken) while SSE readers follow it:
    a steady one, one that drops after 3 finals and resumes with Last-Event-ID, one that never
    reads; then exports, listings, auth and bad requests, and the metrics."""

    async def scenario():
        async with serving(models, subscriber_backlog=16, token_file=pki_tokens) as (daemon, address):
            endpoint = Endpoint(address, token_file=pki_tokens)
            base = f"http://{daemon.http_address}"
            port = int(daemon.http_address.rsplit(":", 1)[1])
            pcm = (np.concatenate([sample] * 4) * 32767).astype("<i2").tobytes()
            pushed_task = asyncio.create_task(
                _collect(transcribe(endpoint, chunks(pcm, 16000, pb.PCM_S16LE, 1, session_id="meeting"),
                                    realtime=False)))
            async with aiohttp.ClientSession() as http:
                async def steady():
                    async with await open_events(http, base, "meeting", params={"partials": "0"},
                                                 headers=AUTH) as response:
                        return await read_sse(response)

                async def interrupted():
                    async with await open_events(http, base, "meeting", headers=AUTH) as response:
                        first = await read_sse(response, stop_after_finals=3)
                    await asyncio.sleep(1.0)  # events keep coming while it is away
                    last = [m for m in first if "id" in m][-1]["id"]
                    async with http.get(f"{base}/events/meeting", headers=AUTH | {"Last-Event-ID": last}) as response:
                        return first, await read_sse(response)

                (await open_events(http, base, "meeting", headers=AUTH)).close()  # the session exists
                slow_task = asyncio.create_task(never_reads(port, "/events/meeting?partials=1", pushed_task))
                results = await asyncio.gather(pushed_task, steady(), interrupted())
                slow = await slow_task

                async with endpoint.channel() as channel:
                    sessions = pb_grpc.SessionsStub(channel)
                    grpc_exports = {fmt: (await sessions.Export(pb.ExportRequest(session_id="meeting", format=fmt),
                                                                metadata=endpoint.metadata()))
                                    for fmt in (pb.WEBVTT, pb.SRT, pb.JSON, pb.RTTM)}
                    grpc_info = await sessions.Get(pb.GetSessionRequest(session_id="meeting"),
                                                   metadata=endpoint.metadata())
                http_exports = {}
                for fmt in ("vtt", "srt", "json", "rttm"):
                    async with http.get(f"{base}/sessions/meeting/transcript.{fmt}", headers=AUTH) as r:
                        http_exports[fmt] = (r.status, r.content_type, await r.text())

                async def status(path: str, **kwargs) -> tuple[int, str]:
                    async with http.get(f"{base}{path}", allow_redirects=False, **kwargs) as r:
                        return r.status, await r.text()

                checks = {
                    "healthz open": await status("/healthz"),
                    "no token": await status("/sessions"),
                    "wrong token": await status("/sessions", headers={"Authorization": "Bearer nope"}),
                    "basic scheme": await status("/sessions", headers={"Authorization": f"Basic {TOKEN}"}),
                    "query token": await status("/sessions", params={"token": "another-token"}),
                    "cookie token": await status("/sessions", cookies={"appliance_token": TOKEN}),
                    "query over stale cookie": await status("/sessions", params={"token": TOKEN},
                                                            cookies={"appliance_token": "stale"}),
                    "no token events": await status("/events/meeting"),
                    "no token page": await status("/captions/meeting"),
                    "unknown session": await status("/events/elsewhere", headers=AUTH),
                    "unknown export": await status("/sessions/elsewhere/transcript.vtt", headers=AUTH),
                    "bad id": await status("/events/" + "x" * 65, headers=AUTH),
                    "bad id chars": await status("/sessions/a.b", headers=AUTH),
                    "bad from_seq": await status("/events/meeting", params={"from_seq": "-3"}, headers=AUTH),
                    "bad partials": await status("/events/meeting", params={"partials": "maybe"}, headers=AUTH),
                    "ahead": await status("/events/meeting", headers=AUTH | {"Last-Event-ID": "999999"}),
                    "bad format": await status("/sessions/meeting/transcript.doc", headers=AUTH),
                    "page": await status("/captions/meeting", headers=AUTH),
                    "static js": await status("/static/captions.js"),
                }
                async with http.get(f"{base}/captions/meeting", params={"token": TOKEN, "size": "9"},
                                    allow_redirects=False) as r:
                    redirect = (r.status, r.headers.get("Location"), r.headers.get("Set-Cookie", ""))
                async with http.get(f"{base}/sessions", headers=AUTH) as r:
                    listing = await r.json()
                async with http.get(f"{base}/events/meeting", params={"partials": "0"}, headers=AUTH) as r:
                    ended_replay = await read_sse(r)  # the ended session: its retained events, then the end
                epoch = ended_replay[0]["data"]["epoch"]
                resumed = {}
                for name, params in (("same log", {"from_seq": "5", "epoch": epoch}),
                                     ("another log", {"from_seq": "5", "epoch": "0123456789ab"})):
                    async with http.get(f"{base}/events/meeting", params=params, headers=AUTH) as r:
                        resumed[name] = await read_sse(r)
                async with http.get(f"http://{daemon.metrics_address}/metrics") as r:
                    metrics = await r.text()
            return (*results, slow, grpc_exports, grpc_info, http_exports, checks, redirect, listing,
                    ended_replay, resumed, metrics)

    return asyncio.run(scenario())


async def _collect(stream) -> list[pb.SubtitleEvent]:
    return [event async for event in stream]


def test_sse_carries_the_same_events_as_grpc(meeting):
    pushed, steady, *_ = meeting
    grpc_finals = [(e.seq, e.cue_id, e.text) for e in pushed if e.kind == pb.SubtitleEvent.FINAL]
    events = subtitle(steady)
    assert grpc_finals and finals(events) == grpc_finals
    assert all(e["kind"] != "partial" for e in events)  # partials=0
    hello = steady[0]
    assert hello["event"] == "hello" and hello["data"]["session_id"] == "meeting" and hello["data"]["epoch"]
    assert events[-1]["kind"] == "session_state" and events[-1]["state"] == "ended"
    by_seq = {e.seq: e for e in pushed}
    for event in events:  # the JSON says what the protobuf says
        original = by_seq[event["seq"]]
        assert event["created"] == pytest.approx(original.created.ToNanoseconds() / 1e9, abs=1e-6)
        assert [w["text"] for w in event["words"]] == [w.text for w in original.words]
        assert event["speaker"] == original.speaker


def test_resume_with_last_event_id_repeats_and_loses_nothing(meeting):
    _, steady, (first, rest), *_ = meeting
    first_events, rest_events = subtitle(first), subtitle(rest)
    # Partials are on by default (the first part may be all retained finals if it joined late).
    assert any(e["kind"] == "partial" for e in first_events + rest_events)
    assert rest_events and rest_events[0]["seq"] > first_events[-1]["seq"]  # it missed events while away
    assert finals(first_events) + finals(rest_events) == finals(subtitle(steady))
    seqs = [e["seq"] for e in first_events + rest_events]
    assert seqs == sorted(set(seqs))  # nothing twice, in order


def test_a_reader_that_never_reads_is_dropped_and_others_get_everything(meeting):
    pushed, steady, _, slow, *rest = meeting
    metrics = rest[-1]
    assert metric(metrics, "appliance_subscribers_ended_slow_total", session="meeting") >= 1
    print("SLOW BYTES", len(slow)); assert slow.startswith(b"HTTP/1.1 200")
    assert b'"state":"ended"' not in slow  # cut off before the session's end
    assert finals(subtitle(steady)) == [(e.seq, e.cue_id, e.text) for e in pushed if e.kind == pb.SubtitleEvent.FINAL]


def test_exports_equal_grpc_export(meeting):
    *_, grpc_exports, grpc_info, http_exports, checks, redirect, listing, ended, _, metrics = meeting
    for grpc_format, fmt in ((pb.WEBVTT, "vtt"), (pb.SRT, "srt"), (pb.JSON, "json"), (pb.RTTM, "rttm")):
        status, content_type, text = http_exports[fmt]
        assert status == 200, text
        assert text == grpc_exports[grpc_format].content and content_type == grpc_exports[grpc_format].media_type
    assert http_exports["vtt"][2].startswith("WEBVTT")
    (info,) = listing["sessions"]
    assert info == {"session_id": "meeting", "state": "ended", "source": "push",
                    "audio_seconds": pytest.approx(grpc_info.audio_seconds), "last_seq": grpc_info.last_seq,
                    "subscribers": grpc_info.subscribers, "final_cues": grpc_info.final_cues,
                    "message": grpc_info.message, "model": grpc_info.model, "language": grpc_info.language,
                    "task": grpc_info.task, "degradation": grpc_info.degradation,
                    "decode_lag_seconds": pytest.approx(grpc_info.decode_lag_seconds)}
    assert (grpc_info.model, grpc_info.language, grpc_info.task) == ("whisper-tiny.en", "en", "transcribe")


def test_an_ended_session_replays_its_retained_events_then_ends(meeting):
    pushed, *_, ended, resumed, metrics = meeting
    grpc_finals = [(e.seq, e.cue_id, e.text) for e in pushed if e.kind == pb.SubtitleEvent.FINAL]
    assert finals(subtitle(ended)) == grpc_finals


def test_a_seq_of_another_log_starts_this_one_over(meeting):
    """The epoch names the log: a room screen that saw seq 5 of a log before a restart gets all of
    the new one (hello says reset); of the same log, only what follows seq 5."""
    pushed, *_, resumed, metrics = meeting
    same, other = resumed["same log"], resumed["another log"]
    all_finals = [(e.seq, e.cue_id, e.text) for e in pushed if e.kind == pb.SubtitleEvent.FINAL]
    assert same[0]["data"]["reset"] is False and subtitle(same)[0]["seq"] > 5
    assert finals(subtitle(same)) == [f for f in all_finals if f[0] > 5]
    assert other[0]["data"]["reset"] is True and subtitle(other)[0]["seq"] == 1
    assert finals(subtitle(other)) == all_finals


def test_tokens_are_required_and_refusals_counted(meeting):
    *_, checks, redirect, listing, ended, _, metrics = meeting
    assert checks["healthz open"] == (200, '{"status": "serving"}')
    for case in ("no token", "wrong token", "basic scheme", "no token events", "no token page"):
        status, body = checks[case]
        assert status == 401, (case, body)
        assert TOKEN not in body
    assert "missing token" in checks["no token"][1] and "invalid token" in checks["wrong token"][1]
    for case in ("query token", "cookie token", "query over stale cookie", "page", "static js"):
        assert checks[case][0] == 200, (case, checks[case])
    # A page opened with ?token= moves it into an HttpOnly cookie and out of the address bar.
    status, location, cookie = redirect
    assert status == 303 and location == "/captions/meeting?size=9"
    assert f"appliance_token={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # Counted by route template, never by raw path.
    assert metric(metrics, "appliance_http_requests_total", route="/sessions", method="GET", code="401") == 3
    assert metric(metrics, "appliance_http_requests_total", route="/events/{session}", code="401") == 1
    assert metric(metrics, "appliance_http_requests_total", route="/events/{session}", code="200") >= 3
    assert metric(metrics, "appliance_http_requests_total", route="/healthz", code="200") == 1
    assert "/events/meeting" not in metrics and "elsewhere" not in metrics


def test_unknown_sessions_are_404_without_a_listing_and_bad_requests_400(meeting):
    *_, checks, redirect, listing, ended, _, metrics = meeting
    for case in ("unknown session", "unknown export"):
        status, body = checks[case]
        assert status == 404 and "no session 'elsewhere'" in body and "meeting" not in body, (case, body)
    for case in ("bad id", "bad id chars", "bad from_seq", "bad partials", "bad format"):
        assert checks[case][0] == 400, (case, checks[case])
    assert "letters, digits" in checks["bad id"][1] and "from_seq" in checks["bad from_seq"][1]
    assert checks["ahead"][0] == 409 and "ahead of this session" in checks["ahead"][1]


def test_the_page_is_self_contained(meeting):
    """No external fonts, scripts or styles: the box is air-gapped. The CSP forbids them too."""
    *_, checks, redirect, listing, ended, _, metrics = meeting
    status, page = checks["page"]
    assert status == 200 and 'data-session="meeting"' in page
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "@import" not in text, path
        assert "url(" not in text, path


def test_plaintext_on_a_remote_address_is_refused_and_tls_serves(models, tmp_path):
    import subprocess
    import ssl

    from appliance.config import AppConfig, ConfigError, HttpConfig, ServerConfig

    with pytest.raises(ConfigError, match="http.listen"):
        AppConfig(http=HttpConfig(listen="0.0.0.0:8080"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "key.pem", "-out", "cert.pem"], cwd=tmp_path, check=True, capture_output=True)
    assert AppConfig(server=ServerConfig(tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem"),
                     http=HttpConfig(listen="0.0.0.0:8080")).http.listen == "0.0.0.0:8080"

    async def scenario():
        async with serving(models, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem") as (daemon, _):
            context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
            async with aiohttp.ClientSession() as http:
                async with http.get(f"https://{daemon.http_address}/healthz", ssl=context) as r:
                    secure = r.status
                try:
                    async with http.get(f"http://{daemon.http_address}/healthz") as r:
                        plain = r.status
                except aiohttp.ClientError as exc:
                    plain = type(exc).__name__
            return secure, plain

    secure, plain = asyncio.run(scenario())
    assert secure == 200 and plain != 200


def test_guessing_tokens_over_http_locks_that_address_out_of_both_faces(models, tmp_path, caplog):
    """Wrong tokens from one address (127.0.0.1) on the room screen's routes: after
    auth_max_failures it gets 429 with Retry-After everywhere (the room screen, the OpenAI
    endpoint, the Kyutai WebSocket, and gRPC, which shares the record), a right token included,
    every refusal counted, two log lines; another address (127.0.0.2) with the right token is
    served meanwhile; after the lockout the first is served again."""
    caplog.set_level(logging.INFO)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    wrong = {"Authorization": "Bearer a-guess"}

    async def scenario():
        async with serving(models, token_file=tokens, auth_max_failures=3, auth_lockout_seconds=1.5) as (d, address):
            base = f"http://{d.http_address}"
            other_peer = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession() as guesser, aiohttp.ClientSession(connector=other_peer) as other:
                async def get(http, path: str, **kwargs) -> tuple[int, str | None, str]:
                    async with http.get(f"{base}{path}", allow_redirects=False, **kwargs) as r:
                        return r.status, r.headers.get("Retry-After"), await r.text()

                async def upload(http, headers) -> tuple[int, str | None]:
                    form = aiohttp.FormData()
                    form.add_field("file", b"RIFF", filename="a.wav")
                    async with http.post(f"{base}/v1/audio/transcriptions", data=form, headers=headers) as r:
                        return r.status, r.headers.get("Retry-After")

                async def kyutai(http, key: str) -> int | str:
                    try:
                        async with http.ws_connect(f"{base}/api/asr-streaming", headers={"kyutai-api-key": key}) as ws:
                            message = await ws.receive()
                            return f"closed {ws.close_code}" if message.type == aiohttp.WSMsgType.CLOSE else "open"
                    except aiohttp.WSServerHandshakeError as exc:
                        return exc.status

                out = {
                    "guesses": [await get(guesser, "/sessions", headers=wrong),
                                await get(guesser, "/captions/room", params={"token": "a-guess"})],
                    "wrong kyutai key": await kyutai(guesser, "a-guess"),  # the third failure: locked out now
                    "right token, locked": await get(guesser, "/sessions", headers=AUTH),
                    "page, locked": await get(guesser, "/captions/room", params={"token": TOKEN}),
                    "upload, locked": await upload(guesser, AUTH),
                    "kyutai, locked": await kyutai(guesser, TOKEN),
                    "flood": await asyncio.gather(*(get(guesser, "/sessions", headers=wrong) for _ in range(20))),
                    "healthz, locked": await get(guesser, "/healthz"),
                    "other address": await get(other, "/sessions", headers=AUTH),
                    "other address, wrong": await get(other, "/sessions", headers=wrong),
                }
                async with grpc.aio.insecure_channel(address) as channel:
                    try:
                        await pb_grpc.SessionsStub(channel).List(
                            pb.ListSessionsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
                        out["grpc, locked"] = "OK"
                    except grpc.aio.AioRpcError as exc:
                        out["grpc, locked"] = (exc.code(), exc.details())
                await asyncio.sleep(1.6)
                out["right token, after"] = await get(guesser, "/sessions", headers=AUTH)
            registry = d.metrics.registry
            out["counted"] = {route: registry.get_sample_value("appliance_auth_failures_total", {"grpc_method": route})
                              for route in ("/sessions", "/captions/{session}", "/v1/audio/transcriptions",
                                            "asr-streaming", "List")}
            return out

    out = asyncio.run(scenario())
    assert [status for status, *_ in out["guesses"]] == [401, 401] and out["wrong kyutai key"] == "closed 1008"
    for case in ("right token, locked", "page, locked"):
        status, retry_after, body = out[case]
        assert status == 429 and 1 <= int(retry_after) <= 2 and "too many failed" in body, (case, out[case])
    assert out["upload, locked"][0] == 429 and out["upload, locked"][1] is not None
    assert out["kyutai, locked"] == 429  # refused before the upgrade
    assert all(status == 429 for status, *_ in out["flood"])
    assert out["healthz, locked"][0] == 200  # open routes stay open
    assert out["other address"][0] == 200 and out["other address, wrong"][0] == 401
    assert out["grpc, locked"][0] == grpc.StatusCode.UNAUTHENTICATED and "too many failed" in out["grpc, locked"][1]
    assert out["right token, after"][0] == 200
    # Every refusal counted, by route: 2 guesses + the right token + 20 flood + the other address's guess.
    assert out["counted"] == {"/sessions": 1 + 1 + 20 + 1, "/captions/{session}": 2,
                              "/v1/audio/transcriptions": 1, "asr-streaming": 2, "List": 1}
    rejected = [r.getMessage() for r in caplog.records if r.name == "appliance.http.auth"]
    # 127.0.0.1: its first failure and its lockout; 127.0.0.2: its first failure.
    assert len(rejected) == 3 and sum("127.0.0.1" in m for m in rejected) == 2, rejected
    assert not any("a-guess" in r.getMessage() or TOKEN in r.getMessage() for r in caplog.records)
