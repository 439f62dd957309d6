"""A long upload beside a live room (issue 18): does `POST /v1/audio/transcriptions` slow the rooms?

One real daemon (`python -m appliance serve`, the shipped configuration: diarization on), one live
room pushed through `Subtitles.Transcribe` at real-time pace and seen by a live subscriber
(bench/load.py measures its word latencies as DESIGN.md §2 defines them), in four phases taken
in turn on the same daemon, so the load of a shared machine falls on both conditions alike:
alone, with uploads, alone, with uploads. "With uploads" posts several minutes of real speech
(the English recordings of the evaluation corpus, concatenated) as La Suite Meet's summary does
(`diarized_json`), again and again until the room's audio is all pushed, and waits for the last
one before the next phase, so an "alone" phase never has a file decoding beside it. Then one
upload alone gives the files' own throughput on an idle daemon.

A second daemon, the control, runs the files at the live rooms' priority and threads
(`http.transcription_nice = 0`, `http.transcription_cpu_threads` = `asr.cpu_threads`), to show
what the priority itself buys; both daemons are up for the whole run and their pairs alternate.

Recorded as section "uploads": final (and partial) word latency p50/p95 per condition, pooled
over its phases, their ratios (with / alone), the uploads' throughput (audio seconds per wall
second) and WER. BENCH_QUICK=1: shorter room and upload, no control.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import urllib.request
import wave

import aiohttp
import numpy as np

from appliance.audio.pcm import encode_s16le
from appliance.config import SAMPLE_RATE, AsrConfig, HttpConfig
from appliance.evaluation import word_error_rate
from appliance.service.client import Endpoint
from bench.load import DaemonProbe, Latencies, Room, looped, pct, run_rooms
from tests.data.corpus import asr_set
from tests.e2e.daemon import DaemonProcess, free_port

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROOM_SECONDS = 30.0 if QUICK else 45.0  # the sample conversation, looped
UPLOAD_SECONDS = 90.0 if QUICK else 180.0  # at least this much speech per upload (a few minutes)
ROUNDS = 1 if QUICK else 3  # (alone, with) pairs per daemon: more, shorter pairs average out bursts
GAP = 0.5  # seconds of silence between concatenated recordings
LEAD = 2.0  # seconds an upload runs before the room starts (its body is sent, decoding has begun)
ROUTE = "/v1/audio/transcriptions"


def upload_audio(cache, seconds: float) -> tuple[np.ndarray, str]:
    """English recordings with references (all but the sample), concatenated until `seconds`."""
    recordings = [r for r in asr_set(cache=cache) if r.language == "en" and r.name != "sample"]
    parts, texts, total = [], [], 0.0
    gap = np.zeros(int(GAP * SAMPLE_RATE), np.float32)
    while total < seconds:
        for recording in recordings:
            audio = recording.audio()
            parts += [audio, gap]
            texts.append(recording.reference)
            total += len(audio) / SAMPLE_RATE + GAP
            if total >= seconds:
                break
    return np.concatenate(parts), " ".join(texts)


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(encode_s16le(samples))
    return out.getvalue()


async def upload(http: aiohttp.ClientSession, url: str, wav: bytes) -> dict:
    """Meet's summary request; the answer's words and how long it took."""
    form = aiohttp.FormData()
    form.add_field("file", wav, filename="meeting.wav", content_type="audio/wav")
    form.add_field("model", "whisperx")
    form.add_field("language", "en")
    form.add_field("response_format", "diarized_json")
    started = time.monotonic()
    async with http.post(url, data=form, timeout=aiohttp.ClientTimeout(total=1800)) as response:
        body = await response.json()
        status = response.status
    return {"status": status, "started": started, "seconds": time.monotonic() - started,
            "text": " ".join(w["word"] for s in body.get("segments", []) for w in s["words"]) if status == 200 else "",
            "speakers": len({s["speaker"] for s in body.get("segments", [])} - {None}) if status == 200 else 0}


async def uploads_while(url: str, wav: bytes, busy: asyncio.Event) -> list[dict]:
    """Upload after upload while `busy` is clear (the room is pushing); the last one is awaited."""
    done = []
    async with aiohttp.ClientSession() as http:
        while True:
            done.append(await upload(http, url, wav))
            if busy.is_set():
                return done


async def phase(probe: DaemonProbe, http_address: str, room_samples: np.ndarray, session_id: str,
                wav: bytes | None) -> tuple[Latencies, list[dict], float]:
    """The room alone (`wav` None) or with uploads running; (its latencies, the uploads, daemon CPU s)."""
    cpu = probe.cpu_seconds()
    ended = asyncio.Event()
    uploads = None
    if wav is not None:
        uploads = asyncio.create_task(uploads_while(f"http://{http_address}{ROUTE}", wav, ended))
        await asyncio.sleep(LEAD)
    try:
        run = await run_rooms(probe, [Room(session_id, room_samples)])
    finally:
        ended.set()
    done = await uploads if uploads is not None else []
    return run.latencies(), done, probe.cpu_seconds() - cpu


@contextlib.contextmanager
def upload_daemon(workdir, env: dict[str, str] | None = None):
    """The daemon with the shipped configuration, its HTTP face on a known port; (probe, http address)."""
    metrics, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = (f'[server]\nlisten = "{{address}}"\ngrace_seconds = 2.0\n\n[metrics]\nlisten = "{metrics}"\n\n'
              f'[http]\nlisten = "{http}"\n')
    process = DaemonProcess(config, workdir, env=env).start(timeout=180)
    try:
        yield DaemonProbe(process.process.pid, Endpoint(process.address), metrics), http
    finally:
        process.stop()


def _files_metric(probe: DaemonProbe, name: str) -> float:
    with urllib.request.urlopen(f"http://{probe.metrics_address}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _latency(lat: Latencies) -> dict:
    return {"final_latency_p50": pct(lat.final, 50), "final_latency_p95": pct(lat.final, 95),
            "partial_latency_p50": pct(lat.partial, 50), "partial_latency_p95": pct(lat.partial, 95),
            "final_words": len(lat.final)}


def _throughput(done: list[dict], audio_seconds: float) -> dict:
    ok = [u for u in done if u["status"] == 200]
    return {"uploads": len(done), "ok": len(ok),
            "x_realtime": round(audio_seconds * len(ok) / sum(u["seconds"] for u in ok), 2) if ok else None,
            "seconds": [round(u["seconds"], 1) for u in done]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


class Conditions:
    """One daemon's phases: latencies pooled per condition, each phase's figures, its uploads."""

    def __init__(self) -> None:
        self.pooled = {"alone": Latencies(), "with": Latencies()}
        self.phases: list[dict] = []
        self.uploads: list[dict] = []

    def run(self, probe: DaemonProbe, http: str, room: np.ndarray, wav: bytes, tag: str) -> None:
        """One pair: the room alone, then with uploads."""
        for condition in ("alone", "with"):
            lat, done, cpu = asyncio.run(phase(probe, http, room, f"{tag}-{condition}-{len(self.phases)}",
                                               wav if condition == "with" else None))
            self.pooled[condition].extend(lat)
            self.uploads += done
            self.phases.append({"condition": condition, "at": time.strftime("%H:%M:%S"), **_latency(lat),
                                "daemon_cpu_seconds": round(cpu, 1), "uploads": len(done)})

    def summary(self, audio_seconds: float) -> dict:
        out = {condition: _latency(lat) for condition, lat in self.pooled.items()}
        keys = ("final_latency_p50", "final_latency_p95", "partial_latency_p50", "partial_latency_p95")
        out["ratios"] = {key: _ratio(out["with"][key], out["alone"][key]) for key in keys}
        # Each pair's own ratio (a "with" phase against the "alone" just before it): a load burst
        # from elsewhere on the machine moves one pair, not the median.
        pairs = [{key: _ratio(w[key], a[key]) for key in keys} for a, w in zip(self.phases[::2], self.phases[1::2])]
        out["pair_ratios"] = pairs
        out["median_pair_ratios"] = {key: round(float(np.median([p[key] for p in pairs])), 3) for key in keys}
        out["uploads_beside_room"] = _throughput(self.uploads, audio_seconds)
        out["phases"] = self.phases
        return out


def test_upload_beside_a_live_room(benchmark, results, audio, sample_dir, tmp_path_factory):
    long_audio, long_reference = upload_audio(sample_dir, UPLOAD_SECONDS)
    long_seconds = len(long_audio) / SAMPLE_RATE
    wav = wav_bytes(long_audio)
    room = looped(audio, ROOM_SECONDS)
    control_env = {"APPLIANCE_HTTP__TRANSCRIPTION_NICE": "0",
                   "APPLIANCE_HTTP__TRANSCRIPTION_CPU_THREADS": str(AsrConfig().cpu_threads)}
    out: dict = {"room_audio_seconds": ROOM_SECONDS, "upload_audio_seconds": round(long_seconds, 1),
                 "upload_bytes": len(wav), "rounds": ROUNDS, "transcription_nice": HttpConfig().transcription_nice,
                 "transcription_cpu_threads": HttpConfig().transcription_cpu_threads}

    def scenario():
        with contextlib.ExitStack() as stack:
            # Both daemons up at once (an idle one costs nothing), their pairs taken in turn, so
            # the load from elsewhere on the machine falls on both alike.
            daemons = {"prioritised": stack.enter_context(upload_daemon(tmp_path_factory.mktemp("daemon-uploads")))}
            if not QUICK:
                daemons["control_same_priority"] = stack.enter_context(
                    upload_daemon(tmp_path_factory.mktemp("daemon-control"), control_env))
            conditions = {name: Conditions() for name in daemons}
            for index in range(ROUNDS):
                for name, (probe, http) in daemons.items():
                    conditions[name].run(probe, http, room, wav, f"{name}-{index}")
            probe, http = daemons["prioritised"]
            (alone,) = asyncio.run(uploads_while(f"http://{http}{ROUTE}", wav, _set_event()))
            for name, condition in conditions.items():
                out[name] = condition.summary(long_seconds)
            out["prioritised"].update({
                "upload_alone": _throughput([alone], long_seconds),
                "upload_wer": round(word_error_rate(long_reference, alone["text"]), 4),
                "upload_speakers": alone["speakers"],
                "refused": _files_metric(probe, "appliance_transcription_refused_total")})
            if "control_same_priority" in out:
                out["control_same_priority"]["config"] = control_env
            out["upload_statuses"] = sorted({u["status"] for c in conditions.values() for u in c.uploads}
                                            | {alone["status"]})

    benchmark.pedantic(scenario, rounds=1, iterations=1)
    results.record("uploads", {**out, **({"quick": True} if QUICK else {})})
    main = out["prioritised"]
    for name in ("prioritised", "control_same_priority"):
        if name in out:
            print(name, {k: v for k, v in out[name].items() if k != "phases"})
    assert out["upload_statuses"] == [200], out["upload_statuses"]
    assert main["alone"]["final_words"] > 50 and main["with"]["final_words"] > 50, main
    assert main["upload_wer"] < 0.5 and main["upload_speakers"] >= 2, main
    assert main["uploads_beside_room"]["ok"] >= ROUNDS, main  # each "with" phase had a file decoding


def _set_event() -> asyncio.Event:
    """A flag already up: `uploads_while` sends exactly one upload."""
    event = asyncio.Event()
    event.set()
    return event
