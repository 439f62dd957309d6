"""The component workloads: each pipeline stage on real inputs, one timed call at a time.

One definition serves both `make bench` (pytest-benchmark, bench/test_components_bench.py)
and the regression guard (bench/guard.py), so the two always time the same work.
Inputs are real: the sample conversation, the pinned models, and for cue assembly and
protobuf conversion the words of one offline transcription of the sample (speakers from
offline diarization) replayed through the commit policy as the stream would decide them.
"""
from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.asr.policy import CommitPolicy
from appliance.asr.recognizer import WhisperRecognizer
from appliance.audio.decode import load_audio
from appliance.config import (
    SAMPLE_RATE,
    AsrConfig,
    DiarizationConfig,
    InferenceConfig,
    StreamingConfig,
)
from appliance.diarization.models import DiarizationModels, load_models
from appliance.diarization.offline import OfflineDiarizer
from appliance.diarization.words import attach_speakers
from appliance.inference.whisper import load_whisper
from appliance.service.convert import event_to_pb
from appliance.subtitles.assembler import CueAssembler
from appliance.subtitles.events import SubtitleEvent
from appliance.subtitles.types import Decision, SpeakerTurn, Word
from appliance.vad import FRAME_SAMPLES
from appliance.vad.silero import SileroVad

VAD_BATCH = 100  # frames per timed call: one frame (~0.1 ms) is below the timer's useful resolution
RECOGNIZER_BUFFERS = (2, 5, 10)  # seconds of speech per recognizer call
SEGMENTATION_WINDOW = 10.0  # seconds: the offline and streaming default
EMBEDDING_SEGMENT = 3.0  # seconds of one speaker's speech
REGION_PAUSE = 0.8  # a gap this long between words stands for a VAD speech end


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # what one measured unit is: "per 32 ms frame", "per call (5 s buffer)", ...
    run: Callable[[], object]  # one timed call
    units_per_call: int  # units one call covers (timings are reported per unit)
    rounds: int  # timed calls (after one warm-up) for a stable median


@dataclass(frozen=True)
class Timing:
    wall_median_ms: float  # median wall time per unit
    cpu_ms: float  # process CPU time per unit (all threads), median over the rounds
    unit: str

    def as_dict(self) -> dict[str, object]:
        return {"wall_median_ms": round(self.wall_median_ms, 4), "cpu_ms": round(self.cpu_ms, 4), "unit": self.unit}


def timing(workload: Workload, wall_per_call: list[float], cpu_seconds: float, calls: int) -> Timing:
    per = 1e3 / workload.units_per_call
    return Timing(statistics.median(wall_per_call) * per, cpu_seconds / calls * per, workload.unit)


def measure(workload: Workload, warmup: int = 1) -> Timing:
    """Median wall and CPU time of `rounds` calls after `warmup`, per unit.

    CPU per call is a median too, not the mean: a multi-threaded call (the recogniser's two
    threads) burns CPU spinning while a sibling waits for a core, so one call that met a
    burst of other work can add a third to a 5-call mean.
    """
    for _ in range(warmup):
        workload.run()
    walls, cpus = [], []
    for _ in range(workload.rounds):
        start, cpu = time.perf_counter(), time.process_time()
        workload.run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    per = 1e3 / workload.units_per_call
    return Timing(statistics.median(walls) * per, statistics.median(cpus) * per, workload.unit)


def fastest(*timings: Timing) -> Timing:
    """The least of several measurements of one workload, figure by figure.

    Other work on the machine only ever adds time, so of two passes at different moments of
    a run the faster is the nearer to what the code costs; a real regression is slow in both.
    """
    return Timing(min(t.wall_median_ms for t in timings), min(t.cpu_ms for t in timings), timings[0].unit)


