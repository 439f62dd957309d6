"""The HTTP face's pure parts and what it shares with gRPC: SSE messages, event JSON, the shared
export, tokens, subscribe-with-backlog, and [http] validation (no server)."""
import asyncio

import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance.config import AppConfig, ConfigError, HttpConfig, ServerConfig, load_config
from appliance.delivery.eventlog import EventLog
from appliance.delivery.export import NoSpeakerLabels, export
from appliance.delivery.fanout import Fanout, Subscriber, subscribe
from appliance.delivery.tokens import token_matches
from appliance.http import sse
from appliance.service.convert import event_to_pb
from appliance.subtitles.events import EventKind, SessionState, SubtitleEvent
from appliance.subtitles.types import Word
from appliance.subtitles.writers import to_webvtt

WORDS = (Word("Hello", 0.5, 0.9, 0.8, "S1"), Word("there.", 1.0, 1.5, 0.9, "S1"))


def _final(log: EventLog, text: str = "Hello there.", speaker: str | None = "S1") -> SubtitleEvent:
    return log.publish(SubtitleEvent(EventKind.FINAL, cue_id="c1", speaker=speaker, start=0.5, end=1.5,
                                     lines=(text,), words=WORDS if speaker else ()))


def test_an_sse_message_is_one_json_line_with_its_seq_as_id():
    event = _final(EventLog("room", clock=lambda: 1000.25), text="two\nlines")
    data = sse.subtitle_message(event)
    assert data.startswith(b"id: 1\ndata: {") and data.endswith(b"}\n\n") and data.count(b"\n") == 3
    (parsed,) = sse.parse_stream(data.decode())
    assert parsed["id"] == "1" and parsed["data"]["text"] == "two\nlines" and parsed["data"]["created"] == 1000.25


def test_named_events_and_retry_parse_back():
    text = (sse.message({"epoch": "ab"}, event="hello", retry_ms=1000).decode() + ": a comment\n\n"
            + sse.message({"state": "running"}, event="heartbeat").decode())
    hello, beat = sse.parse_stream(text)
    assert hello == {"retry": "1000", "event": "hello", "data": {"epoch": "ab"}}
    assert beat == {"event": "heartbeat", "data": {"state": "running"}}


def test_event_json_has_the_fields_of_the_grpc_event():
    log = EventLog("room")
    event = _final(log)
    as_json, as_pb = sse.event_to_json(event), event_to_pb(event)
    assert set(as_json) == {f.name for f in pb.SubtitleEvent.DESCRIPTOR.fields}
    assert as_json["kind"] == "final" and as_json["seq"] == as_pb.seq and as_json["speaker"] == "S1"
    assert as_json["words"][0] == {"text": "Hello", "start": 0.5, "end": 0.9, "probability": 0.8, "speaker": "S1"}
    state = sse.event_to_json(log.publish(SubtitleEvent(EventKind.SESSION_STATE, state=SessionState.UNAVAILABLE,
                                                        message="device gone")))
    assert state["state"] == "unavailable" and state["message"] == "device gone"


def test_export_is_the_writers_output_and_rttm_needs_speakers():
    log = EventLog("room")
    _final(log)
    assert export(log, "vtt", duration=2.0, language="en").content == to_webvtt(log.cues())
    assert export(log, "rttm", duration=2.0, language="en").content.startswith("SPEAKER room 1 0.500 1.000")
    assert export(log, "json", duration=2.0, language="en").media_type == "application/json"
    unlabelled = EventLog("hall")
    _final(unlabelled, speaker=None)
    with pytest.raises(NoSpeakerLabels, match="hall"):
        export(unlabelled, "rttm", duration=2.0, language="en")


def test_tokens_match_exactly():
    tokens = [b"one-token", b"two"]
    assert token_matches("two", tokens) and token_matches(" one-token ", tokens)
    assert not token_matches("tw", tokens) and not token_matches("two2", tokens) and not token_matches("", tokens)


def test_subscribe_sends_the_backlog_once_and_partials_only_if_asked():
    async def scenario():
        log, fanout = EventLog("room"), Fanout()
        for kind in (EventKind.FINAL, EventKind.PARTIAL):
            fanout.publish(log.publish(SubtitleEvent(kind, cue_id="c1")))
        finals_only = Subscriber(include_partials=False, max_backlog=8)
        everything = Subscriber(include_partials=True, max_backlog=8)
        backlogs = [[e.seq for e in subscribe(log, fanout, 0, s)] for s in (finals_only, everything)]
        fanout.publish(log.publish(SubtitleEvent(EventKind.FINAL, cue_id="c2")))
        return backlogs, finals_only.backlog, everything.backlog, len(fanout.subscribers)

    (finals_backlog, all_backlog), finals_queued, all_queued, subscribers = asyncio.run(scenario())
    assert finals_backlog == [1] and all_backlog == [1, 2]
    assert finals_queued == 1 and all_queued == 1 and subscribers == 2  # seq 3 live, not twice


def test_each_log_has_its_own_epoch():
    assert EventLog("room").epoch != EventLog("room").epoch


def test_http_config_is_validated_like_the_others():
    assert AppConfig().http == HttpConfig(enabled=True, listen="127.0.0.1:8080")
    with pytest.raises(ConfigError, match=r"^http\.listen: 0\.0\.0\.0:8080 is not loopback"):
        load_config(overrides=["http.listen=0.0.0.0:8080"])
    assert load_config(overrides=["http.listen=0.0.0.0:8080", "http.allow_insecure_remote=true"]).http.listen
    assert not load_config(overrides=["http.listen=0.0.0.0:8080", "http.enabled=false"]).http.enabled
    for override, key in (("http.listen=8080", "http.listen"), ("http.heartbeat_seconds=0", "http.heartbeat_seconds"),
                          ("http.enabled=2", "http.enabled"), ("http.port=1", "http.port")):
        with pytest.raises(ConfigError, match=f"^{key.replace('.', '[.]')}"):
            load_config(overrides=[override])
    assert AppConfig(server=ServerConfig(listen="127.0.0.1:1")).http.listen == "127.0.0.1:8080"
