"""The system benchmarks' harness: rooms pushed at real time into a running daemon, seen by live subscribers.

A room is one `Subtitles.Transcribe` call fed the sample conversation in 100 ms chunks at
real-time pace, plus one `Subtitles.Subscribe` (partials included) on its session, so what
is measured includes gRPC and fan-out. Latencies follow DESIGN.md §2 as a client sees them:
a chunk's capture time is the moment its audio was complete at real-time pace, which is
when the pusher sends it (if the daemon holds the stream back through gRPC flow control,
the wait counts as latency, as it would for a microphone); a word's latency is the receive
time of the first event showing it (as partial, resp. final) minus the capture time of the
chunk holding its end sample.

Pure parts (PushLog, WordTimes, the percentile and backlog rules, looping, metric parsing)
are unit-tested in tests/unit/test_bench_load.py; the rest is I/O against the daemon.
"""
from __future__ import annotations

import asyncio
import bisect
import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.asr.latency import FirstShown
from appliance.audio.pcm import encode_s16le
from appliance.config import SAMPLE_RATE
from appliance.service.client import Endpoint, chunks, follow
from appliance.service.convert import word_from_pb
from appliance.subtitles.types import Word

CHUNK_SECONDS = 0.1
_KINDS = {pb.SubtitleEvent.PARTIAL: "partial", pb.SubtitleEvent.FINAL: "final",
          pb.SubtitleEvent.SPEAKER_UPDATE: "speaker_update"}


# --- pure: schedules, word times, statistics ---


def looped(samples: np.ndarray, seconds: float, offset: float = 0.0) -> np.ndarray:
    """`seconds` of `samples` played in a loop starting `offset` seconds in (rooms out of step)."""
    start = round(offset * SAMPLE_RATE) % len(samples)
    return np.resize(np.roll(samples, -start), round(seconds * SAMPLE_RATE))


@dataclass
class PushLog:
    """A pushed stream's chunks: where each ends in audio time, when it was due and when sent."""

    chunk_ends: list[float]  # audio seconds at each chunk's last sample
    origin: float | None = None  # monotonic time of audio time 0 at real-time pace
    sent: list[float] = field(default_factory=list)  # monotonic time each chunk was handed to gRPC

    @classmethod
    def for_audio(cls, samples: int, chunk_seconds: float = CHUNK_SECONDS) -> PushLog:
        step = int(SAMPLE_RATE * chunk_seconds)
        return cls([min(end, samples) / SAMPLE_RATE for end in range(step, samples + step, step)])

    @property
    def audio_seconds(self) -> float:
        return self.chunk_ends[-1]

    def due(self, index: int) -> float:
        """When chunk `index` is complete at real-time pace (its capture time)."""
        return self.origin + self.chunk_ends[index]

    def capture_time(self, seconds: float) -> float | None:
        """Capture time of the chunk holding audio time `seconds` (None before the schedule starts)."""
        if self.origin is None:
            return None
        index = bisect.bisect_left(self.chunk_ends, min(seconds, self.audio_seconds))
        return self.due(index)

    def progress(self, now: float) -> float:
        """Audio seconds a real-time source would have delivered by `now`."""
        return 0.0 if self.origin is None else min(max(now - self.origin, 0.0), self.audio_seconds)

    @property
    def pushing(self) -> bool:
        return self.origin is not None and len(self.sent) < len(self.chunk_ends)

    def send_lags(self) -> list[float]:
        """How late each chunk went out against its schedule (the daemon pushing back)."""
        return [max(0.0, sent - self.due(i)) for i, sent in enumerate(self.sent) if i > 0]


@dataclass
class WordRecord:
    word: Word
    shown: float  # receive time of the first event showing it (partial or final)
    final: float  # receive time of the first event showing it as final
    label: str | None = None  # speaker label it ends with (from FINAL / SPEAKER_UPDATE events)
    labelled: float | None = None  # receive time of that label


def _key(word: Word) -> tuple[str, float, float]:
    return word.text, word.start, word.end  # final words never change text or times, only speakers


class WordTimes:
    """Per final word: when a subscriber first saw it, first saw it final, and got its last label.

    Events as the API sends them: a PARTIAL shows the open cue (its first `final_words`
    words already final, the rest tentative); a FINAL closes a cue; a SPEAKER_UPDATE
    relabels a closed cue. Tentative words are matched to their final form as in the
    in-process measure (`FirstShown`: same text, start within a tolerance).
    """

    def __init__(self, tolerance: float = 0.5):
        self._shown = FirstShown(tolerance)
        self.words: dict[tuple[str, float, float], WordRecord] = {}

    def observe(self, kind: str, words: Sequence[Word], final_words: int, received: float) -> None:
        if kind == "partial":
            self._shown.partial(list(words[final_words:]), received)
            self._finalise(words[:final_words], received)
            return
        if kind not in ("final", "speaker_update"):
            return
        self._finalise(words, received)
        for word in words:
            record = self.words[_key(word)]
            if record.labelled is None or word.speaker != record.label:
                record.label, record.labelled = word.speaker, received

    def _finalise(self, words: Sequence[Word], received: float) -> None:
        new = [w for w in words if _key(w) not in self.words]
        for word, shown in zip(new, self._shown.final(new, received)):
            self.words[_key(word)] = WordRecord(word, shown, received)

    def final_words(self) -> list[Word]:
        return sorted((r.word for r in self.words.values()), key=lambda w: w.start)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.final_words())