@dataclass
class Inputs:
    """The shared models and real inputs every workload runs on (loaded once)."""

    audio: np.ndarray
    whisper: object
    vad: SileroVad
    diarization: DiarizationModels
    words: list[Word]  # offline transcription of the sample, speakers attached
    turns: list[SpeakerTurn]  # offline diarization of the sample

    @classmethod
    def load(cls, sample_dir: Path) -> Inputs:
        audio = load_audio(sample_dir / "sample.wav")
        whisper = load_whisper(AsrConfig())
        config = DiarizationConfig()
        diarization = load_models(config, InferenceConfig())
        words, _ = WhisperRecognizer(whisper, AsrConfig()).transcribe_file(audio)
        turns = OfflineDiarizer(diarization, config)(audio)
        return cls(audio, whisper, SileroVad.load(), diarization, attach_speakers(words, turns), turns)


def stream_decisions(words: list[Word], step: float = StreamingConfig().step,
                     pause: float = REGION_PAUSE) -> list[Decision]:
    """Offline words as the streaming session would decide them (pure).

    Every `step` seconds the hypothesis is the words heard so far in the current speech
    region, fed to the commit policy (LocalAgreement); a pause of `pause` seconds after the
    last word closes the region (`flush`), as a VAD speech end does.
    """
    policy, decisions, region_start = CommitPolicy(StreamingConfig().agreement), [], 0.0
    end = (words[-1].end if words else 0.0) + pause + step
    for t in np.arange(step, end + step, step):
        heard = [w for w in words if region_start <= w.start and w.end <= t]
        if heard and t - heard[-1].end >= pause:
            decisions.append(policy.flush(heard))
            region_start = heard[-1].end
        elif heard:
            decisions.append(policy.update(heard))
    return decisions


def assemble(decisions: list[Decision]) -> list[SubtitleEvent]:
    assembler = CueAssembler()
    events = [event for decision in decisions for event in assembler.update(decision)]
    return events + assembler.finish()


def workloads(inputs: Inputs) -> list[Workload]:
    audio = inputs.audio
    vad_stream = inputs.vad.stream()
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    batches = itertools.cycle(range(0, len(frames) - VAD_BATCH, VAD_BATCH))

    def vad_frames():  # one live stream, state carried, real audio in 32 ms frames
        first = next(batches)
        for frame in frames[first:first + VAD_BATCH]:
            vad_stream.push(frame)

    recognizer = WhisperRecognizer(inputs.whisper, AsrConfig())
    result = [Workload("vad_frame", "per 32 ms frame", vad_frames, VAD_BATCH, 50)]
    for seconds in RECOGNIZER_BUFFERS:
        buffer = audio[8 * SAMPLE_RATE:(8 + seconds) * SAMPLE_RATE]  # speech of both speakers
        result.append(Workload(f"recognizer_call_{seconds}s", f"per call ({seconds} s buffer, 10 s window floor)",
                               lambda b=buffer: recognizer.transcribe(b), 1, 9))
    window = audio[10 * SAMPLE_RATE:int((10 + SEGMENTATION_WINDOW) * SAMPLE_RATE)]
    segment = audio[int(14.6 * SAMPLE_RATE):int((14.6 + EMBEDDING_SEGMENT) * SAMPLE_RATE)]
    segmenter, embedder = inputs.diarization.segmenter, inputs.diarization.embedder
    decisions = stream_decisions(inputs.words)
    events = assemble(decisions)
    result += [
        Workload("segmentation_window", f"per {SEGMENTATION_WINDOW:g} s window", lambda: segmenter(window), 1, 30),
        Workload("embedding_segment", f"per {EMBEDDING_SEGMENT:g} s segment (fbank included)",
                 lambda: embedder.embed(segment), 1, 30),
        Workload("cue_assembly_event", "per event out of CueAssembler", lambda: assemble(decisions), len(events), 200),
        Workload("protobuf_event", "per event (event_to_pb)", lambda: [event_to_pb(e) for e in events],
                 len(events), 200),
    ]
    return result


NAMES = ("vad_frame", *(f"recognizer_call_{s}s" for s in RECOGNIZER_BUFFERS), "segmentation_window",
         "embedding_segment", "cue_assembly_event", "protobuf_event")
