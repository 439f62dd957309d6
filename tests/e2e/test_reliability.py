"""The standing reliability suite: the real daemon (`python -m appliance serve`) on loopback,
abused the way a network abuses it, while a healthy room is served beside.

Module order matters (one daemon for the module): no PortAudio without a microphone; fuzzing
of every RPC; churn of 10,000 subscriptions; a stalled subscriber beside 20 normal ones;
pushing clients killed mid-stream; and at the end, nothing written to disk but what the
config names. SIGTERM during a live push and auth (TLS, mTLS, tokens) run their own daemons.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.evaluation import word_error_rate
from appliance.service.client import Endpoint, chunks, follow, transcribe
from bench.load import process_rss_kb
from tests.e2e.daemon import DaemonProcess, free_port
from tests.e2e.test_operations import scrape, snapshot, value
from tests.service.rawgrpc import RawClient, frame

FINAL, STATE = pb.SubtitleEvent.FINAL, pb.SubtitleEvent.SESSION_STATE
FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "3000"))
CHURN_CALLS = int(os.environ.get("RELIABILITY_CHURN_CALLS", "10000"))
KILLED_PUSHES = int(os.environ.get("RELIABILITY_KILLED_PUSHES", "50"))


@pytest.fixture(scope="module")
def clip(sample_dir) -> np.ndarray:
    """10 s of the sample conversation, from just before the first word."""
    return load_audio(sample_dir / "sample.wav")[6 * 16000: 16 * 16000]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reliability")
    for name in ("home", "tmp", "cwd"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="module")
def daemon(sandbox):
    """One daemon for the module, with HOME, TMPDIR and its working directory in the sandbox."""
    metrics = f"127.0.0.1:{free_port()}"
    config = f"""[server]
listen = "{{address}}"
grace_seconds = 3.0
subscriber_backlog_seconds = 2.0
max_subscribers_per_session = 2000
max_concurrent_rpcs = 4000

[metrics]
listen = "{metrics}"
"""
    process = DaemonProcess(config, sandbox, cwd=sandbox / "cwd",
                            env={"HOME": str(sandbox / "home"), "TMPDIR": str(sandbox / "tmp")})
    process.metrics_address = metrics
    process.before = snapshot(sandbox, {process.config, process.log})
    process.start()
    yield process
    code = process.stop()
    assert code == 0, process.log.read_text()[-3000:]


def daemon_log_problems(daemon: DaemonProcess) -> list[str]:
    return [line for line in daemon.log.read_text().splitlines()
            if "Traceback" in line or "level=error" in line or "exc=" in line]


def settled_rss_kb(pid: int, seconds: float = 3.0) -> int:
    """The least RSS seen over `seconds`: the allocator's arenas breathe by several MB, a leak does not."""
    samples = []
    for _ in range(int(seconds / 0.25)):
        samples.append(process_rss_kb(pid))
        time.sleep(0.25)
    return min(samples)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def finals(events) -> list[str]:
    return [e.text for e in events if e.kind == FINAL]


async def push_and_collect(address: str, audio: bytes, session_id: str, realtime: bool) -> list[pb.SubtitleEvent]:
    stream = transcribe(Endpoint(address), chunks(audio, 16000, pb.PCM_S16LE, 1, session_id=session_id),
                        realtime=realtime)
    return [event async for event in stream]


def _pushed_finals(address: str, audio: bytes, session_id: str) -> tuple[list[str], bool]:
    """(In a process of its own.) Push in real time: the finals' texts, and whether the room ended."""
    events = asyncio.run(push_and_collect(address, audio, session_id, realtime=True))
    return finals(events), events[-1].kind == STATE and events[-1].state == pb.ENDED


def test_no_portaudio_is_loaded_without_a_microphone_room(daemon, sandbox):
    maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
    assert "portaudio" not in maps.lower()
    assert not (sandbox / "home" / ".config" / "pulse").exists()
    assert not list(Path("/dev/shm").glob(f"*{daemon.process.pid}*"))


# --- fuzzing -------------------------------------------------------------------------------