@dataclass
class Latencies:
    final: list[float] = field(default_factory=list)
    partial: list[float] = field(default_factory=list)
    speaker: list[float] = field(default_factory=list)

    def extend(self, other: Latencies) -> None:
        self.final += other.final
        self.partial += other.partial
        self.speaker += other.speaker


def latencies(times: WordTimes, capture_time: Callable[[float], float | None],
              since: float = float("-inf")) -> Latencies:
    """Each final word's latencies; `since`: only words whose end was captured at or after it."""
    out = Latencies()
    for record in times.words.values():
        captured = capture_time(record.word.end)
        if captured is None or captured < since:
            continue
        out.final.append(record.final - captured)
        out.partial.append(record.shown - captured)
        if record.label is not None:
            out.speaker.append(record.labelled - captured)
    return out


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, rounded to ms; None (JSON null) when there is nothing to measure."""
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def summary(lat: Latencies) -> dict[str, object]:
    return {
        "final_latency_p50": pct(lat.final, 50), "final_latency_p95": pct(lat.final, 95),
        "partial_latency_p50": pct(lat.partial, 50), "partial_latency_p95": pct(lat.partial, 95),
        "speaker_latency_p50": pct(lat.speaker, 50), "speaker_latency_p95": pct(lat.speaker, 95),
        "final_latencies": [round(v, 3) for v in lat.final],
        "partial_latencies": [round(v, 3) for v in lat.partial],
    }


BACKLOG_TOLERANCE = 1.0  # seconds: one diarizer step (two ASR steps) of slack between thirds


def backlog_bounded(series: Sequence[float], tolerance: float = BACKLOG_TOLERANCE) -> bool:
    """Not growing through the run: max of the last third <= max of the first third + tolerance."""
    if len(series) < 3:
        raise ValueError(f"need at least 3 backlog samples to judge growth, got {len(series)}")
    third = len(series) // 3
    return max(series[-third:]) <= max(series[:third]) + tolerance


BACKLOG_CRITERION = (
    "backlog(t) per room = audio a real-time source had delivered by t minus the audio the daemon's pipeline "
    "had taken in (Sessions.List audio_seconds) plus appliance_backlog_seconds{stage=\"buffer\"} (taken in, "
    "not yet decoded), sampled every 0.5 s while pushing; series = max over rooms; bounded = max(last third of samples) <= "
    f"max(first third) + {BACKLOG_TOLERANCE} s; a row passes when bounded and final p95 <= 2 s over all rooms' words"
)


def per_session(exposition: str, sample_name: str, **labels: str) -> dict[str, float]:
    """One metric's value per `session` label (among samples with `labels`) from a /metrics exposition."""
    values = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if (sample.name == sample_name and "session" in sample.labels
                    and labels.items() <= sample.labels.items()):
                values[sample.labels["session"]] = sample.value
    return values


