"""The replay harness: a recording through the streaming session, measured.

The same Session the daemon runs, fed by a FileReplaySource at real-time pace
(latency) or as fast as it goes (accuracy). Latencies follow DESIGN.md §2: the time a
word is first sent as partial (or final) minus the capture time of its end sample.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from appliance.asr.latency import FirstShown, word_latencies
from appliance.asr.recognizer import Recognizer
from appliance.asr.stream import AsrStream, StreamStats
from appliance.audio.sources import FileReplaySource
from appliance.config import SAMPLE_RATE, StreamingConfig, VadConfig
from appliance.session import Pipeline
from appliance.subtitles.types import Decision, Word
from appliance.vad.silero import SileroVad


@dataclass
class ReplayResult:
    audio_seconds: float
    final_words: list[Word] = field(default_factory=list)
    final_latency: list[float] = field(default_factory=list)  # one per final word
    partial_latency: list[float] = field(default_factory=list)  # first shown, one per final word
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    stats: StreamStats = field(default_factory=StreamStats)
    events: int = 0
    language: str | None = None  # the stream's language at the end (fixed or detected)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.final_words)

    @property
    def cpu_per_audio_second(self) -> float:
        return self.cpu_seconds / self.audio_seconds

    def summary(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            return round(float(np.percentile(values, q)), 3) if values else float("nan")

        return {
            "audio_seconds": round(self.audio_seconds, 3),
            "final_words": len(self.final_words),
            "final_latency_p50": pct(self.final_latency, 50),
            "final_latency_p95": pct(self.final_latency, 95),
            "partial_latency_p50": pct(self.partial_latency, 50),
            "partial_latency_p95": pct(self.partial_latency, 95),
            "cpu_per_audio_second": round(self.cpu_per_audio_second, 3),
            "updates": self.stats.updates,
            "merged_updates": self.stats.merged_updates,
            "language": self.language,
        }


async def collect(pipeline: Pipeline, result: ReplayResult,
                  on_decision: Callable[[Decision, float], None] | None = None) -> None:
    """Run `pipeline` to its end: final words and each one's latencies go into `result`;
    `on_decision(decision, emitted)` sees every decision as it is made."""
    shown = FirstShown()
    end = result.audio_seconds - 1e-3  # the last word may end at the file's last sample
    async for update in pipeline.updates():
        decision = update.decision
        if decision is None:
            continue
        if on_decision is not None:
            on_decision(decision, update.emitted)
        result.final_words.extend(decision.final)
        for partial, final in word_latencies(shown, decision.partial, decision.final, update.emitted,
                                             lambda t: pipeline.capture.capture_time(min(t, end))):
            result.partial_latency.append(partial)
            result.final_latency.append(final)


async def replay(
    samples: np.ndarray,
    recognizer: Recognizer,
    vad: SileroVad,
    *,
    realtime: bool,
    streaming: StreamingConfig | None = None,
    vad_config: VadConfig | None = None,
    events_out: IO[str] | None = None,
    language: str | None = None,
    task: str | None = None,
) -> ReplayResult:
    source = FileReplaySource(samples, realtime=realtime)
    stream = AsrStream.for_room(recognizer, vad.stream(vad_config), streaming, language, task)
    result = ReplayResult(audio_seconds=len(samples) / SAMPLE_RATE, stats=stream.stats)
    cpu0, wall0 = time.process_time(), time.monotonic()

    def record(decision: Decision, emitted: float) -> None:
        events = [("final", decision.final)] if decision.final else []
        if not decision.closed:  # a partial replaces the previous one, even when empty
            events.append(("partial", decision.partial))
        result.events += len(events)
        for kind, words in events if events_out is not None else ():
            events_out.write(json.dumps({
                "kind": kind,
                "emitted": round(emitted - (source.started_at or wall0), 4),
                "words": [{"text": w.text, "start": w.start, "end": w.end} for w in words],
            }) + "\n")

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-asr") as executor:
        await collect(Pipeline(source, stream, executor), result, record)
    result.language = stream.language
    result.cpu_seconds = time.process_time() - cpu0
    result.wall_seconds = time.monotonic() - wall0
    return result
