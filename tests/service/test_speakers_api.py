"""Speakers with names, over gRPC on loopback with the real models and real speech: voiceprint
enrolment (Speakers.Enroll/List/Delete), live labels named after enrolled people, NameSpeaker,
and the refusals (codes, the bad-input metric, nothing stored where voiceprints are off)."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import grpc
import numpy as np
import pytest

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.audio.decode import load_audio
from appliance.audio.pcm import encode_s16le
from appliance.config import SAMPLE_RATE, ConfigError, DiarizationConfig, load_config
from appliance.diarization.voiceprint_store import SUFFIX, VoiceprintStore
from appliance.service.client import Endpoint, chunks, follow, transcribe
from appliance.subtitles.types import SpeakerTurn
from tests.data.corpus import voice_pieces
from tests.data.fetch import fetch
from tests.service.conftest import serving

FINAL, UPDATE = pb.SubtitleEvent.FINAL, pb.SubtitleEvent.SPEAKER_UPDATE
READER, MORGAN = "Sonnet Reader", "Morgan"  # the LibriVox sonnet reader; the MFA corpus speaker
VOICES = {"sonnet-reader": READER, "mfa-speaker": MORGAN}


def _cut(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[int(round(start * SAMPLE_RATE)):int(round(end * SAMPLE_RATE))]


@pytest.fixture(scope="module")
def material() -> tuple[dict[str, np.ndarray], np.ndarray, list[SpeakerTurn]]:
    return two_people()


def two_people() -> tuple[dict[str, np.ndarray], np.ndarray, list[SpeakerTurn]]:
    """Enrolment audio of two people, and a conversation of theirs cut from other speech.

    The sonnet reader enrols on the first three stretches of the sonnet and speaks the last
    four in the conversation; the MFA speaker enrols on another day's recording (with a cold,
    cold_corpus3) and speaks stretches of the acoustic-corpus monologue. Pushed at real-time
    pace, as a room's client would (41 s).
    """
    cache = fetch()
    pieces = voice_pieces(cache)
    sonnet, mfa = pieces["sonnet"], pieces["mfa-acoustic"]
    sonnet_audio, mfa_audio = load_audio(cache / sonnet[0].file), load_audio(cache / mfa[0].file)
    enrolment = {READER: _cut(sonnet_audio, sonnet[0].start - 0.2, sonnet[2].end + 0.2),
                 MORGAN: load_audio(cache / "mfa/cold_corpus3.wav")[:28 * SAMPLE_RATE]}
    rng = np.random.RandomState(16)
    parts, turns, at = [rng.standard_normal(SAMPLE_RATE) * 5e-4], [], 1.0
    for piece in [sonnet[3], mfa[0], sonnet[5], mfa[1], sonnet[6], mfa[3], sonnet[4]]:
        audio = sonnet_audio if piece.speaker == "sonnet-reader" else mfa_audio
        speech = _cut(audio, piece.start - 0.05, piece.end + 0.05)
        speech = speech * (0.05 / np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
        turns.append(SpeakerTurn(at + 0.05, at + len(speech) / SAMPLE_RATE - 0.05, piece.speaker))
        gap = rng.standard_normal(int(0.7 * SAMPLE_RATE)) * 5e-4
        parts += [speech, gap]
        at += (len(speech) + len(gap)) / SAMPLE_RATE
    return enrolment, np.concatenate(parts).astype(np.float32), turns


def _enroll_request(name: str, samples: np.ndarray, **change) -> pb.EnrollRequest:
    fields = dict(name=name, sample_rate=SAMPLE_RATE, encoding=pb.PCM_S16LE, channels=1,
                  audio=encode_s16le(samples)) | change
    return pb.EnrollRequest(**fields)


async def _code(call) -> tuple[grpc.StatusCode, str]:
    try:
        await call
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()


def _bad_inputs(daemon, method: str) -> float:
    return daemon.metrics.registry.get_sample_value("appliance_bad_input_total", {"grpc_method": method}) or 0.0


def _latest(events) -> dict[str, pb.SubtitleEvent]:
    """Each final cue as it stands: its FINAL, then any SPEAKER_UPDATE."""
    cues: dict[str, pb.SubtitleEvent] = {}
    for e in events:
        if e.kind in (FINAL, UPDATE):
            cues[e.cue_id] = e
    return cues


def _who(turns: list[SpeakerTurn], start: float, end: float) -> str | None:
    talk = {}
    for t in turns:
        talk[t.speaker] = talk.get(t.speaker, 0.0) + max(0.0, min(end, t.end) - max(start, t.start))
    best = max(talk, key=talk.__getitem__)
    return best if talk[best] > 0 else None


@pytest.fixture(scope="module")
def enrolled_run(models, material, tmp_path_factory):
    """A daemon with voiceprints on: two people enrolled, bad enrolments tried, the conversation
    pushed, then one voiceprint deleted."""
    enrolment, conversation, _ = material
    where = tmp_path_factory.mktemp("state") / "voiceprints"  # created by the daemon

    async def scenario():
        async with serving(models, diarization=DiarizationConfig(voiceprints=where)) as (daemon, address):
            endpoint = Endpoint(address)
            async with endpoint.channel() as channel:
                speakers = pb_grpc.SpeakersStub(channel)
                enrolled = [await speakers.Enroll(_enroll_request(name, audio)) for name, audio in enrolment.items()]
                files_after_enrol = {p.name: stat.S_IMODE(p.stat().st_mode) for p in where.iterdir()}
                speech = enrolment[READER]
                refused = {
                    "duplicate": await _code(speakers.Enroll(_enroll_request(READER, speech))),
                    "short": await _code(speakers.Enroll(_enroll_request("Shorty", speech[:SAMPLE_RATE]))),
                    "silent": await _code(speakers.Enroll(_enroll_request("Quiet", np.zeros(5 * SAMPLE_RATE)))),
                    "no format": await _code(speakers.Enroll(_enroll_request("Nobody", speech, sample_rate=0))),
                    "odd bytes": await _code(speakers.Enroll(_enroll_request("Odd", speech, audio=b"\x01\x02\x03"))),
                    "encoding": await _code(speakers.Enroll(_enroll_request("Enc", speech, encoding=7))),
                    "long name": await _code(speakers.Enroll(_enroll_request("x" * 65, speech))),
                    "control": await _code(speakers.Enroll(_enroll_request("Eve\x07", speech))),
                    "empty name": await _code(speakers.Enroll(_enroll_request("", speech))),
                }
                bad_enrol = _bad_inputs(daemon, "Enroll")
                pushed = [e async for e in transcribe(
                    endpoint, chunks(encode_s16le(conversation), SAMPLE_RATE, pb.PCM_S16LE, 1, session_id="panel"),
                    realtime=True)]
                listed = await speakers.List(pb.ListVoiceprintsRequest())
                deleted = await _code(speakers.Delete(pb.DeleteVoiceprintRequest(id=enrolled[1].id)))
                delete_again = await _code(speakers.Delete(pb.DeleteVoiceprintRequest(id=enrolled[1].id)))
                after_delete = await speakers.List(pb.ListVoiceprintsRequest())
                files_after_delete = sorted(p.name for p in where.iterdir())
                bad_delete = _bad_inputs(daemon, "Delete")
            return dict(enrolled=enrolled, files_after_enrol=files_after_enrol, refused=refused,
                        bad_enrol=bad_enrol, pushed=pushed, listed=listed, deleted=deleted,
                        delete_again=delete_again, after_delete=after_delete,
                        files_after_delete=files_after_delete, bad_delete=bad_delete, where=where)

    return asyncio.run(scenario())


def test_enrolment_stores_only_a_vector_per_person_in_private_files(enrolled_run):
    run = enrolled_run
    assert [v.name for v in run["enrolled"]] == [READER, MORGAN]
    assert all(v.id.startswith("vp-") and v.speech_seconds >= 10 for v in run["enrolled"])
    assert stat.S_IMODE(run["where"].stat().st_mode) == 0o700
    files = run["files_after_enrol"]
    assert sorted(files) == sorted(f"{v.id}{SUFFIX}" for v in run["enrolled"])  # ids, never names
    assert set(files.values()) == {0o600}
    assert [v.name for v in run["listed"].voiceprints] == [READER, MORGAN]
    assert run["listed"].directory == str(run["where"])


def test_live_labels_carry_the_enrolled_names(enrolled_run, material):
    _, _, turns = material
    cues = _latest(enrolled_run["pushed"])
    assert len(cues) >= 6, cues
    right = sum(1 for c in cues.values() if c.speaker == VOICES[_who(turns, c.start, c.end)])
    named = [c for c in cues.values() if c.speaker in (READER, MORGAN)]
    wrong = [(c.cue_id, c.speaker, c.text) for c in named if c.speaker != VOICES[_who(turns, c.start, c.end)]]
    assert {c.speaker for c in named} == {READER, MORGAN}
    assert right >= 0.8 * len(cues), [(c.speaker, c.text) for c in cues.values()]
    assert len(wrong) <= 0.1 * len(cues), wrong
    # The words carry the names too, and a name given after a cue was final came as an update.
    assert {w.speaker for c in named for w in c.words} <= {READER, MORGAN, "S1", "S2", "S3", ""}


def test_bad_enrolments_are_refused_with_the_reason_and_counted(enrolled_run):
    refused = enrolled_run["refused"]
    assert refused["duplicate"][0] == grpc.StatusCode.ALREADY_EXISTS
    assert refused["short"] == (grpc.StatusCode.INVALID_ARGUMENT, refused["short"][1])
    assert "too short" in refused["short"][1]
    assert refused["silent"][0] == grpc.StatusCode.INVALID_ARGUMENT and "silent" in refused["silent"][1]
    assert refused["no format"][0] == grpc.StatusCode.INVALID_ARGUMENT and "sample_rate" in refused["no format"][1]
    assert refused["odd bytes"][0] == grpc.StatusCode.INVALID_ARGUMENT and "whole number" in refused["odd bytes"][1]
    assert refused["encoding"][0] == grpc.StatusCode.INVALID_ARGUMENT and "encoding" in refused["encoding"][1]
    assert refused["long name"][0] == grpc.StatusCode.INVALID_ARGUMENT and "at most 64" in refused["long name"][1]
    assert refused["control"][0] == grpc.StatusCode.INVALID_ARGUMENT and "control" in refused["control"][1]
    assert refused["empty name"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert enrolled_run["bad_enrol"] == len(refused)
    assert not any("Eve" in message or "x" * 65 in message for _, message in refused.values())


def test_delete_removes_the_file(enrolled_run):
    run = enrolled_run
    assert run["deleted"][0] == grpc.StatusCode.OK
    assert run["delete_again"][0] == grpc.StatusCode.NOT_FOUND and run["bad_delete"] == 1
    assert [v.name for v in run["after_delete"].voiceprints] == [READER]
    assert run["files_after_delete"] == [f"{run['enrolled'][0].id}{SUFFIX}"]


@pytest.fixture(scope="module")
def named_run(models, material, tmp_path_factory):
    """A daemon with voiceprints off: a person names a speaker while the conversation is pushed."""
    _, conversation, _ = material
    state = tmp_path_factory.mktemp("nothing-here")

    async def scenario():
        async with serving(models) as (daemon, address):
            assert daemon.voiceprints is None
            endpoint = Endpoint(address)
            audio = chunks(encode_s16le(conversation), SAMPLE_RATE, pb.PCM_S16LE, 1, session_id="panel")
            events: list[pb.SubtitleEvent] = []
            async with endpoint.channel() as channel:
                sessions, speakers = pb_grpc.SessionsStub(channel), pb_grpc.SpeakersStub(channel)
                off = {
                    "enroll": await _code(speakers.Enroll(_enroll_request(READER, conversation[:5 * SAMPLE_RATE]))),
                    "list": await _code(speakers.List(pb.ListVoiceprintsRequest())),
                    "delete": await _code(speakers.Delete(pb.DeleteVoiceprintRequest(id="vp-0"))),
                }
                reply = refusals = None
                async for event in transcribe(endpoint, audio, realtime=True):
                    events.append(event)
                    if reply is None and event.kind == FINAL and event.speaker:
                        reply = await sessions.NameSpeaker(pb.NameSpeakerRequest(
                            session_id="panel", speaker=event.speaker, name="Chair"))
                        named_at = event.seq
                        refusals = {
                            "session": await _code(sessions.NameSpeaker(pb.NameSpeakerRequest(
                                session_id="nope", speaker="S1", name="X"))),
                            "speaker": await _code(sessions.NameSpeaker(pb.NameSpeakerRequest(
                                session_id="panel", speaker="S9", name="X"))),
                            "name": await _code(sessions.NameSpeaker(pb.NameSpeakerRequest(
                                session_id="panel", speaker=event.speaker, name="x" * 65))),
                            "control": await _code(sessions.NameSpeaker(pb.NameSpeakerRequest(
                                session_id="panel", speaker=event.speaker, name="tab\there"))),
                        }
                resumed = [e async for e in follow(endpoint, "panel", include_partials=False, from_seq=named_at)]
                exports = {name: (await sessions.Export(pb.ExportRequest(session_id="panel", format=fmt))).content
                           for name, fmt in (("vtt", pb.WEBVTT), ("srt", pb.SRT), ("json", pb.JSON))}
            return dict(off=off, reply=reply, named_at=named_at, refusals=refusals, events=events,
                        resumed=resumed, exports=exports, bad=_bad_inputs(daemon, "NameSpeaker"),
                        bad_enroll=_bad_inputs(daemon, "Enroll"), written=list(state.iterdir()))

    here = os.getcwd()
    os.chdir(state)  # where a relative path would land
    try:
        return asyncio.run(scenario())
    finally:
        os.chdir(here)


def test_without_voiceprints_enrolment_is_off_and_nothing_is_written(named_run, tmp_path_factory):
    for code, message in named_run["off"].values():
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "diarization.voiceprints" in message
    assert named_run["written"] == []
    assert named_run["bad_enroll"] == 0  # a feature that is off is not the client's bad input


def test_name_speaker_updates_past_cues_and_names_later_ones(named_run):
    run = named_run
    label = run["reply"].speaker
    assert run["reply"].name == "Chair" and run["reply"].updated_cues >= 1
    events = run["events"]
    updates = [e for e in events if e.kind == UPDATE and e.speaker == "Chair"]
    assert updates and all(e.seq > run["named_at"] for e in updates)
    finals_before = {e.cue_id for e in events if e.kind == FINAL and e.seq <= run["named_at"]}
    assert {e.cue_id for e in updates} <= finals_before | {e.cue_id for e in events if e.kind == FINAL}
    later = [e for e in events if e.kind in (FINAL, pb.SubtitleEvent.PARTIAL) and e.seq > updates[-1].seq]
    assert any(e.speaker == "Chair" for e in later if e.kind == FINAL), "no later cue carries the name"
    assert not any(e.speaker == label or any(w.speaker == label for w in e.words) for e in later)
    # A subscriber resuming after the rename sees the updates; exports use the name.
    assert {e.cue_id for e in run["resumed"] if e.kind == UPDATE and e.speaker == "Chair"} >= {e.cue_id for e in updates}
    assert "<v Chair>" in run["exports"]["vtt"] and "Chair: " in run["exports"]["srt"]
    cues = json.loads(run["exports"]["json"])["segments"]
    assert any(c.get("speaker") == "Chair" for c in cues)
    assert not any(c.get("speaker") == label for c in cues)


def test_name_speaker_refusals_have_codes_and_are_counted(named_run):
    refusals = named_run["refusals"]
    assert refusals["session"][0] == grpc.StatusCode.NOT_FOUND
    assert refusals["speaker"][0] == grpc.StatusCode.NOT_FOUND
    assert refusals["name"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert refusals["control"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert named_run["bad"] == 4


def test_the_new_rpcs_need_the_token(models, tmp_path):
    (tmp_path / "tokens").write_text("secret-one\n")

    async def scenario():
        async with serving(models, token_file=tmp_path / "tokens") as (_, address):
            async with Endpoint(address).channel() as channel:
                anonymous = [await _code(call) for call in (
                    pb_grpc.SpeakersStub(channel).Enroll(pb.EnrollRequest(name="A")),
                    pb_grpc.SpeakersStub(channel).List(pb.ListVoiceprintsRequest()),
                    pb_grpc.SpeakersStub(channel).Delete(pb.DeleteVoiceprintRequest(id="vp-1")),
                    pb_grpc.SessionsStub(channel).NameSpeaker(pb.NameSpeakerRequest(session_id="x")))]
                token = (("authorization", "Bearer secret-one"),)
                known = await _code(pb_grpc.SpeakersStub(channel).List(pb.ListVoiceprintsRequest(), metadata=token))
            return anonymous, known

    anonymous, known = asyncio.run(scenario())
    assert {code for code, _ in anonymous} == {grpc.StatusCode.UNAUTHENTICATED}
    assert known[0] == grpc.StatusCode.FAILED_PRECONDITION  # authenticated; enrolment is off here


def test_doctor_lists_the_count_and_directory_never_the_names(enrolled_run):
    where = enrolled_run["where"]

    def doctor() -> str:
        done = subprocess.run([sys.executable, "-m", "appliance", "doctor", "--set", f"diarization.voiceprints={where}"],
                              capture_output=True, text=True, timeout=300)
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    out = doctor()
    assert f"# voiceprints\n1 enrolled, in {where}\n" in out
    assert READER not in out and MORGAN not in out and "voiceprints: WARNING" not in out
    (only,) = where.iterdir()
    only.chmod(0o644)
    try:
        assert "voiceprints: WARNING: 1 file(s) readable by other users" in doctor()
    finally:
        only.chmod(0o600)


def test_the_store_reloads_its_voiceprints_and_skips_what_it_cannot_use(tmp_path, caplog):
    where = tmp_path / "voiceprints"
    store = VoiceprintStore(where, "campplus")
    kept = store.add("Ada Lovelace", np.array([0.6, 0.8], np.float32), 12.5)
    VoiceprintStore(where, "other-model").add("Other", np.array([1.0, 0.0]), 4.0)
    (where / f"vp-broken{SUFFIX}").write_text("{not json")
    with caplog.at_level("INFO"):
        again = VoiceprintStore(where, "campplus")
    assert [(p.id, p.name, p.speech_seconds) for p in again.all()] == [(kept.id, "Ada Lovelace", 12.5)]
    assert np.allclose(again.all()[0].vector, [0.6, 0.8])
    assert "Ada" not in caplog.text and "0.6" not in caplog.text  # names and vectors never logged
    with pytest.raises(KeyError):
        again.add("Ada Lovelace", np.array([0.0, 1.0]), 5.0)
    with pytest.raises(KeyError):
        again.delete("../../etc/passwd")  # only ids it holds: never a path
    again.delete(kept.id)
    assert not (where / f"{kept.id}{SUFFIX}").exists() and VoiceprintStore(where, "campplus").all() == []


def test_the_voiceprints_key_is_validated(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert load_config(overrides=[f"diarization.voiceprints={tmp_path / 'new'}"]).diarization.voiceprints == tmp_path / "new"
    for value, why in ((tmp_path / "a-file", "is not a directory"), (tmp_path / "no" / "such", "does not exist")):
        with pytest.raises(ConfigError, match=f"diarization.voiceprints: .*{why}"):
            load_config(overrides=[f"diarization.voiceprints={value}"])
    with pytest.raises(ConfigError, match="diarization.voiceprint_threshold"):
        load_config(overrides=["diarization.voiceprint_threshold=1.5"])