UNARY = {"/appliance.v1.Sessions/List": pb.ListSessionsRequest, "/appliance.v1.Sessions/Get": pb.GetSessionRequest,
         "/appliance.v1.Sessions/Export": pb.ExportRequest, "/grpc.health.v1.Health/Check": None}
SUBSCRIBE = "/appliance.v1.Subtitles/Subscribe"
TRANSCRIBE = "/appliance.v1.Subtitles/Transcribe"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# Statuses a malformed request may get; UNKNOWN, INTERNAL, UNAVAILABLE and a client-side
# DEADLINE_EXCEEDED (no answer) may not.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
           grpc.StatusCode.RESOURCE_EXHAUSTED}

ids = st.one_of(st.text(max_size=80), st.sampled_from(["", "a", "push-1", "../../etc/passwd", "x" * 65, "ok_id-1"]))
hostile_rates = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 8000, 16000, 48000, 192000]))
mutations = st.tuples(st.integers(0, 3), st.integers(0, 255), st.integers(0, 1000))


def _mutate(data: bytes, how: tuple[int, int, int]) -> bytes:
    """0: as is; 1: one byte changed; 2: truncated; 3: garbage appended."""
    kind, byte, where = how
    if kind == 0 or not data:
        return data
    where %= len(data)
    if kind == 1:
        return data[:where] + bytes([byte]) + data[where + 1:]
    if kind == 2:
        return data[:where]
    return data + bytes([byte, 0xFF, 0xFF])


@st.composite
def unary_requests(draw):
    path = draw(st.sampled_from(sorted(UNARY)))
    if draw(st.booleans()):
        return path, draw(st.binary(max_size=200))
    message = {"/appliance.v1.Sessions/List": lambda: pb.ListSessionsRequest(),
               "/appliance.v1.Sessions/Get": lambda: pb.GetSessionRequest(session_id=draw(ids)),
               "/appliance.v1.Sessions/Export": lambda: pb.ExportRequest(session_id=draw(ids),
                                                                         format=draw(st.integers(-5, 10))),
               "/grpc.health.v1.Health/Check": lambda: None}[path]()
    data = message.SerializeToString() if message is not None else draw(st.text(max_size=40)).encode()
    return path, _mutate(data, draw(mutations))


@st.composite
def subscribe_requests(draw):
    message = pb.SubscribeRequest(session_id=draw(ids), from_seq=draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 50))),
                                  include_partials=draw(st.booleans()))
    return SUBSCRIBE, _mutate(message.SerializeToString(), draw(mutations))


