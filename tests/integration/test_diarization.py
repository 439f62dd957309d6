"""Diarization with the real ONNX models on the real two-speaker recording.

Nothing here is mocked: a missing or tampered model makes these tests fail.
"""
from __future__ import annotations

import os
import shutil
import time
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from appliance.config import DiarizationConfig, InferenceConfig
from appliance.diarization.models import DiarizationModels, load_models
from appliance.diarization.offline import OfflineDiarizer
from appliance.diarization.streaming import StreamingDiarizer, StreamingUpdate
from appliance.diarization.words import attach_speakers
from appliance.inference.manifest import ModelError, load_manifest, sha256_file, verify
from appliance.inference.onnx import load_onnx
from appliance.subtitles.types import SpeakerTurn, Word
from bench.load import process_rss_kb

CONFIG = DiarizationConfig()
MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "diarization"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def annotation(turns: list[tuple[float, float, str]]) -> Annotation:
    result = Annotation()
    for start, end, speaker in turns:
        result[Segment(start, end)] = speaker
    return result


def der(reference: Annotation, turns: list[SpeakerTurn], collar: float) -> float:
    # pyannote's collar is the total width removed around each reference boundary.
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    return metric(reference, annotation([(t.start, t.end, t.speaker) for t in turns]),
                  uem=Segment(0, 30.0))


@pytest.fixture(scope="module")
def models() -> DiarizationModels:
    return load_models(CONFIG, InferenceConfig())


@pytest.fixture(scope="module")
def audio(sample_dir: Path) -> np.ndarray:
    return read_wav(sample_dir / "sample.wav")


@pytest.fixture(scope="module")
def reference(sample_dir: Path) -> Annotation:
    rows = [line.split() for line in (sample_dir / "sample.rttm").read_text().splitlines() if line.strip()]
    return annotation([(float(r[3]), float(r[3]) + float(r[4]), r[7]) for r in rows])


@pytest.fixture(scope="module")
def offline_turns(models, audio) -> list[SpeakerTurn]:
    return OfflineDiarizer(models, CONFIG)(audio)


# --------------------------------------------------------------------------- artefacts


def test_every_shipped_onnx_file_is_pinned_and_matches_its_hash():
    manifest = load_manifest()
    specs = [manifest[CONFIG.segmentation_model], manifest[CONFIG.embedding_model]]
    pinned = {name: sha for spec in specs for name, sha in spec.files.items()}
    shipped = {p.name for p in MODEL_DIR.glob("*.onnx")}
    assert shipped == set(pinned), "an ONNX file in models/diarization is not in the manifest (or vice versa)"
    for spec in specs:
        assert spec.location == "appliance_models/diarization"
        assert spec.directory().resolve() == MODEL_DIR.resolve()  # found through importlib.resources
        verify(spec)
    for name, sha in pinned.items():
        assert sha256_file(MODEL_DIR / name) == sha


def test_a_tampered_model_is_refused(tmp_path):
    spec = load_manifest()[CONFIG.segmentation_model]
    for name in spec.files:
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    target = tmp_path / CONFIG.segmentation_file
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        verify(spec, tmp_path)


def test_configured_files_are_in_the_manifest():
    with pytest.raises(ModelError, match="no file"):
        load_models(replace(CONFIG, segmentation_file="nope.onnx"), InferenceConfig())


def test_model_shapes(models):
    seg, emb = models.segmenter, models.embedder
    assert seg.window == 10.0
    activity = seg(np.zeros(160_000, dtype=np.float32))
    assert activity.shape == (589, 3) and activity.dtype == np.uint8
    assert not activity.any()  # silence: nobody talks
    assert seg(np.zeros((2, 160_000), dtype=np.float32)).shape == (2, 589, 3)
    assert seg(np.zeros(80_000, dtype=np.float32)).shape[1] == 3  # shorter windows work (streaming)
    assert abs(seg.grid.step - 0.016875) < 1e-6
    rng = np.random.default_rng(0)
    e = emb.embed((0.1 * rng.standard_normal(48_000)).astype(np.float32))
    assert e.shape == (192,) and emb.dimension == 192
    assert abs(np.linalg.norm(e) - 1.0) < 1e-5


# --------------------------------------------------------------------------- accuracy


def test_offline_der_on_the_real_recording(offline_turns, reference):
    assert {t.speaker for t in offline_turns} == {"S1", "S2"}
    assert der(reference, offline_turns, collar=0.0) <= 0.12
    assert der(reference, offline_turns, collar=0.25) <= 0.12


def feed(diarizer: StreamingDiarizer, chunk: np.ndarray) -> StreamingUpdate:
    """What the session pipeline does, step by step: queue a chunk, then take it in."""
    diarizer.push(chunk)
    return diarizer.update()


