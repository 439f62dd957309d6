"""The streaming decoder study: each lever of issue 14 as a variant, measured on real recordings.

Variants are cumulative (each adds one change to the one before), from today's decoder
to the defaults. For each variant and recording: the ideal-machine replay (a virtual
clock: the latency floor and a deterministic WER), the process CPU time of that replay
per audio second, and final words committed twice (same text at overlapping times).
Offline WER of each recording is measured in the same run.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from appliance.asr.policy import same_word
from appliance.asr.recognizer import WhisperRecognizer
from appliance.config import SAMPLE_RATE, AsrConfig, StreamingConfig
from appliance.evaluation import word_error_rate
from appliance.subtitles.text import normalize
from appliance.subtitles.types import Word
from appliance.vad.silero import SileroVad
from bench.ideal_replay import ideal_replay


class TodayRecognizer(WhisperRecognizer):
    """Today's token cap: max_length = prompt + max_new, which CTranslate2 halves without a prompt."""

    def max_length(self, prompt_length: int, max_new: int) -> int:
        return min(prompt_length + max_new, self.model.max_length)


@dataclass(frozen=True)
class Variant:
    name: str
    change: str  # what this variant adds to the previous one
    streaming: StreamingConfig
    asr: AsrConfig = AsrConfig()
    today_cap: bool = False


# Today's streaming behaviour: every lever off.
TODAY = StreamingConfig(step=0.5, agreement=2, commit_guard=0.0, tentative_beam=0, first_decode=0.0,
                        trim_after=5.0, trim_pause=0.0, max_word_rate=0.0)


def variants() -> list[Variant]:
    s = TODAY
    out = [Variant("baseline", "today's decoder (beam 5 everywhere, LocalAgreement-2, 0.5 s step)", s,
                   today_cap=True)]
    out.append(Variant("cap", "token cap fixed (CTranslate2 max_length semantics)", s))
    s = replace(s, tentative_beam=1)
    out.append(Variant("greedy", "greedy tentative decodes + loop guard (beam 5 at flush/force)", s))
    s = replace(s, first_decode=1.0)
    out.append(Variant("first1s", "no tentative decode before 1 s of speech", s))
    s = replace(s, max_word_rate=6.0)
    out.append(Variant("repeats", "collapse repeated word runs faster than 6 words/s", s))
    s = replace(s, trim_pause=0.15)
    out.append(Variant("pausetrim", "trim also at a final word + 150 ms pause (buffer > 5 s)", s))
    out.append(Variant("pausetrim3", "... once the buffer > 3 s", replace(s, trim_after=3.0)))
    s = replace(s, commit_guard=0.5, commit_probability=0.85)
    out.append(Variant("timeguard", "time guard: final if it ends 0.5 s before the buffer end, p >= 0.85", s))
    s = replace(s, step=0.8)
    out.append(Variant("step0.8", "0.8 s step", s))
    out.append(Variant("step1.0", "1.0 s step", replace(s, step=1.0)))
    out.append(Variant("window6", "6 s encoder window floor (10 s before)", s, asr=AsrConfig(min_window=6.0)))
    out.append(Variant("defaults", "the shipped defaults", StreamingConfig()))
    return out


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    reference: str
    split: str = "tune"

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def duplicates(words: list[Word]) -> int:
    """Final words that repeat an earlier final word (same text, overlapping times)."""
    count = 0
    for i, word in enumerate(words):
        if any(same_word(word, other) for other in words[max(0, i - 50) : i]):
            count += 1
    return count


def echoes(words: list[Word], min_ngram: int = 3, max_ngram: int = 8) -> int:
    """Phrases of at least `min_ngram` final words immediately repeated (a phrase committed twice)."""
    keys = [normalize(w.text) for w in words]
    count = 0
    for i in range(len(keys)):
        for n in range(min_ngram, max_ngram + 1):
            if i + 2 * n <= len(keys) and keys[i : i + n] == keys[i + n : i + 2 * n]:
                count += 1
                break
    return count


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def measure(variant: Variant, recording: Recording, model, vad: SileroVad) -> dict[str, float]:
    cls = TodayRecognizer if variant.today_cap else WhisperRecognizer
    recognizer = cls(model, variant.asr)
    cpu = time.process_time()
    result = ideal_replay(recording.audio, recognizer, vad, variant.streaming)
    cpu = time.process_time() - cpu
    return {
        "wer": round(word_error_rate(recording.reference, result.text), 4),
        "cpu_per_audio_second": round(cpu / recording.duration, 3),
        "final_latency_p50": _pct(result.final_latency, 50),
        "final_latency_p95": _pct(result.final_latency, 95),
        "partial_latency_p50": _pct(result.partial_latency, 50),
        "duplicates": duplicates(result.final_words),
        "echoes": echoes(result.final_words),
        "fallbacks": recognizer.fallbacks,
    }


def offline(recording: Recording, model) -> dict[str, float]:
    recognizer = WhisperRecognizer(model, AsrConfig())
    cpu = time.process_time()
    words, _ = recognizer.transcribe_file(recording.audio)
    cpu = time.process_time() - cpu
    return {"wer": round(word_error_rate(recording.reference, " ".join(w.text for w in words)), 4),
            "cpu_per_audio_second": round(cpu / recording.duration, 3)}


def study(recordings: list[Recording], model, vad: SileroVad, chosen: list[Variant],
          say: Callable[[str], None] = print) -> dict:
    rows: dict[str, dict] = {}
    anchors = {r.name: offline(r, model) for r in recordings}
    for variant in chosen:
        per = {}
        for recording in recordings:
            per[recording.name] = measure(variant, recording, model, vad)
            say(f"{variant.name} {recording.name}: {per[recording.name]}")
        total = sum(r.duration for r in recordings)
        weighted = {key: round(sum(per[r.name][key] * r.duration for r in recordings) / total, 3)
                    for key in ("cpu_per_audio_second",)}
        rows[variant.name] = {"change": variant.change, "streaming": variant.streaming.__dict__,
                              "recordings": per, **weighted,
                              "max_wer_over_offline": round(max(per[r.name]["wer"] - anchors[r.name]["wer"]
                                                                for r in recordings), 4),
                              "duplicates": sum(per[r.name]["duplicates"] for r in recordings),
                              "echoes": sum(per[r.name]["echoes"] for r in recordings)}
    return {"offline": anchors, "variants": rows,
            "recordings": {r.name: {"split": r.split, "seconds": round(r.duration, 1)} for r in recordings}}
