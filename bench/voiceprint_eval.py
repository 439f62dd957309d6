"""Voiceprint matching on the evaluation set: choose `diarization.voiceprint_threshold` on the tune
split, report the held-out split at that threshold.

Voices (tests/data/corpus.py, its split rule: tune and held-out share no voice):
- the single-speaker sources the constructed conversations are cut from (tune: the MFA speaker,
  the Sense and Sensibility reader, LibriSpeech 61; held-out: the sonnet reader, the Swedish and
  the Spanish speaker), piece by piece;
- the speakers of the recordings with reference turns (tune: the sample, the AMI train excerpts;
  held-out: the AMI development and test excerpts), from their clean turns (no one else talking).
  AMI speakers recur across excerpts, so a speaker is one voice across the recordings of a split.

Each voice's speech, in order, is cut in two: the first half enrols it (through the daemon's
own `enrol`, at most 60 s), the second half stands for the live speaker the matcher sees. The
live matcher names a speaker once it has `min_embeddings` embeddings and never renames it, so
the trial centroid is the normalised mean of the first `min_embeddings` chunk embeddings of the
second half ("early", what the decision is made on; each group of that many consecutive chunks
is one trial); the mean of all of them ("full", one trial per voice) is reported beside it. Voices with under 6 s of clean speech are left out.

Trials, for each test voice: *enrolled* (every voice of the split enrolled: a true match if its
best voiceprint is its own and at least the threshold; a false match if the best is another's
and at least the threshold) and *not enrolled* (its own voiceprint withheld: any best at least
the threshold is a false match). The threshold chosen maximises, on the tune split, true matches
minus twice the false matches (enrolled and not enrolled trials together): a wrong name on a
caption is worse than a label without a name.

Run: `PYTHONPATH=$PWD .venv/bin/python -m bench.voiceprint_eval` (writes bench/results/voiceprints.json),
or bench/test_voiceprint_eval.py (part of `make bench`).
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.audio.decode import load_audio
from appliance.config import SAMPLE_RATE, DiarizationConfig, InferenceConfig
from appliance.diarization.enrolment import MAX_AUDIO_SECONDS, enrol, speech_embeddings
from appliance.diarization.models import load_models
from appliance.diarization.voiceprints import EnrolledMatcher
from appliance.subtitles.types import SpeakerTurn
from tests.data.corpus import diarization_set, voice_pieces
from tests.data.fetch import fetch

POOLS = {"tune": ("mfa-acoustic", "mfa-cold3", "sense", "libri61"), "heldout": ("sonnet", "swedish", "spanish")}
MIN_VOICE_SECONDS = 4.0
GAP = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)  # between cut segments: no splice in one window


@dataclass(frozen=True)
class VoiceTrial:
    speaker: str
    enrolment: np.ndarray  # voiceprint
    early: list[np.ndarray]  # test centroids, each of min_embeddings consecutive chunks
    full: np.ndarray  # test centroid from all chunks
    enrol_seconds: float
    test_seconds: float


def clean_segments(turns: tuple[SpeakerTurn, ...], min_length: float = 0.5) -> dict[str, list[tuple[float, float]]]:
    """Per speaker, the stretches of its turns where no one else talks."""
    out: dict[str, list[tuple[float, float]]] = {}
    for t in turns:
        pieces = [(t.start, t.end)]
        for o in turns:
            if o.speaker == t.speaker:
                continue
            pieces = [p for a, b in pieces for p in ((a, min(b, o.start)), (max(a, o.end), b)) if p[1] > p[0]]
        out.setdefault(t.speaker, []).extend(p for p in pieces if p[1] - p[0] >= min_length)
    return out


def voices(split: str) -> dict[str, list[np.ndarray]]:
    """Per voice of `split`, its clean speech segments in order (16 kHz float32)."""
    cache = fetch()
    out: dict[str, list[np.ndarray]] = {}
    pieces = voice_pieces(cache)
    audio: dict[str, np.ndarray] = {}
    for pool in POOLS[split]:
        for piece in pieces[pool]:
            if piece.file not in audio:
                audio[piece.file] = load_audio(cache / piece.file)
            samples = audio[piece.file]
            out.setdefault(piece.speaker, []).append(
                samples[int(piece.start * SAMPLE_RATE):int(piece.end * SAMPLE_RATE)])
    for recording in diarization_set(split):
        if recording.kind == "conversation":
            continue  # cut from the pools above
        samples = recording.audio()
        for speaker, segments in clean_segments(recording.turns).items():
            key = f"{recording.name}:{speaker}" if recording.kind != "meeting" else f"ami:{speaker}"
            out.setdefault(key, []).extend(samples[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in segments)
    return out


def halves(segments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The voice's speech (segments joined by short gaps) cut in two at its middle sample; the
    first half at most MAX_AUDIO_SECONDS (what Enroll takes)."""
    joined = np.concatenate([x for s in segments for x in (s, GAP)])
    middle = len(joined) // 2
    return joined[:middle][:int(MAX_AUDIO_SECONDS * SAMPLE_RATE)], joined[middle:]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def trials(split: str, models, config: DiarizationConfig, min_embeddings: int) -> list[VoiceTrial]:
    out = []
    for speaker, segments in sorted(voices(split).items()):
        if sum(len(s) for s in segments) / SAMPLE_RATE < MIN_VOICE_SECONDS:
            continue
        first, second = halves(segments)
        try:
            enrolled = enrol(models, config, first)
        except ValueError as exc:
            print(f"  {speaker}: not enrolled ({exc})", file=sys.stderr)
            continue
        embeddings, test_seconds = speech_embeddings(models, config, second)
        if len(embeddings) < min_embeddings:
            print(f"  {speaker}: test half too short ({len(embeddings)} embeddings)", file=sys.stderr)
            continue
        groups = [_unit(np.mean(embeddings[i:i + min_embeddings], axis=0))
                  for i in range(0, len(embeddings) - min_embeddings + 1, min_embeddings)]
        out.append(VoiceTrial(speaker, enrolled.vector, groups,
                              _unit(np.mean(embeddings, axis=0)), enrolled.speech_seconds, test_seconds))
    return out


