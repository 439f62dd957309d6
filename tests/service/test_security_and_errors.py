"""TLS, mTLS, tokens, bad input and health, against the in-process daemon on loopback."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.service.client import Endpoint, chunks, transcribe
from tests.service.conftest import serving


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A private CA, a server certificate for localhost/127.0.0.1, and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    (d / "tokens").write_text("s3cret-token-one\nsecond-token\n")
    (d / "wrong").write_text("not-the-token\n")
    return d


async def _list(endpoint: Endpoint, metadata=None) -> grpc.StatusCode:
    async with endpoint.channel() as channel:
        try:
            await pb_grpc.SessionsStub(channel).List(pb.ListSessionsRequest(), metadata=metadata or endpoint.metadata(), timeout=5)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()


def test_tls_with_tokens(models, pki):
    async def scenario():
        async with serving(models, tls_cert=pki / "server.pem", tls_key=pki / "server.key",
                           token_file=pki / "tokens") as (_, address):
            tls = Endpoint(address, ca=pki / "ca.pem")
            return (
                await _list(tls),
                await _list(Endpoint(address, ca=pki / "ca.pem", token_file=pki / "wrong")),
                await _list(Endpoint(address, ca=pki / "ca.pem", token_file=pki / "tokens")),
                await _list(tls, metadata=(("authorization", "Bearer second-token"),)),
                await _list(tls, metadata=(("authorization", "Basic s3cret-token-one"),)),
                await _list(Endpoint(address)),  # plaintext against a TLS port
            )

    none, wrong, valid, second, scheme, plaintext = asyncio.run(scenario())
    assert none == grpc.StatusCode.UNAUTHENTICATED
    assert wrong == grpc.StatusCode.UNAUTHENTICATED
    assert valid == grpc.StatusCode.OK and second == grpc.StatusCode.OK
    assert scheme == grpc.StatusCode.UNAUTHENTICATED
    assert plaintext == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate(models, pki):
    async def scenario():
        async with serving(models, tls_cert=pki / "server.pem", tls_key=pki / "server.key",
                           client_ca=pki / "ca.pem") as (_, address):
            anonymous = await _list(Endpoint(address, ca=pki / "ca.pem"))
            known = await _list(Endpoint(address, ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key"))
            return anonymous, known

    anonymous, known = asyncio.run(scenario())
    assert anonymous == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert known == grpc.StatusCode.OK


def _pcm(seconds: float = 1.0) -> bytes:
    return (np.sin(np.arange(int(16000 * seconds)) / 8) * 8000).astype("<i2").tobytes()


BAD_PUSHES = {
    "no format first": ([pb.AudioChunk(data=_pcm())], "must declare sample_rate, encoding and channels"),
    "unknown encoding": ([pb.AudioChunk(sample_rate=16000, encoding=7, channels=1, data=_pcm())], "encoding"),
    "rate too low": ([pb.AudioChunk(sample_rate=1000, encoding=pb.PCM_S16LE, channels=1, data=_pcm())],
                     "unsupported sample_rate 1000"),
    "too many channels": ([pb.AudioChunk(sample_rate=16000, encoding=pb.PCM_S16LE, channels=32, data=_pcm())],
                          "unsupported channels 32"),
    "odd byte count": ([pb.AudioChunk(sample_rate=16000, encoding=pb.PCM_S16LE, channels=1, data=b"\x00\x01\x02")],
                       "not a whole number"),
    "nan samples": ([pb.AudioChunk(sample_rate=16000, encoding=pb.F32LE, channels=1,
                                   data=np.array([0.1, np.nan, 0.2], "<f4").tobytes())], "NaN or infinite"),
    "oversized chunk": ([pb.AudioChunk(sample_rate=16000, encoding=pb.PCM_S16LE, channels=1, data=_pcm(3.0))],
                        "exceeds the 65536-byte limit"),
    "format changes": ([pb.AudioChunk(sample_rate=16000, encoding=pb.PCM_S16LE, channels=1, data=_pcm()),
                        pb.AudioChunk(sample_rate=8000, encoding=pb.PCM_S16LE, channels=1, data=_pcm())],
                       "cannot change"),
    "empty stream": ([], "no audio chunk"),
}


def test_bad_input_gets_invalid_argument_and_the_server_keeps_serving(models, sample):
    async def scenario():
        async with serving(models) as (daemon, address):
            endpoint = Endpoint(address)
            # A healthy pushed session runs throughout; bad pushes must not disturb it.
            good = asyncio.create_task(_events(transcribe(
                endpoint, chunks((sample[: 16000 * 12] * 32767).astype("<i2").tobytes(), 16000, pb.PCM_S16LE, 1,
                                 session_id="good"), realtime=True)))
            outcomes = {}
            for case, (audio, _) in BAD_PUSHES.items():
                try:
                    await _events(transcribe(endpoint, audio, realtime=False))
                    outcomes[case] = (grpc.StatusCode.OK, "")
                except grpc.aio.AioRpcError as exc:
                    outcomes[case] = (exc.code(), exc.details())
            async with endpoint.channel() as channel:
                sessions = pb_grpc.SessionsStub(channel)
                missing = {}
                for name, call in (
                    ("subscribe", lambda: _events(pb_grpc.SubtitlesStub(channel).Subscribe(
                        pb.SubscribeRequest(session_id="nope")))),
                    ("get", lambda: sessions.Get(pb.GetSessionRequest(session_id="nope"))),
                    ("export", lambda: sessions.Export(pb.ExportRequest(session_id="nope", format=pb.SRT))),
                    ("resume ahead", lambda: _events(pb_grpc.SubtitlesStub(channel).Subscribe(
                        pb.SubscribeRequest(session_id="good", from_seq=10**9)))),
                ):
                    try:
                        await call()
                    except grpc.aio.AioRpcError as exc:
                        missing[name] = exc.code()
            good_events = await good
            return outcomes, missing, good_events

    outcomes, missing, good_events = asyncio.run(scenario())
    for case, (_, message) in BAD_PUSHES.items():
        code, details = outcomes[case]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (case, code, details)
        assert message in details, (case, details)
    assert missing == {"subscribe": grpc.StatusCode.NOT_FOUND, "get": grpc.StatusCode.NOT_FOUND,
                       "export": grpc.StatusCode.NOT_FOUND, "resume ahead": grpc.StatusCode.OUT_OF_RANGE}
    assert any(e.kind == pb.SubtitleEvent.FINAL for e in good_events)  # the healthy session was unaffected


async def _events(stream) -> list[pb.SubtitleEvent]:
    return [e async for e in stream]


def test_health_follows_session_state_and_export_formats(models, sample):
    async def scenario():
        async with serving(models) as (daemon, address):
            endpoint = Endpoint(address)
            async with endpoint.channel() as channel:
                health = health_pb2_grpc.HealthStub(channel)

                async def status(service: str):
                    try:
                        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    except grpc.aio.AioRpcError as exc:
                        return exc.code().name

                audio = chunks((sample[: 16000 * 10] * 32767).astype("<i2").tobytes(), 16000, pb.PCM_S16LE, 1,
                               session_id="h")
                stream = transcribe(endpoint, audio, realtime=True)
                first = await anext(stream)  # the session exists once its first event arrives
                running = await status("session/h")
                rest = [first] + [e async for e in stream]
                await asyncio.sleep(0.1)
                ended = await status("session/h")
                sessions = pb_grpc.SessionsStub(channel)
                info = await sessions.Get(pb.GetSessionRequest(session_id="h"))
                exports = {fmt: await sessions.Export(pb.ExportRequest(session_id="h", format=fmt))
                           for fmt in (pb.WEBVTT, pb.SRT, pb.JSON, pb.RTTM)}
                listing = await sessions.List(pb.ListSessionsRequest())
                return (await status(""), running, ended, await status("session/unknown"), info, exports,
                        listing, rest)

    overall, running, ended, unknown, info, exports, listing, events = asyncio.run(scenario())
    assert (overall, running, ended, unknown) == ("SERVING", "SERVING", "NOT_SERVING", "NOT_FOUND")
    assert info.state == pb.ENDED and info.source == "push" and info.final_cues >= 1
    assert info.audio_seconds == pytest.approx(10.0, abs=0.05)
    finals = [e for e in events if e.kind == pb.SubtitleEvent.FINAL]
    vtt = exports[pb.WEBVTT].content
    assert vtt.startswith("WEBVTT") and exports[pb.WEBVTT].media_type == "text/vtt"
    # Every final cue the pusher received is in the export, laid out in the same lines (the event's
    # `text` is its lines joined by spaces, so a two-line cue is found by its `lines`), and nothing else.
    assert finals and all("\n".join(e.lines) in vtt for e in finals), (vtt, [list(e.lines) for e in finals])
    assert vtt.count(" --> ") == len(finals)
    assert "-->" in exports[pb.SRT].content and '"segments"' in exports[pb.JSON].content
    assert exports[pb.RTTM].content.startswith("SPEAKER h 1 ")  # live diarization labelled the words
    assert [s.session_id for s in listing.sessions] == ["h"]