def test_streaming_der_latency_and_cost(models, audio, reference):
    diarizer = StreamingDiarizer(models, CONFIG)
    chunk = 1_600  # 0.1 s, as a capture source delivers it
    final: list[SpeakerTurn] = []
    lags = []
    start = time.process_time()
    for i in range(0, len(audio), chunk):
        update = feed(diarizer, audio[i:i + chunk])
        # Turns are final once: none starts before an already-final one ended... twice.
        assert not set(update.final) & set(final)
        final += update.final
        assert all(t.end <= update.final_until + 1e-6 for t in update.final)
        assert all(t.start >= update.final_until - 1e-6 for t in update.tentative if t.start > 0)
        lags.append(diarizer.audio_time - update.final_until)
    final += diarizer.finish().final
    cost = (time.process_time() - start) / (len(audio) / 16_000)

    # The live thresholds are tuned on the evaluation set's whole tune split, where they cut live
    # DER from 0.386 to 0.322; on this one tune recording they cost some (0.136 -> 0.188, collar
    # 0.25: 0.074 -> 0.130). The held-out check is test_live_agrees_with_offline_on_heldout_conversations.
    assert der(reference, final, collar=0.0) <= 0.22
    assert der(reference, final, collar=0.25) <= 0.16
    # Label latency in audio time: a label is final at most latency + step after its audio.
    assert max(lags[20:]) <= CONFIG.label_latency + CONFIG.stream_step + 1e-6 <= 2.0 + 1e-6
    assert cost <= 0.1, f"streaming diarization costs {cost:.3f} CPU s per audio s"
    assert diarizer.speakers == ("S1", "S2")


def test_open_turns_keep_their_speaker_when_they_close(models, audio):
    diarizer = StreamingDiarizer(models, CONFIG)
    seen_open: dict[float, str] = {}
    closed: list[SpeakerTurn] = []
    for i in range(0, len(audio), 16_000):
        update = feed(diarizer, audio[i:i + 16_000])
        closed += update.final
        for t in update.open:
            assert seen_open.setdefault(t.start, t.speaker) == t.speaker
    closed += diarizer.finish().final
    for t in closed:
        if t.start in seen_open:
            assert seen_open[t.start] == t.speaker


def test_words_get_the_speaker_who_said_them(offline_turns, sample_dir):
    """Words spread over each transcript utterance; hypothesis labels mapped to names by majority."""
    words, truth = [], []
    for line in (sample_dir / "sample.stm").read_text().splitlines():
        _, _, speaker, start, end, *text = line.split()
        start, end = float(start), float(end)
        step = (end - start) / len(text)
        for i, token in enumerate(text):
            words.append(Word(token, start + i * step, start + (i + 1) * step))
            truth.append(speaker)
    attached = attach_speakers(words, offline_turns)
    pairs = [(w.speaker, t) for w, t in zip(attached, truth)]
    mapping = {h: max({t for _, t in pairs}, key=lambda name: pairs.count((h, name))) for h, _ in pairs}
    accuracy = np.mean([mapping[h] == t for h, t in pairs])
    assert accuracy >= 0.9, accuracy


# --------------------------------------------------------------------------- bad input


def test_silence_gives_no_speakers(models):
    silence = np.zeros(16_000 * 12, dtype=np.float32)
    assert OfflineDiarizer(models, CONFIG)(silence) == []
    stream = StreamingDiarizer(models, CONFIG)
    updates = [feed(stream, silence[i:i + 8_000]) for i in range(0, len(silence), 8_000)] + [stream.finish()]
    assert all(not u.final and not u.open for u in updates)
    assert stream.speakers == ()


def test_a_short_clip_does_not_crash(models, audio):
    clip = audio[int(12.0 * 16_000):int(12.2 * 16_000)]  # 0.2 s of Diane talking
    turns = OfflineDiarizer(models, CONFIG)(clip)
    assert all(0 <= t.start < t.end <= 0.2 + 1e-6 for t in turns)
    assert len({t.speaker for t in turns}) <= 1
    stream = StreamingDiarizer(models, CONFIG)
    stream.push(clip)
    final = stream.finish().final
    assert all(0 <= t.start < t.end <= 0.2 + 1e-6 for t in final)
    assert OfflineDiarizer(models, CONFIG)(np.zeros(0, dtype=np.float32)) == []


def test_wrong_rate_and_layout_are_refused_clearly(models, audio):
    offline, stream = OfflineDiarizer(models, CONFIG), StreamingDiarizer(models, CONFIG)
    with pytest.raises(ValueError, match="16000 Hz audio, got 44100 Hz"):
        offline(audio, sample_rate=44_100)
    with pytest.raises(ValueError, match="16000 Hz audio, got 8000 Hz"):
        stream.push(audio[:1600], sample_rate=8_000)
    with pytest.raises(ValueError, match="mono"):
        offline(np.stack([audio, audio]))
    with pytest.raises(ValueError, match="float"):
        stream.push((audio[:1600] * 32767).astype(np.int16))


