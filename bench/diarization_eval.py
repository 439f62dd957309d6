"""Diarization scoring on the evaluation set (tests/data/corpus.py `diarization_set`).

Per recording: DER with no collar and with a 0.25 s collar (pyannote.metrics: the
collar is the total width removed around each reference boundary), JER, and the
speaker count against the reference. Means per kind ("meeting", "conversation",
"spontaneous"). Offline runs the OfflineDiarizer on the whole file; live feeds the
StreamingDiarizer in 0.1 s chunks the way the session pipeline does (push, update
when due, finish at the end) and scores the final turns.

Scoring lives here, not in appliance/: pyannote.metrics is a test dependency only.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from appliance.config import SAMPLE_RATE
from appliance.diarization.streaming import StreamingDiarizer
from appliance.subtitles.types import SpeakerTurn

CHUNK = SAMPLE_RATE // 10  # 0.1 s, as a capture source delivers it


def annotation(turns: Sequence[SpeakerTurn]) -> Annotation:
    result = Annotation()
    for i, t in enumerate(turns):
        if t.end > t.start:
            result[Segment(t.start, t.end), i] = t.speaker
    return result


def has_overlap(turns: Sequence[SpeakerTurn]) -> bool:
    ordered = sorted(turns, key=lambda t: t.start)
    last_end = -1.0
    for t in ordered:
        if t.start < last_end - 1e-3:
            return True
        last_end = max(last_end, t.end)
    return False


@dataclass(frozen=True)
class Score:
    name: str
    kind: str
    overlap: bool
    der: float          # collar 0
    der_collar: float   # collar 0.25 s
    jer: float
    speakers: int       # reference
    found: int          # hypothesis
    # DER's parts at collar 0, each a share of the reference speaker time: where the error is.
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0

    @property
    def count_exact(self) -> bool:
        return self.speakers == self.found


def score(name: str, kind: str, reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn],
          duration: float) -> Score:
    ref, hyp = annotation(reference), annotation(hypothesis)
    uem = Segment(0.0, duration)
    parts = DiarizationErrorRate(collar=0.0, skip_overlap=False)(ref, hyp, uem=uem, detailed=True)
    total = max(parts["total"], 1e-9)
    return Score(
        name=name, kind=kind, overlap=has_overlap(reference),
        der=float(parts["diarization error rate"]),
        der_collar=float(DiarizationErrorRate(collar=0.25, skip_overlap=False)(ref, hyp, uem=uem)),
        jer=float(JaccardErrorRate(collar=0.0, skip_overlap=False)(ref, hyp, uem=uem)),
        speakers=len({t.speaker for t in reference}),
        found=len({t.speaker for t in hypothesis}),
        missed=float(parts["missed detection"] / total),
        false_alarm=float(parts["false alarm"] / total),
        confusion=float(parts["confusion"] / total),
    )


def live_turns(models, config, samples: np.ndarray) -> list[SpeakerTurn]:
    """The final turns of a StreamingDiarizer fed 0.1 s chunks (the session pipeline's contract)."""
    stream = StreamingDiarizer(models, config)
    turns: list[SpeakerTurn] = []
    for offset in range(0, len(samples), CHUNK):
        stream.push(samples[offset:offset + CHUNK])
        if stream.due():
            turns += stream.update().final
    return turns + stream.finish().final


def summary(scores: Sequence[Score]) -> dict[str, dict[str, float]]:
    """Mean figures per kind (conversations also split by overlap) and over everything."""
    groups: dict[str, list[Score]] = {}
    for s in scores:
        groups.setdefault(s.kind, []).append(s)
        if s.kind == "conversation":
            groups.setdefault("conversation, overlap" if s.overlap else "conversation, no overlap", []).append(s)
        groups.setdefault("all", []).append(s)
    return {
        key: {
            "recordings": len(rows),
            "der": float(np.mean([r.der for r in rows])),
            "der_collar": float(np.mean([r.der_collar for r in rows])),
            "jer": float(np.mean([r.jer for r in rows])),
            "count_exact": float(np.mean([r.count_exact for r in rows])),
            "count_abs_error": float(np.mean([abs(r.found - r.speakers) for r in rows])),
            "missed": float(np.mean([r.missed for r in rows])),
            "false_alarm": float(np.mean([r.false_alarm for r in rows])),
            "confusion": float(np.mean([r.confusion for r in rows])),
        }
        for key, rows in groups.items()
    }


def evaluate(recordings, diarize: Callable[[np.ndarray], list[SpeakerTurn]]) -> tuple[list[Score], float]:
    """Scores per recording, and the CPU seconds per audio second it took."""
    scores, cpu, audio_s = [], 0.0, 0.0
    for r in recordings:
        samples = r.audio()
        start = time.process_time()
        turns = diarize(samples)
        cpu += time.process_time() - start
        audio_s += len(samples) / SAMPLE_RATE
        scores.append(score(r.name, r.kind, r.turns, turns, len(samples) / SAMPLE_RATE))
    return scores, cpu / max(audio_s, 1e-9)


def table(scores: Sequence[Score]) -> str:
    lines = [f"{'recording':16} {'kind':13} ovl  DER0   DER.25 JER    spk found miss   FA     conf"]
    for s in scores:
        lines.append(f"{s.name:16} {s.kind:13} {'y' if s.overlap else 'n':3}  {s.der:.3f}  {s.der_collar:.3f}  "
                     f"{s.jer:.3f}  {s.speakers}   {s.found}     {s.missed:.3f}  {s.false_alarm:.3f}  {s.confusion:.3f}")
    for key, m in summary(scores).items():
        lines.append(f"mean {key:28} DER0 {m['der']:.3f} DER.25 {m['der_collar']:.3f} JER {m['jer']:.3f} "
                     f"count exact {m['count_exact']:.2f} miss {m['missed']:.3f} FA {m['false_alarm']:.3f} "
                     f"conf {m['confusion']:.3f} (n={m['recordings']})")
    return "\n".join(lines)


def as_json(scores: Sequence[Score]) -> dict:
    return {"recordings": [asdict(s) for s in scores], "mean": summary(scores)}