def histogram_buckets(exposition: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound (`le`, +Inf included) from an exposition."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                out[float(sample.labels["le"])] = out.get(float(sample.labels["le"]), 0.0) + sample.value
    return out


def bucket_quantile(cumulative: dict[float, float], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram's cumulative buckets, interpolated linearly inside its
    bucket as Prometheus's histogram_quantile does; None if empty, the last finite bound if it
    falls in the +Inf bucket."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


# --- I/O: the daemon process, its metrics, its API ---


def process_rss_kb(pid: int) -> int:
    """Resident memory of a process (VmRSS), in kB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process so far, from /proc."""
    return _cpu_seconds(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """user + system CPU so far of a process's main thread (the daemon's event loop; inference
    runs on executor threads, grpc's poller on its own), from /proc."""
    return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass(frozen=True)
class DaemonProbe:
    """What a benchmark reads of a running daemon: its process, /metrics and gRPC address."""

    pid: int
    endpoint: Endpoint
    metrics_address: str

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return process_rss_kb(self.pid) / 1024

    def alive(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    async def metrics(self) -> str:
        def get() -> str:
            with urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=5) as reply:
                return reply.read().decode()

        return await asyncio.to_thread(get)

    async def intake(self, channel: grpc.aio.Channel) -> dict[str, float]:
        """Audio seconds each session's pipeline has taken in from its source."""
        reply = await pb_grpc.SessionsStub(channel).List(pb.ListSessionsRequest(), timeout=5,
                                                         metadata=self.endpoint.metadata())
        return {s.session_id: s.audio_seconds for s in reply.sessions}


@dataclass
class Room:
    """One pushed stream and its live subscriber."""

    session_id: str
    samples: np.ndarray
    model: str = ""  # the room's recognition, on its first chunk ("": the daemon's [asr])
    language: str = ""
    push: PushLog = field(init=False)
    times: WordTimes = field(default_factory=WordTimes)
    events: int = 0
    ended: bool = False  # the subscriber saw the session end

    def __post_init__(self) -> None:
        self.push = PushLog.for_audio(len(self.samples))

    def latencies(self, since: float = float("-inf")) -> Latencies:
        return latencies(self.times, self.push.capture_time, since)

    async def run(self, endpoint: Endpoint) -> None:
        """Push the audio at real time while subscribed; returns when the session has ended."""
        pcm = encode_s16le(self.samples)
        audio = chunks(pcm, SAMPLE_RATE, pb.PCM_S16LE, 1, self.session_id, CHUNK_SECONDS)
        audio[0].MergeFrom(pb.AudioChunk(model=self.model, language=self.language))
        subscribed = asyncio.Event()

        async def requests():
            yield audio[0]  # creates the session; real-time pacing starts once the subscriber is in
            self.push.sent.append(time.monotonic())
            await subscribed.wait()
            self.push.origin = time.monotonic() - self.push.chunk_ends[0]
            for index in range(1, len(audio)):
                await asyncio.sleep(max(0.0, self.push.due(index) - time.monotonic()))
                yield audio[index]
                self.push.sent.append(time.monotonic())

        async def transcribe() -> None:
            async with endpoint.channel() as channel:
                call = pb_grpc.SubtitlesStub(channel).Transcribe(requests(), metadata=endpoint.metadata())
                async for _ in call:  # the pusher's own copy of the events; read so it is never "slow"
                    pass

        pushing = asyncio.create_task(transcribe())
        try:
            await self._subscribe(endpoint, subscribed, pushing)
            await pushing
        finally:
            pushing.cancel()

    async def _subscribe(self, endpoint: Endpoint, subscribed: asyncio.Event, pushing: asyncio.Task) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                async for event in follow(endpoint, self.session_id, include_partials=True):
                    received = time.monotonic()
                    subscribed.set()
                    self.events += 1
                    kind = _KINDS.get(event.kind)
                    if kind is not None:
                        self.times.observe(kind, [word_from_pb(w) for w in event.words], event.final_words, received)
                self.ended = True
                return
            except grpc.aio.AioRpcError as exc:  # the first chunk has not opened the session yet
                if (exc.code() != grpc.StatusCode.NOT_FOUND or subscribed.is_set() or pushing.done()
                        or time.monotonic() > deadline):
                    raise
                await asyncio.sleep(0.05)


@dataclass
class Sample:
    """The daemon seen at one moment of a run."""

    at: float  # monotonic
    rss_mb: float
    cpu_seconds: float
    backlog: dict[str, float]  # per room still pushing: seconds behind real time (see BACKLOG_CRITERION)
    merged_updates: dict[str, float]


async def sample(probe: DaemonProbe, channel: grpc.aio.Channel, rooms: Sequence[Room]) -> Sample:
    now = time.monotonic()
    exposition, intake = await asyncio.gather(probe.metrics(), probe.intake(channel))
    gauge = per_session(exposition, "appliance_backlog_seconds", stage="buffer")
    backlog = {r.session_id: max(0.0, r.push.progress(now) - intake.get(r.session_id, 0.0))
               + gauge.get(r.session_id, 0.0) for r in rooms if r.push.pushing}
    return Sample(now, probe.rss_mb(), probe.cpu_seconds(), backlog,
                  per_session(exposition, "appliance_merged_updates_total"))


@dataclass
class RunResult:
    rooms: list[Room]
    samples: list[Sample]
    cpu_seconds: float  # the daemon's, from the first push to the last session's end
    merged_updates: dict[str, float]  # per room, at the end

    def backlog_series(self) -> list[float]:
        return [max(s.backlog.values()) for s in self.samples if s.backlog]

    def latencies(self) -> Latencies:
        out = Latencies()
        for room in self.rooms:
            out.extend(room.latencies())
        return out


async def run_rooms(probe: DaemonProbe, rooms: Sequence[Room], interval: float = 0.5,
                    end_timeout: float = 120.0) -> RunResult:
    """Run the rooms together, sampling the daemon every `interval` s until every push is sent."""
    cpu0 = probe.cpu_seconds()
    tasks = [asyncio.create_task(room.run(probe.endpoint)) for room in rooms]
    samples: list[Sample] = []
    async with probe.endpoint.channel() as channel:
        while any(room.push.pushing or room.push.origin is None for room in rooms):
            for task in tasks:
                if task.done():
                    task.result()  # a room that failed before its audio was sent fails the run now
            samples.append(await sample(probe, channel, rooms))
            await asyncio.sleep(interval)
        done, pending = await asyncio.wait(tasks, timeout=end_timeout)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a failed room fails the run
        if pending:
            raise TimeoutError(f"{len(pending)} sessions did not end within {end_timeout} s of their audio")
        final = await sample(probe, channel, [])
    cpu = probe.cpu_seconds() - cpu0
    merged = {r.session_id: final.merged_updates.get(r.session_id, 0.0) for r in rooms}
    return RunResult(list(rooms), samples, cpu, merged)