def test_sessions_share_models_across_executor_threads(models, audio):
    """Per-stream state only: two sessions on one set of models, in threads, match a lone run."""
    from concurrent.futures import ThreadPoolExecutor

    clip = audio[int(6 * 16_000):int(18 * 16_000)]

    def run(samples: np.ndarray) -> list[SpeakerTurn]:
        stream = StreamingDiarizer(models, CONFIG)
        turns = []
        for i in range(0, len(samples), 4_000):
            turns += feed(stream, samples[i:i + 4_000]).final
        return turns + stream.finish().final

    alone = run(clip)
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(run, [clip, clip]))
    assert together == [alone, alone]


def test_embedding_session_memory_stays_flat_over_new_input_lengths():
    """Every live embedding has a new fbank length: the session must not keep a plan per length
    (ORT's memory pattern cache did: +9 MB over these 200)."""
    spec = load_manifest()[CONFIG.embedding_model]
    session = load_onnx(spec, CONFIG.embedding_file, InferenceConfig())
    lengths = np.random.default_rng(0).permutation(np.arange(30, 330))
    rng = np.random.default_rng(1)

    def embed(frames: int) -> None:
        session.run(None, {"fbank": rng.standard_normal((1, int(frames), 80)).astype(np.float32)})

    for frames in lengths[:100]:
        embed(frames)
    before = process_rss_kb(os.getpid())
    for frames in lengths[100:]:
        embed(frames)
    grown = (process_rss_kb(os.getpid()) - before) / 1024
    assert grown < 2.5, f"RSS grew {grown:.1f} MB over 200 new input lengths"


def test_runtime_never_imports_torch():
    """The daemon's diarization path runs on onnxruntime alone (torch is for `make models`)."""
    import subprocess
    import sys

    code = ("import sys, appliance.diarization.offline, appliance.diarization.streaming, "
            "appliance.diarization.words, appliance.cli; "
            "bad = [m for m in ('torch', 'torchaudio', 'pyannote.audio') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- held-out recordings


@pytest.fixture(scope="module")
def heldout_conversations():
    """Held-out constructed conversations without overlap (voices the thresholds never saw)."""
    from bench.diarization_eval import has_overlap
    from tests.data.corpus import diarization_set

    chosen = [r for r in diarization_set("heldout") if r.kind == "conversation" and not has_overlap(r.turns)]
    assert len(chosen) >= 2
    return chosen


def test_offline_recipe_on_heldout_conversations(models, heldout_conversations):
    """pyannote's recipe with thresholds tuned on the tune split only: speaker count exact and DER
    within the issue's 0.10 target plus a margin for int8 kernels that differ between CPUs (measured
    0.077 and 0.079 on AMD EPYC)."""
    from bench.diarization_eval import score

    diarizer = OfflineDiarizer(models, CONFIG)
    for recording in heldout_conversations:
        s = score(recording.name, recording.kind, recording.turns, diarizer(recording.audio()), recording.duration)
        assert s.count_exact, (recording.name, s.found, s.speakers)
        assert s.der <= 0.12, (recording.name, s.der)


def test_live_agrees_with_offline_on_heldout_conversations(models, heldout_conversations):
    """The StreamingDiarizer fed 0.1 s chunks (push, update when due, finish) against the offline
    recipe on the same held-out recordings: the issue's live <= 1.1 x offline, with 0.02 of DER
    for int8 kernels that differ between CPUs (measured 0.081 live vs 0.078 offline, AMD EPYC)."""
    from bench.diarization_eval import live_turns, score

    diarizer = OfflineDiarizer(models, CONFIG)
    offline, live = [], []
    for r in heldout_conversations:
        audio = r.audio()
        offline.append(score(r.name, r.kind, r.turns, diarizer(audio), r.duration))
        live.append(score(r.name, r.kind, r.turns, live_turns(models, CONFIG, audio), r.duration))
    assert all(s.count_exact for s in live), [(s.name, s.found) for s in live]
    assert np.mean([s.der for s in live]) <= 1.1 * np.mean([s.der for s in offline]) + 0.02


def test_speaker_bounds_on_a_real_conversation(models, heldout_conversations):
    from appliance.diarization.offline import SpeakerBounds

    recording = max(heldout_conversations, key=lambda r: len({t.speaker for t in r.turns}))
    audio = recording.audio()
    speakers = len({t.speaker for t in recording.turns})
    diarizer = OfflineDiarizer(models, CONFIG)
    assert len({t.speaker for t in diarizer(audio, bounds=SpeakerBounds(num=speakers - 1))}) == speakers - 1
    assert len({t.speaker for t in diarizer(audio, bounds=SpeakerBounds(max=1))}) == 1
    # A minimum above the truth splits a voice's embeddings, but the extra cluster need not win any
    # frame in the reconstruction (pyannote's pipeline behaves alike): never fewer than the truth.
    assert len({t.speaker for t in diarizer(audio, bounds=SpeakerBounds(min=speakers + 1))}) >= speakers
