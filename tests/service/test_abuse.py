"""The daemon under abuse, on loopback: bytes that are no message, truncated and idle requests,
hostile session ids, stalled subscribers, guessed tokens. Each gets a clear status, is counted,
leaves no traceback in the log and disturbs no one else."""
from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.pcm import encode_s16le
from appliance.service.client import Endpoint, chunks, follow, health_status, transcribe
from tests.service.conftest import serving
from tests.service.rawgrpc import RawClient, frame

FINAL = pb.SubtitleEvent.FINAL
GARBAGE = b"\xff\xff\xff\xff\x0f"  # an invalid tag and a truncated varint: no protobuf message


def sample_value(daemon, name: str, **labels) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def no_tracebacks(caplog) -> list[str]:
    """The server's log records that carry a traceback or are errors (none may, for any client's
    doing). The clients run in this process too: a client's own request-writing task, left
    pending when the server ends its call, is not the server's."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if (r.exc_info or r.levelno >= logging.ERROR)
            and "grpc/aio/_call.py" not in r.getMessage()]


async def _code(call) -> tuple[grpc.StatusCode, str]:
    try:
        result = await call
        if hasattr(result, "__aiter__"):
            [_ async for _ in result]
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()


async def _stream_code(call) -> tuple[grpc.StatusCode, str, list]:
    events = []
    try:
        async for event in call:
            events.append(event)
        return grpc.StatusCode.OK, "", events
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details(), events


def speech(sample: np.ndarray, start: float, end: float) -> bytes:
    return encode_s16le(sample[int(start * 16000): int(end * 16000)])


def test_undecodable_truncated_and_empty_requests_are_refused_and_counted(models, sample, caplog):
    caplog.set_level(logging.INFO)
    unary = ["/appliance.v1.Sessions/List", "/appliance.v1.Sessions/Get", "/appliance.v1.Sessions/Export",
             "/grpc.health.v1.Health/Check"]

    async def scenario():
        async with serving(models, request_seconds=1.0) as (daemon, address):
            results = {}
            async with grpc.aio.insecure_channel(address) as channel:
                for path in unary:  # raw bytes: no serializer on either side
                    results[path] = await _code(channel.unary_unary(path)(GARBAGE, timeout=5))
                results["Subscribe"] = (await _stream_code(
                    channel.unary_stream("/appliance.v1.Subtitles/Subscribe")(GARBAGE, timeout=5)))[:2]
                results["Transcribe first"] = (await _stream_code(
                    channel.stream_stream("/appliance.v1.Subtitles/Transcribe")(iter([GARBAGE]), timeout=5)))[:2]
                # A good chunk, then garbage: the audio before it is transcribed, then the status.
                first = pb.AudioChunk(session_id="then-garbage", sample_rate=16000, encoding=pb.PCM_S16LE,
                                      channels=1, data=speech(sample, 6.5, 8.5)[:64000]).SerializeToString()
                code, details, events = await _stream_code(channel.stream_stream(
                    "/appliance.v1.Subtitles/Transcribe")(iter([first, GARBAGE]), timeout=30))
                results["Transcribe later"] = (code, details)
                results["Transcribe later events"] = [pb.SubtitleEvent.FromString(e) for e in events]
            # A unary message that never arrives whole: answered once request_seconds have passed.
            raw = RawClient(address, window=65535)
            started = time.monotonic()
            truncated = await asyncio.to_thread(
                raw.wait, raw.call("/appliance.v1.Sessions/List", frame(b"", declared=100), end=False), 5.0)
            truncated_after = time.monotonic() - started
            raw.close()
            await asyncio.sleep(0.3)  # the server records an outcome after its status went out
            counted = {m: sample_value(daemon, "appliance_bad_input_total", grpc_method=m)
                       for m in ("List", "Get", "Export", "Check", "Subscribe", "Transcribe")}
            handled = {(m, c): sample_value(daemon, "grpc_server_handled_total", grpc_service="appliance.v1.Sessions",
                                            grpc_method=m, grpc_code=c)
                       for m in ("List", "Get", "Export") for c in ("INVALID_ARGUMENT", "DEADLINE_EXCEEDED")}
            return results, truncated, truncated_after, counted, handled

    results, truncated, truncated_after, counted, handled = asyncio.run(scenario())
    for path in unary + ["Subscribe", "Transcribe first", "Transcribe later"]:
        code, details = results[path]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, code, details)
        assert "undecodable request message" in details, (path, details)
    assert any(e.kind == pb.SubtitleEvent.SESSION_STATE for e in results["Transcribe later events"])
    assert truncated.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], truncated
    assert truncated_after < 4.0
    assert counted == {"List": 2, "Get": 1, "Export": 1, "Check": 1, "Subscribe": 1, "Transcribe": 2}, counted
    assert handled == {("List", "INVALID_ARGUMENT"): 1, ("List", "DEADLINE_EXCEEDED"): 1,  # unary ones counted
                       ("Get", "INVALID_ARGUMENT"): 1, ("Get", "DEADLINE_EXCEEDED"): 0,  # by outcome too
                       ("Export", "INVALID_ARGUMENT"): 1, ("Export", "DEADLINE_EXCEEDED"): 0}, handled
    assert no_tracebacks(caplog) == []
    refusals = [r for r in caplog.records if "refused a" in r.getMessage()]
    assert len(refusals) <= len(counted)  # one line per method per period, not one per request


def test_an_idle_push_is_ended_and_frees_its_slot(models, sample, caplog):
    caplog.set_level(logging.INFO)

    released = []  # the clients' request generators return once the test is over (a clean client)

    async def until_released():
        while not released:
            await asyncio.sleep(0.05)

    async def declared_then_silent():
        yield pb.AudioChunk(session_id="idle", sample_rate=16000, encoding=pb.PCM_S16LE, channels=1,
                            data=speech(sample, 6.5, 7.0))
        await until_released()  # sends nothing more, and does not close

    async def nothing_at_all():
        await until_released()
        return
        yield  # pragma: no cover - an async generator that yields nothing

    async def scenario():
        async with serving(models, push_idle_seconds=1.0, max_push_sessions=1) as (daemon, address):
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.SubtitlesStub(channel)
                started = time.monotonic()
                declared = await asyncio.wait_for(_stream_code(stub.Transcribe(declared_then_silent())), 15)
                declared_after = time.monotonic() - started
                silent = await asyncio.wait_for(_stream_code(stub.Transcribe(nothing_at_all())), 15)
                # The slot is free again: a real push is accepted and transcribed.
                audio = chunks(speech(sample, 6.0, 9.0), 16000, pb.PCM_S16LE, 1, session_id="after")
                after = await _stream_code(transcribe(Endpoint(address), audio, realtime=False))
                released.append(True)
                await asyncio.sleep(0.2)
            return declared, declared_after, silent, after, sample_value(
                daemon, "appliance_bad_input_total", grpc_method="Transcribe")

    declared, declared_after, silent, after, counted = asyncio.run(scenario())
    assert declared[0] == grpc.StatusCode.DEADLINE_EXCEEDED and "push_idle_seconds" in declared[1], declared[:2]
    assert any(e.kind == pb.SubtitleEvent.SESSION_STATE and e.state == pb.ENDED for e in declared[2])
    assert declared_after < 10
    assert silent[0] == grpc.StatusCode.DEADLINE_EXCEEDED, silent[:2]
    assert after[0] == grpc.StatusCode.OK and any(e.kind == FINAL for e in after[2]), after[:2]
    assert counted == 2
    assert no_tracebacks(caplog) == []


BAD_IDS = {"100 KiB": "x" * 100_000, "NUL": "a\x00b", "newline": "a\nb", "path": "../../etc/passwd",
           "65 characters": "x" * 65, "not ASCII": "salle-é", "space": "room one"}


def test_pushed_session_ids_follow_the_room_rule_and_ended_ones_are_forgotten(models, sample, caplog):
    caplog.set_level(logging.INFO)

    async def scenario():
        async with serving(models, max_ended_sessions=1, ended_session_seconds=3.0) as (daemon, address):
            endpoint = Endpoint(address)
            refused = {}
            raw = RawClient(address, window=65535)  # a grpc client may report its own send failing instead
            for case, session_id in BAD_IDS.items():
                audio = chunks(speech(sample, 6.5, 7.0), 16000, pb.PCM_S16LE, 1, session_id=session_id)
                outcome = await asyncio.to_thread(raw.wait, raw.call(
                    "/appliance.v1.Subtitles/Transcribe", frame(audio[0].SerializeToString())), 10.0)
                refused[case] = (outcome.status, outcome.message)
            raw.close()
            for session_id in ("secret-room", "second"):
                audio = chunks(speech(sample, 6.0, 11.0), 16000, pb.PCM_S16LE, 1, session_id=session_id)
                code, _, events = await _stream_code(transcribe(endpoint, audio, realtime=False))
                assert code == grpc.StatusCode.OK and any(e.kind == FINAL for e in events)
            await asyncio.sleep(0.2)  # health updates run as their own tasks
            async with endpoint.channel() as channel:
                sessions = pb_grpc.SessionsStub(channel)

                async def status(service: str) -> str:
                    return await health_status(channel, service, timeout=5)

                unknown = await _stream_code(pb_grpc.SubtitlesStub(channel).Subscribe(
                    pb.SubscribeRequest(session_id="z" * 20_000)))
                listed = [s.session_id for s in (await sessions.List(pb.ListSessionsRequest())).sessions]
                kept = (listed, await status("session/secret-room"), await status("session/second"),
                        sample_value(daemon, "appliance_final_word_latency_seconds_count", session="secret-room"),
                        sample_value(daemon, "appliance_final_word_latency_seconds_count", session="second"))
                await asyncio.sleep(4.5)  # past ended_session_seconds (and the next sweep)
                listed_later = [s.session_id for s in (await sessions.List(pb.ListSessionsRequest())).sessions]
                later = (listed_later, await status("session/second"),
                         sample_value(daemon, "appliance_final_word_latency_seconds_count", session="second"))
            return refused, unknown, kept, later, sample_value(daemon, "appliance_bad_input_total",
                                                               grpc_method="Transcribe")

    refused, unknown, kept, later, counted = asyncio.run(scenario())
    for case, (code, details) in refused.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "session id" in details, (case, code, details)
        assert len(details) < 200, case
    assert counted == len(BAD_IDS)
    code, details, _ = unknown
    assert code == grpc.StatusCode.NOT_FOUND and len(details) < 200, (code, details[:300])
    assert "secret-room" not in details and "second" not in details  # other rooms are not disclosed
    listed, secret_health, second_health, secret_series, second_series = kept
    assert listed == ["second"]  # max_ended_sessions = 1: the older one is gone...
    assert secret_health == "NOT_FOUND" and secret_series == 0  # ...with its health entry and series
    assert second_health == "NOT_SERVING" and second_series > 0
    assert later == ([], "NOT_FOUND", 0)  # and after ended_session_seconds, the newest too
    assert no_tracebacks(caplog) == []


def test_a_stalled_subscriber_is_ended_in_a_normal_room_and_resuming_clients_lose_nothing(models, sample, caplog):
    """Raw HTTP/2 subscribers that never open their window: one during the session, one after it
    ended (replaying what is retained). Both are ended and counted; a normal subscriber and
    `follow` (what `appliance subscribe` runs) with a stall of its own lose no final."""
    caplog.set_level(logging.INFO)

    async def stalling_follower(endpoint: Endpoint) -> list[pb.SubtitleEvent]:
        got = []
        for _ in range(200):
            try:
                async for event in follow(endpoint, "room", include_partials=True):
                    got.append(event)
                    if len(got) == 3:
                        await asyncio.sleep(3.0)  # stops reading: its window fills, the server cuts it
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.02)
        return got

    async def normal(endpoint: Endpoint) -> list[pb.SubtitleEvent]:
        for _ in range(200):
            try:
                return [e async for e in follow(endpoint, "room", include_partials=False)]
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.02)
        raise AssertionError("room never appeared")

    async def scenario():
        async with serving(models, subscriber_backlog_seconds=1.0) as (daemon, address):
            endpoint = Endpoint(address)
            small_window = Endpoint(address, options=(("grpc.http2.lookahead_bytes", 1024),
                                                      ("grpc.http2.bdp_probe", 0)))
            audio = chunks(encode_s16le(sample), 16000, pb.PCM_S16LE, 1, session_id="room", chunk_seconds=0.05)
            pushed = asyncio.create_task(_stream_code(transcribe(endpoint, audio, realtime=True,
                                                                 chunk_seconds=0.025)))
            watchers = [asyncio.create_task(normal(endpoint)), asyncio.create_task(stalling_follower(small_window))]
            while daemon.get("room") is None:
                await asyncio.sleep(0.02)
            request = frame(pb.SubscribeRequest(session_id="room", include_partials=True).SerializeToString())
            during = RawClient(address, window=0)
            stream = during.call("/appliance.v1.Subtitles/Subscribe", request)
            stalled_during = await asyncio.to_thread(during.wait, stream, 60.0)
            code, _, pushed_events = await pushed
            ended_at = time.monotonic()
            normal_events, follower_events = await asyncio.gather(*watchers)
            after = RawClient(address, window=0)
            stalled_after = await asyncio.to_thread(after.wait, after.call("/appliance.v1.Subtitles/Subscribe",
                                                                           request), 15.0)
            after_took = time.monotonic() - ended_at
            during.close(), after.close()
            return (code, pushed_events, normal_events, follower_events, stalled_during, stalled_after, after_took,
                    sample_value(daemon, "appliance_subscribers_ended_slow_total", session="room"))

    code, pushed, normal_events, follower, during, after, after_took, ended_slow = asyncio.run(scenario())
    finals = [(e.seq, e.text) for e in pushed if e.kind == FINAL]
    assert code == grpc.StatusCode.OK and len(finals) >= 5
    assert during.ended and after.ended, (during, after)  # each got a status, a reset or a closed connection
    assert after_took < 10  # not lingering until the client goes
    assert [(e.seq, e.text) for e in normal_events if e.kind == FINAL] == finals
    seqs = [e.seq for e in follower]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)  # resumed by seq: no duplicate
    assert [(e.seq, e.text) for e in follower if e.kind == FINAL] == finals  # and no final lost
    assert ended_slow >= 3  # the two raw ones and the follower's stall
    assert no_tracebacks(caplog) == []


def test_guessing_tokens_locks_the_address_out(models, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    tokens = tmp_path / "tokens"
    tokens.write_text("the-token\n")
    good, wrong = (("authorization", "Bearer the-token"),), (("authorization", "Bearer guess"),)

    async def scenario():
        async with serving(models, token_file=tokens, auth_max_failures=3, auth_lockout_seconds=1.0) as (d, address):
            async with grpc.aio.insecure_channel(address) as channel:
                sessions = pb_grpc.SessionsStub(channel)

                async def list_(metadata) -> tuple[grpc.StatusCode, str]:
                    return await _code(sessions.List(pb.ListSessionsRequest(), metadata=metadata, timeout=5))

                before = [await list_(wrong) for _ in range(3)]
                locked_good = await list_(good)
                flood = await asyncio.gather(*(list_(wrong) for _ in range(50)))
                health = await health_status(channel, timeout=5)
                await asyncio.sleep(1.2)
                unlocked_good = await list_(good)
            return before, locked_good, flood, health, unlocked_good, sample_value(
                d, "appliance_auth_failures_total", grpc_method="List")

    before, locked_good, flood, health, unlocked_good, counted = asyncio.run(scenario())
    assert all(code == grpc.StatusCode.UNAUTHENTICATED and details == "invalid token" for code, details in before)
    assert locked_good[0] == grpc.StatusCode.UNAUTHENTICATED and "too many failed" in locked_good[1]
    assert all(code == grpc.StatusCode.UNAUTHENTICATED and "too many failed" in d for code, d in flood)
    assert health == "SERVING"  # health stays open
    assert unlocked_good == (grpc.StatusCode.OK, "")
    assert counted == 3 + 1 + 50  # every refusal counted
    warnings = [r for r in caplog.records if r.name == "appliance.service.auth"]
    assert len(warnings) <= 2, [r.getMessage() for r in warnings]  # the first failure and the lockout
    assert not any("guess" in r.getMessage() or "the-token" in r.getMessage() for r in caplog.records)
