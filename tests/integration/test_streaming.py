"""The streaming path on the real conversation, with the real models."""
import asyncio
import json
import math

import pytest

from appliance.asr.recognizer import WhisperRecognizer
from appliance.audio.decode import load_audio
from appliance.config import AsrConfig
from appliance.evaluation import normalize, read_reference, word_error_rate
from appliance.inference.whisper import load_whisper
from appliance.replay import replay
from appliance.vad.silero import SileroVad


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    config = AsrConfig()
    return WhisperRecognizer(load_whisper(config), config)


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.load()


@pytest.fixture(scope="module")
def audio(sample_dir):
    return load_audio(sample_dir / "sample.wav")


@pytest.fixture(scope="module")
def reference(sample_dir) -> str:
    return read_reference(sample_dir / "sample.stm")


@pytest.fixture(scope="module")
def fast_run(recognizer, vad, audio, tmp_path_factory):
    events = tmp_path_factory.mktemp("replay") / "events.jsonl"
    with events.open("w") as out:
        result = asyncio.run(replay(audio, recognizer, vad, realtime=False, events_out=out))
    return result, [json.loads(line) for line in events.read_text().splitlines()]


def test_streaming_wer_is_within_003_of_offline(fast_run, recognizer, audio, reference):
    result, _ = fast_run
    offline_words, _ = recognizer.transcribe_file(audio)
    offline = word_error_rate(reference, " ".join(w.text for w in offline_words))
    streaming = word_error_rate(reference, result.text)
    assert streaming <= offline + 0.03, (streaming, offline, result.text)


def test_final_words_are_in_time_order_and_each_emitted_once(fast_run):
    result, events = fast_run
    finals = [w for e in events if e["kind"] == "final" for w in e["words"]]
    assert [w["text"] for w in finals] == [w.text for w in result.final_words]
    starts = [w["start"] for w in finals]
    assert starts == sorted(starts)
    for a, b in zip(finals, finals[1:]):
        duplicate = normalize(a["text"]) == normalize(b["text"]) and abs(a["start"] - b["start"]) < 0.1
        assert not duplicate, (a, b)
    assert all(w["end"] >= w["start"] for w in finals)


def test_events_file_has_the_documented_schema(fast_run):
    _, events = fast_run
    assert {e["kind"] for e in events} == {"partial", "final"}
    emitted = [e["emitted"] for e in events]
    assert emitted == sorted(emitted) and emitted[0] >= 0
    for e in events:
        assert set(e) == {"kind", "emitted", "words"}
        assert all(set(w) == {"text", "start", "end"} for w in e["words"])


def test_nothing_final_before_speech_starts(fast_run):
    result, _ = fast_run
    assert result.final_words and result.final_words[0].start >= 6.0


def test_realtime_latencies_are_measured_and_finite(recognizer, vad, audio):
    clip = audio[6 * 16000 : 16 * 16000]  # 10 s of the conversation at real-time pace
    result = asyncio.run(replay(clip, recognizer, vad, realtime=True))
    summary = result.summary()
    assert result.final_words and len(result.final_latency) == len(result.final_words)
    for key in ("final_latency_p50", "final_latency_p95", "partial_latency_p50", "partial_latency_p95"):
        assert math.isfinite(summary[key]), key
    assert summary["partial_latency_p50"] <= summary["final_latency_p50"]
    assert result.cpu_per_audio_second > 0


def test_silence_produces_no_words(recognizer, vad):
    import numpy as np

    result = asyncio.run(replay(np.zeros(5 * 16000, np.float32), recognizer, vad, realtime=False))
    assert result.final_words == [] and result.stats.updates == 0


def test_loading_whisper_holds_numpy_blas_to_the_calling_thread():
    """OpenBLAS's pool spins after every small matrix product of a decode (README: half a room's
    CPU); a process that loads Whisper runs BLAS on the calling thread. A fresh interpreter, so
    no other test's model load has set it already."""
    import subprocess
    import sys

    probe = (
        "import json, numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from appliance.config import AsrConfig\n"
        "from appliance.inference.whisper import load_whisper\n"
        "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "before = blas()\n"
        "load_whisper(AsrConfig())\n"
        "print(json.dumps({'before': before, 'after': blas()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads["after"] and all(n == 1 for n in threads["after"]), threads
