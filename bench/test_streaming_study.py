"""The streaming decoder study (issue 14): every lever as a variant, from today's decoder to the defaults.

Run: PYTHONPATH=$PWD .venv/bin/python -m pytest bench/test_streaming_study.py --benchmark-enable --benchmark-only -q
(STUDY_VARIANTS=a,b,... to run a subset; STUDY_SPLIT=tune|heldout|all picks the recordings of the
evaluation set, default all). Results land in the run's bench/results/run-*.json, section
`streaming_study` (and `streaming_study_realtime` for the shipped defaults in real time);
`python -m bench.streaming_study` prints the README tables from the newest run.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from appliance.asr.recognizer import WhisperRecognizer
from appliance.config import AsrConfig, StreamingConfig
from appliance.evaluation import word_error_rate
from appliance.inference.whisper import load_whisper
from appliance.replay import replay
from appliance.vad.silero import SileroVad
from bench.streaming_study import RUN, Recording, Variant, duplicates, echoes, offline, study, variants


def _recordings(audio, reference) -> list[Recording]:
    """The evaluation set's English recordings (tests/data/corpus.py), or the sample alone without it."""
    split = os.environ.get("STUDY_SPLIT", "all")
    try:
        from tests.data.corpus import asr_set
    except ImportError:
        return [Recording("sample", audio, reference, "tune")] if split in ("all", "tune") else []
    return [Recording(r.name, r.audio(), r.reference, r.split)
            for r in asr_set(None if split == "all" else split) if r.language == "en"]


@pytest.fixture(scope="module")
def model():
    return load_whisper(AsrConfig())


@pytest.fixture(scope="module")
def recordings(audio, reference):
    return _recordings(audio, reference)


def test_streaming_study(benchmark, results, model, recordings):
    """Ideal-machine replay of every variant on every recording: WER, CPU, latency floor, duplicates."""
    assert next(v for v in variants() if v.name == "pauseflush").streaming == StreamingConfig()  # the defaults row
    wanted = os.environ.get("STUDY_VARIANTS")
    chosen = [v for v in variants() if v.name in (wanted.split(",") if wanted else RUN)]
    vad = SileroVad.load()
    out = {}

    def run():
        out.update(study(recordings, model, vad, chosen, say=lambda line: print(line, flush=True)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    out["note"] = "ideal-machine replay (virtual clock); CPU = process time of that replay per audio second"
    results.record("streaming_study", out)
    for name, row in out["variants"].items():
        print(name, {k: v for k, v in row.items() if k not in ("recordings", "streaming", "change")})


def _fast_and_realtime(recordings: list[Recording], model, asr: AsrConfig, say=print) -> dict:
    """Each recording offline, then through the real session with the shipped streaming defaults
    (replay --fast and --realtime), in one run."""
    recognizer, vad = WhisperRecognizer(model, asr), SileroVad.load()
    rows = {}
    for recording in recordings:
        row = {"offline_wer": offline(recording, model, asr)["wer"]}
        for mode in ("fast", "realtime"):
            # The room's language as configured: left None, a multilingual room would detect its own.
            result = asyncio.run(replay(recording.audio, recognizer, vad, realtime=mode == "realtime",
                                        language=asr.language, task=asr.task))
            summary = result.summary()
            row[mode] = {
                "wer": round(word_error_rate(recording.reference, result.text, recording.language), 4),
                "cpu_per_audio_second": summary["cpu_per_audio_second"],
                "final_latency_p50": summary["final_latency_p50"],
                "final_latency_p95": summary["final_latency_p95"],
                "partial_latency_p50": summary["partial_latency_p50"],
                "duplicates": duplicates(result.final_words),
                "echoes": echoes(result.final_words),
            }
        rows[recording.name] = row
        say(f"{recording.name} {row}")
    return rows


def test_streaming_defaults_fast_and_realtime(benchmark, results, model, recordings):
    """The shipped defaults through the real session (replay --fast and --realtime) against offline.

    STUDY_REALTIME_SPLIT (default: STUDY_SPLIT) limits the recordings: real time costs their length in wall time.
    """
    split = os.environ.get("STUDY_REALTIME_SPLIT")
    recordings = [r for r in recordings if split in (None, "all", r.split)]
    rows = {}

    def run():
        rows.update(_fast_and_realtime(recordings, model, AsrConfig(), say=lambda line: print(line, flush=True)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    results.record("streaming_study_realtime", {
        "streaming": StreamingConfig().__dict__, "asr": AsrConfig().__dict__, "recordings": rows,
        "splits": {r.name: r.split for r in recordings},
    })


def test_french_streaming(benchmark, results):
    """Real French speech (Asterisk's prompts read by one speaker, tests/data/corpus.py) on whisper-base:
    offline, the stream on the ideal machine, replay --fast and --realtime, all in one run (issue 15)."""
    from tests.data.corpus import asr_set

    asr = AsrConfig(model="whisper-base", language="fr")
    recordings = [Recording(r.name, r.audio(), r.reference, r.split, r.language)
                  for r in asr_set(None) if r.language == "fr"]
    model = load_whisper(asr)
    out = {}

    def say(line: str) -> None:
        print(line, flush=True)

    def run():
        out["study"] = study(recordings, model, SileroVad.load(),
                             [Variant("defaults", "the shipped streaming defaults", StreamingConfig(), asr=asr)],
                             say=say, asr=asr)
        out["recordings"] = _fast_and_realtime(recordings, model, asr, say=say)

    benchmark.pedantic(run, rounds=1, iterations=1)
    results.record("french_streaming", {"asr": asr.__dict__, "streaming": StreamingConfig().__dict__,
                                        "splits": {r.name: r.split for r in recordings}, **out})
