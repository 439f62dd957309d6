"""Where the diarizer's speech comes from: the segmenter, Silero VAD, or their union (issue 16).

The meeting excerpts' DER is mostly missed speech. This study asks whether the
project's Silero VAD hears speech the segmentation-3.0 model does not, so that
the diarizer could label it. Frame counting on a 10 ms grid against the
reference turns: missed speech and false alarm, each as a share of the
reference speech (any speaker talking, overlap counted once). "Recoverable" is
the best case for DER: reference speaker time in frames the VAD calls speech
and the diarizer does not, as a share of all reference speaker time (DER's
denominator), i.e. what DER would lose if every such frame got the right label.

Pure frame logic first; `study` runs the models. Scoring lives in bench/ (a study,
not a stage of the appliance).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.subtitles.types import SpeakerTurn

RESOLUTION = 0.01  # seconds per frame of the counting grid
VAD_FRAME = 512 / 16_000  # Silero's frame, seconds


def _frames(duration: float) -> int:
    return int(np.ceil(duration / RESOLUTION - 1e-9))


def speech_mask(turns: Iterable[SpeakerTurn], duration: float) -> np.ndarray:
    """(frames,) bool: some turn covers the frame."""
    mask = np.zeros(_frames(duration), dtype=bool)
    for t in turns:
        mask[round(t.start / RESOLUTION):round(t.end / RESOLUTION)] = True
    return mask


def speaker_time(turns: Iterable[SpeakerTurn], duration: float) -> np.ndarray:
    """(frames,) number of speakers talking in each frame (a speaker's own overlapping turns count once)."""
    by_speaker: dict[str, list[SpeakerTurn]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker, []).append(t)
    count = np.zeros(_frames(duration), dtype=np.int32)
    for own in by_speaker.values():
        count += speech_mask(own, duration)
    return count


def vad_mask(probabilities: np.ndarray, duration: float, threshold: float) -> np.ndarray:
    """(frames,) bool: Silero frame i (samples [512 i, 512 (i + 1))) has probability >= threshold."""
    mask = np.zeros(_frames(duration), dtype=bool)
    for i in np.flatnonzero(np.asarray(probabilities) >= threshold).tolist():
        mask[round(i * VAD_FRAME / RESOLUTION):round((i + 1) * VAD_FRAME / RESOLUTION)] = True
    return mask


@dataclass(frozen=True)
class Counts:
    """Frame counts of one detector on some recordings (summed, so rates weigh by speech)."""

    speech: int        # reference speech frames
    missed: int        # reference speech the detector does not call speech
    false_alarm: int   # detector speech where nobody talks

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.speech + other.speech, self.missed + other.missed, self.false_alarm + other.false_alarm)

    @property
    def miss_rate(self) -> float:
        return self.missed / max(self.speech, 1)

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarm / max(self.speech, 1)


def counts(reference: np.ndarray, hypothesis: np.ndarray) -> Counts:
    n = min(len(reference), len(hypothesis))
    ref, hyp = reference[:n], hypothesis[:n]
    return Counts(int(ref.sum()), int((ref & ~hyp).sum()), int((hyp & ~ref).sum()))


def recoverable(speakers: np.ndarray, diarized: np.ndarray, vad: np.ndarray) -> tuple[int, int]:
    """(reference speaker-frames the VAD adds to the diarizer's speech, frames it adds where nobody talks)."""
    n = min(len(speakers), len(diarized), len(vad))
    added = vad[:n] & ~diarized[:n]
    return int(speakers[:n][added].sum()), int((added & (speakers[:n] == 0)).sum())


@dataclass(frozen=True)
class RecordingFrames:
    """One recording on the counting grid: what is needed to compare the detectors."""

    name: str
    kind: str
    speakers: np.ndarray      # reference speakers talking per frame
    diarized: np.ndarray      # the offline diarizer's speech (any of its turns)
    vad_probabilities: np.ndarray
    duration: float


def compare(rows: Sequence[RecordingFrames], thresholds: Sequence[float]) -> dict[str, dict[str, object]]:
    """Per kind and over everything: miss / false alarm of the diarizer, the VAD and the union per threshold,
    and the best-case DER the VAD could remove (with the false alarm its extra frames add)."""
    groups: dict[str, list[RecordingFrames]] = {}
    for r in rows:
        groups.setdefault(r.kind, []).append(r)
        groups.setdefault("all", []).append(r)
    out: dict[str, dict[str, object]] = {}
    for key, members in groups.items():
        seg = sum((counts(r.speakers > 0, r.diarized) for r in members), Counts(0, 0, 0))
        speaker_frames = sum(int(r.speakers.sum()) for r in members)
        entry: dict[str, object] = {
            "recordings": len(members),
            "segmentation": {"miss": seg.miss_rate, "false_alarm": seg.false_alarm_rate},
        }
        for thr in thresholds:
            vad = Counts(0, 0, 0)
            union = Counts(0, 0, 0)
            gained = added_fa = 0
            for r in members:
                v = vad_mask(r.vad_probabilities, r.duration, thr)
                vad += counts(r.speakers > 0, v)
                n = min(len(v), len(r.diarized))
                union += counts(r.speakers > 0, r.diarized[:n] | v[:n])
                g, f = recoverable(r.speakers, r.diarized, v)
                gained, added_fa = gained + g, added_fa + f
            entry[f"vad@{thr:g}"] = {"miss": vad.miss_rate, "false_alarm": vad.false_alarm_rate}
            entry[f"union@{thr:g}"] = {"miss": union.miss_rate, "false_alarm": union.false_alarm_rate,
                                       "best_case_der_gain": gained / max(speaker_frames, 1),
                                       "added_false_alarm_der": added_fa / max(speaker_frames, 1)}
        out[key] = entry
    return out


def table(summary: dict[str, dict[str, object]]) -> str:
    lines = []
    for key, entry in summary.items():
        seg = entry["segmentation"]
        lines.append(f"{key} (n={entry['recordings']}): segmentation miss {seg['miss']:.3f} FA {seg['false_alarm']:.3f}")
        for name, value in entry.items():
            if name.startswith("vad@"):
                u = entry["union@" + name[4:]]
                lines.append(f"  {name:9} miss {value['miss']:.3f} FA {value['false_alarm']:.3f} | union miss "
                             f"{u['miss']:.3f} FA {u['false_alarm']:.3f} | best-case DER -{u['best_case_der_gain']:.3f} "
                             f"+{u['added_false_alarm_der']:.3f} FA")
    return "\n".join(lines)