@st.composite
def audio_chunks(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    chunk = pb.AudioChunk(session_id=draw(ids), sample_rate=draw(hostile_rates), encoding=draw(st.integers(-3, 5)),
                          channels=draw(st.integers(0, 70)), data=draw(st.binary(max_size=640)))
    return _mutate(chunk.SerializeToString(), draw(mutations))


@st.composite
def transcribe_requests(draw):
    return TRANSCRIBE, draw(st.lists(audio_chunks(), min_size=0, max_size=3))


@st.composite
def reflection_requests(draw):
    return REFLECTION, draw(st.lists(st.binary(max_size=80), min_size=1, max_size=2))


requests = st.one_of(unary_requests(), subscribe_requests(), transcribe_requests(), reflection_requests())


def _call(channel: grpc.Channel, path: str, body) -> tuple[grpc.StatusCode, str]:
    try:
        if path in UNARY:
            channel.unary_unary(path)(body, timeout=10)
        elif path == SUBSCRIBE:
            for _ in channel.unary_stream(path)(body, timeout=10):
                pass
        else:
            for _ in channel.stream_stream(path)(iter(body), timeout=10):
                pass
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def test_fuzzing_every_rpc_crashes_nothing_counts_every_bad_input_and_leaves_a_healthy_room_alone(daemon, clip):
    """≥ 2,000 seeded malformed requests over every RPC, while a healthy room is pushed in real time:
    every answer a status a person can act on, every refusal counted, no traceback, and the
    healthy room's captions the same as when it was pushed alone."""
    audio = encode_s16le(clip)
    # The healthy room's client runs in a process of its own, so the fuzzing client does not
    # hold up its pacing (one interpreter lock) and only the daemon is shared, as in the field.
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    alone = pool.submit(_pushed_finals, daemon.address, audio, "alone").result()
    healthy_future = pool.submit(_pushed_finals, daemon.address, audio, "healthy")
    before = scrape(daemon.metrics_address)
    outcomes: list[tuple[str, grpc.StatusCode, str]] = []
    channel = grpc.insecure_channel(daemon.address)
    time.sleep(2.0)  # the pushing process is up (spawned) and its room live
    started = time.monotonic()

    @seed(20261201)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(requests)
    def fuzz(request):
        path, body = request
        code, details = _call(channel, path, body)
        outcomes.append((path, code, details))
        assert code in ALLOWED, (path, body, code, details)

    fuzz()
    took = time.monotonic() - started
    healthy, ended = healthy_future.result()
    pool.shutdown()
    channel.close()
    time.sleep(0.5)
    after = scrape(daemon.metrics_address)
    refused = sum(1 for _, code, _ in outcomes if code == grpc.StatusCode.INVALID_ARGUMENT)
    counted = value(after, "appliance_bad_input_total") - value(before, "appliance_bad_input_total")
    by_path = {path: sum(1 for p, _, _ in outcomes if p == path) for path in (*UNARY, SUBSCRIBE, TRANSCRIBE, REFLECTION)}
    print(f"fuzz: {len(outcomes)} requests in {took:.1f} s, {refused} refused as INVALID_ARGUMENT, by RPC {by_path}")
    assert len(outcomes) >= 2000 and all(by_path.values())
    assert counted == refused  # every bad input counted, once
    assert daemon_log_problems(daemon) == []
    # The healthy room was served whole, and said the same: exactly the same text when the box
    # keeps up, but on two cores the fuzzing competes for CPU, and a room whose decodes run late
    # takes in more audio per decode by design (decode points move), so its words may differ a little.
    assert ended
    if healthy != alone[0]:
        drift = word_error_rate(" ".join(alone[0]), " ".join(healthy))
        print(f"healthy room beside the fuzzing: WER {drift:.3f} against the same push alone")
        assert drift <= 0.25, (alone[0], healthy)  # measured 0.03-0.16 on 2 shared cores (load 12)


# --- churn ---------------------------------------------------------------------------------

async def _churn(address: str, session_id: str, calls: int, batch: int = 500) -> None:
    """`calls` Subscribe calls in batches: half cancelled at once, half after their first event."""
    async with grpc.aio.insecure_channel(address) as channel:
        subscribe = channel.unary_stream(SUBSCRIBE)
        request = pb.SubscribeRequest(session_id=session_id).SerializeToString()

        async def after_first() -> None:
            call = subscribe(request)
            async for _ in call:
                break
            call.cancel()

        for start in range(0, calls, batch):
            now = [subscribe(request) for _ in range(batch // 2)]
            waiting = [asyncio.create_task(after_first()) for _ in range(batch - batch // 2)]
            await asyncio.sleep(0)
            for call in now:
                call.cancel()
            await asyncio.gather(*waiting)


def test_subscribe_churn_leaks_no_memory_and_no_descriptors(daemon):
    """10,000 subscriptions to a live room, cancelled at once or after their first event."""
    stop = threading.Event()

    async def keep_alive() -> None:  # a live room: silence pushed in real time until the churn is over
        async def silence():
            yield pb.AudioChunk(session_id="churn", sample_rate=16000, encoding=pb.PCM_S16LE, channels=1,
                                data=bytes(3200))
            while not stop.is_set():
                await asyncio.sleep(0.1)
                yield pb.AudioChunk(data=bytes(3200))
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            async for _ in pb_grpc.SubtitlesStub(channel).Transcribe(silence()):
                pass

    room = threading.Thread(target=lambda: asyncio.run(keep_alive()))
    room.start()
    try:
        pid = daemon.process.pid
        time.sleep(1.0)
        asyncio.run(_churn(daemon.address, "churn", 3000))  # warm-up: allocator pools, grpc caches
        rss_before, fds_before = settled_rss_kb(pid), fds(pid)
        started = time.monotonic()
        asyncio.run(_churn(daemon.address, "churn", CHURN_CALLS))
        took = time.monotonic() - started
        rss_after, fds_after = settled_rss_kb(pid), fds(pid)  # settled: cancelled calls finished
    finally:
        stop.set()
        room.join()
    growth_mb = (rss_after - rss_before) / 1024
    print(f"churn: {CHURN_CALLS} calls in {took:.1f} s; RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MB "
          f"(+{growth_mb:.2f}), fds {fds_before} -> {fds_after}")
    assert growth_mb < 5
    assert fds_after <= fds_before + 2  # the room's own push connection may come and go
    assert daemon_log_problems(daemon) == []


# --- a stalled subscriber beside 20 normal ones ---------------------------------------------

def test_a_stalled_subscriber_is_ended_and_counted_and_20_others_lose_nothing(daemon, clip):
    async def scenario():
        audio = encode_s16le(clip)
        pushed = asyncio.create_task(push_and_collect(daemon.address, audio, "stall", realtime=True))

        async def normal() -> list:
            for _ in range(500):
                try:
                    return [e async for e in follow(Endpoint(daemon.address), "stall", include_partials=True)]
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND
                    await asyncio.sleep(0.02)
            raise AssertionError("no room")

        others = [asyncio.create_task(normal()) for _ in range(20)]
        await asyncio.sleep(1.0)
        raw = RawClient(daemon.address, window=0)
        stream = raw.call(SUBSCRIBE, frame(pb.SubscribeRequest(session_id="stall", include_partials=True)
                                           .SerializeToString()))
        stalled = await asyncio.to_thread(raw.wait, stream, 30.0)
        raw.close()
        return await pushed, await asyncio.gather(*others), stalled

    before = scrape(daemon.metrics_address)
    pushed, others, stalled = asyncio.run(scenario())
    after = scrape(daemon.metrics_address)
    assert stalled.ended, stalled  # it received a status, a reset, or its connection closed
    assert value(after, "appliance_subscribers_ended_slow_total", session="stall") == 1
    expected = [(e.seq, e.text) for e in pushed if e.kind == FINAL]
    assert expected
    for events in others:  # nobody else was ended or lost a final
        assert [(e.seq, e.text) for e in events if e.kind == FINAL] == expected
    assert value(after, "appliance_subscribers_ended_slow_total") - value(
        before, "appliance_subscribers_ended_slow_total") == 1
    assert daemon_log_problems(daemon) == []


# --- pushing clients killed mid-stream -----------------------------------------------------

def _killed_push(address: str, session_id: str, audio: bytes, cut: int) -> None:
    """A pusher over a bare socket that dies after `cut` bytes of audio: no end of stream, no
    cancel, no GOAWAY; the connection just ends, as when the client process is killed (its
    kernel closes the socket: a FIN once what the server sent it is read, else a reset, which
    would also throw away audio still in flight)."""
    raw = RawClient(address, window=1 << 20)
    first = pb.AudioChunk(session_id=session_id, sample_rate=16000, encoding=pb.PCM_S16LE, channels=1,
                          data=audio[:3200]).SerializeToString()
    body = frame(first) + b"".join(frame(pb.AudioChunk(data=audio[i: i + 3200]).SerializeToString())
                                   for i in range(3200, cut, 3200))
    stream = raw.call(TRANSCRIBE, body, end=False)
    raw.wait(stream, 1.0)  # the daemon takes the audio in (what it has not read when the client dies is lost)
    raw.sock.close()


async def _resuming_subscriber(address: str, session_id: str) -> list[pb.SubtitleEvent]:
    """Follows the room, dropping its own connection after every third event and resuming by seq."""
    got: list[pb.SubtitleEvent] = []
    for _ in range(500):
        try:
            while True:
                count = 0
                async with grpc.aio.insecure_channel(address) as channel:
                    request = pb.SubscribeRequest(session_id=session_id, from_seq=got[-1].seq if got else 0)
                    async for event in pb_grpc.SubtitlesStub(channel).Subscribe(request):
                        got.append(event)
                        count += 1
                        if event.kind == STATE and event.state == pb.ENDED:
                            return got
                        if count == 3:
                            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            await asyncio.sleep(0.02)
    raise AssertionError("room never appeared")


def test_pushers_killed_mid_stream_publish_what_they_sent_and_resuming_subscribers_lose_nothing(daemon, clip):
    audio = encode_s16le(clip[: 4 * 16000])

    async def one(index: int) -> tuple[list, pb.ExportResponse]:
        session_id = f"killed-{index}"
        subscriber = asyncio.create_task(_resuming_subscriber(daemon.address, session_id))
        cut = (len(audio) // 2 + (index % 7) * 3200 * 2) // 3200 * 3200  # mid-stream, at a different place each time
        await asyncio.to_thread(_killed_push, daemon.address, session_id, audio, cut)
        events = await asyncio.wait_for(subscriber, 60)
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            export = await pb_grpc.SessionsStub(channel).Export(pb.ExportRequest(session_id=session_id,
                                                                                 format=pb.JSON))
        return events, export

    async def scenario():
        results = []
        for start in range(0, KILLED_PUSHES, 7):  # seven at once (the push limit is 8)
            results += await asyncio.gather(*(one(i) for i in range(start, min(start + 7, KILLED_PUSHES))))
        return results

    results = asyncio.run(scenario())
    assert len(results) == KILLED_PUSHES
    with_finals = 0
    for events, export in results:
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs)), seqs  # no duplicate, in order
        assert events[-1].kind == STATE and events[-1].state == pb.ENDED
        # What the subscriber got across its reconnections is what the room published: every final
        # cue once, with the same words (the export is the room's own record).
        segments = json.loads(export.content)["segments"]
        received = [w.text for e in events if e.kind == FINAL for w in e.words]
        assert received == [w["text"] for segment in segments for w in segment["words"]]
        assert sum(e.kind == FINAL for e in events) == len(segments)
        with_finals += bool(segments)
    assert with_finals == KILLED_PUSHES  # two seconds of speech and more: every room published finals
    assert daemon_log_problems(daemon) == []


def test_nothing_was_written_but_what_the_config_names(daemon, sandbox):
    assert snapshot(sandbox, {daemon.config, daemon.log}) - daemon.before == set()
    assert not (sandbox / "home" / ".config" / "pulse").exists()


# --- SIGTERM during a live push ------------------------------------------------------------

def test_sigterm_during_a_live_push_publishes_every_final_and_exits_within_the_grace(tmp_path, clip):
    grace = 3.0
    daemon = DaemonProcess(f'[server]\nlisten = "{{address}}"\ngrace_seconds = {grace}\n', tmp_path).start()
    received: list[tuple[float, pb.SubtitleEvent]] = []

    async def push() -> grpc.StatusCode:
        audio = chunks(encode_s16le(clip), 16000, pb.PCM_S16LE, 1, session_id="live")
        try:
            async for event in transcribe(Endpoint(daemon.address), audio, realtime=True):
                received.append((time.monotonic(), event))
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    async def scenario():
        task = asyncio.create_task(push())
        while not any(e.kind == FINAL for _, e in received):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = await task
        exit_code = await asyncio.to_thread(daemon.process.wait, 30)
        return signalled, code, exit_code, time.monotonic() - signalled

    try:
        signalled, code, exit_code, took = asyncio.run(scenario())
    finally:
        daemon.stop()
    events = [e for _, e in received]
    assert exit_code == 0 and took < grace * 2 + 2, (exit_code, took, daemon.log.read_text()[-2000:])
    assert code == grpc.StatusCode.OK
    assert events[-1].kind == STATE and events[-1].state == pb.ENDED  # drained to the end, not cut off
    late = [e for at, e in received if at > signalled and e.kind == FINAL]
    assert late, "the audio received before SIGTERM was finalised and published"
    log = daemon.log.read_text()
    assert "Traceback" not in log and "level=error" not in log


# --- auth ----------------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_auth_refuses_and_counts_wrong_missing_and_misplaced_tokens_clients_without_certificates_and_old_tls(
        tmp_path):
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    (d / "tokens").write_text("right-token\n")
    metrics = f"127.0.0.1:{free_port()}"
    config = f"""[server]
listen = "{{address}}"
tls_cert = "{d / 'server.pem'}"
tls_key = "{d / 'server.key'}"
client_ca = "{d / 'ca.pem'}"
token_file = "{d / 'tokens'}"
auth_max_failures = 5
auth_lockout_seconds = 2.0

[metrics]
listen = "{metrics}"
"""
    daemon = DaemonProcess(config, d)
    daemon.start(ready=lambda: _port_open(daemon.port))

    def creds(cert: bool):
        return grpc.ssl_channel_credentials((d / "ca.pem").read_bytes(),
                                            (d / "client.key").read_bytes() if cert else None,
                                            (d / "client.pem").read_bytes() if cert else None)

    async def list_(metadata, cert: bool = True) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(daemon.address, creds(cert)) as channel:
            try:
                await pb_grpc.SessionsStub(channel).List(pb.ListSessionsRequest(), metadata=metadata, timeout=5)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    async def scenario():
        right = (("authorization", "Bearer right-token"),)
        outcomes = {
            "right": await list_(right),
            "no certificate": await list_(right, cert=False),
            "missing": await list_(()),
            "wrong": await list_((("authorization", "Bearer wrong-token"),)),
            "misplaced": await list_((("x-token", "right-token"),)),
            "wrong scheme": await list_((("authorization", "Basic right-token"),)),
        }
        # Four failures so far: the fifth locks this address out, even for the right token.
        outcomes["fifth"] = await list_((("authorization", "Bearer another-guess"),))
        outcomes["right while locked"] = await list_(right)
        await asyncio.sleep(2.2)
        outcomes["right after"] = await list_(right)
        return outcomes

    try:
        outcomes = asyncio.run(scenario())
        old_tls = _tls_handshake(daemon.port, ssl.TLSVersion.TLSv1_1, d)
        modern_tls = _tls_handshake(daemon.port, ssl.TLSVersion.TLSv1_2, d)
        samples = scrape(metrics)
    finally:
        assert daemon.stop() == 0
    assert outcomes == {"right": grpc.StatusCode.OK, "no certificate": grpc.StatusCode.UNAVAILABLE,
                        "missing": grpc.StatusCode.UNAUTHENTICATED, "wrong": grpc.StatusCode.UNAUTHENTICATED,
                        "misplaced": grpc.StatusCode.UNAUTHENTICATED, "wrong scheme": grpc.StatusCode.UNAUTHENTICATED,
                        "fifth": grpc.StatusCode.UNAUTHENTICATED, "right while locked": grpc.StatusCode.UNAUTHENTICATED,
                        "right after": grpc.StatusCode.OK}
    assert value(samples, "appliance_auth_failures_total") == 6  # four wrong, the fifth, and the locked-out one
    # TLS < 1.2 refused by the daemon, which closes the connection (this client can speak TLS 1.1
    # to a server that allows it); the same client at TLS 1.2 gets through.
    assert old_tls is not None and modern_tls is None, (old_tls, modern_tls)
    log = daemon.log.read_text()
    assert "right-token" not in log and "another-guess" not in log
    assert log.count("rejected") <= 2  # the first failure and the lockout, not one line per guess


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tls_handshake(port: int, version: ssl.TLSVersion, pki: Path) -> str | None:
    """None if a TLS handshake at exactly `version` (with the client certificate) succeeds, else why not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(pki / "client.pem", pki / "client.key")
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point (this client can still speak it)
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2"])
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the server reads: a client cert refused shows here
                tls.recv(1)
        return None
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