def outcomes(trials_: list[VoiceTrial], threshold: float, which: str = "early") -> dict[str, int]:
    """Counts of the enrolled trials (true / false / no match) and not-enrolled ones (false / none).
    `which`: "early" (every group of min_embeddings chunks of a voice is a trial) or "full"."""
    prints = np.stack([t.enrolment for t in trials_])
    centroids = [(i, c) for i, t in enumerate(trials_) for c in (t.early if which == "early" else [t.full])]
    counts = dict(enrolled=len(centroids), true_match=0, false_match=0, no_match=0,
                  not_enrolled=len(centroids), impostor_match=0, impostor_rejected=0,
                  impostor_pairs=0, impostor_pairs_matched=0)
    for i, centroid in centroids:
        similarity = prints @ centroid
        best = int(np.argmax(similarity))
        if similarity[best] < threshold:
            counts["no_match"] += 1
        elif best == i:
            counts["true_match"] += 1
        else:
            counts["false_match"] += 1
        others = np.delete(similarity, i)
        counts["impostor_pairs"] += len(others)  # this voice against each other person's voiceprint
        counts["impostor_pairs_matched"] += int((others >= threshold).sum())
        counts["impostor_match" if len(others) and others.max() >= threshold else "impostor_rejected"] += 1
    return counts


def margins(trials_: list[VoiceTrial]) -> dict[str, float]:
    """The lowest similarity of a voice to its own voiceprint, the highest to another's (early trials)."""
    prints = np.stack([t.enrolment for t in trials_])
    own = [float(c @ t.enrolment) for t in trials_ for c in t.early]
    other = [float(s) for i, t in enumerate(trials_) for c in t.early for s in np.delete(prints @ c, i)]
    return {"lowest_own": round(min(own), 3), "highest_other": round(max(other), 3)}


def objective(counts: dict[str, int]) -> int:
    return counts["true_match"] - 2 * (counts["false_match"] + counts["impostor_match"])


def choose(trials_: list[VoiceTrial], grid=np.round(np.arange(-0.20, 0.96, 0.01), 2)) -> float:
    scored = [(objective(outcomes(trials_, float(t))), -float(t)) for t in grid]
    best = max(scored)
    # Ties: the middle of the plateau of best thresholds (the widest margin on both sides).
    plateau = sorted(-t for s, t in scored if s == best[0])
    return plateau[len(plateau) // 2]


def _machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def evaluate_voiceprints(verbose: bool = True) -> dict:
    """Threshold chosen on the tune split; both splits' outcomes at it (held-out is what counts)."""
    config = DiarizationConfig()
    models = load_models(config, InferenceConfig())
    min_embeddings = EnrolledMatcher(lambda: (), 0.5).min_embeddings
    tune = trials("tune", models, config, min_embeddings)
    threshold = choose(tune)
    if verbose:
        print(f"tune: {len(tune)} voices; threshold chosen {threshold:.2f}; {margins(tune)}")
        for t in (threshold - 0.1, threshold - 0.05, threshold, threshold + 0.05, threshold + 0.1):
            print(f"  tune @ {t:.2f}: early {outcomes(tune, t)}")
        for t in tune:
            own = [float(c @ t.enrolment) for c in t.early]
            print(f"  {t.speaker}: enrol {t.enrol_seconds:.1f} s, test {t.test_seconds:.1f} s, own similarity "
                  f"{min(own):.2f}..{max(own):.2f}")
    heldout = trials("heldout", models, config, min_embeddings)
    result = {
        "machine": _machine(),
        "threshold": threshold,
        "configured_threshold": config.voiceprint_threshold,
        "min_embeddings": min_embeddings,
        "tune": {"voices": [t.speaker for t in tune], "margins": margins(tune), "early": outcomes(tune, threshold),
                 "full": outcomes(tune, threshold, "full")},
        "heldout": {"voices": [t.speaker for t in heldout], "margins": margins(heldout),
                    "early": outcomes(heldout, threshold),
                    "full": outcomes(heldout, threshold, "full")},
    }
    if verbose:
        print(f"held-out: {len(heldout)} voices, {margins(heldout)}; @ {threshold:.2f}: early "
              f"{result['heldout']['early']}, full {result['heldout']['full']}")
    return result


def main() -> None:
    result = evaluate_voiceprints()
    out = Path(__file__).parent / "results" / "voiceprints.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
