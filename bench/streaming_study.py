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
from appliance.inference.whisper import load_whisper
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
TODAY = StreamingConfig(step=0.5, agreement=2, commit_guard=0.0, commit_deadline=0.0, tentative_beam=0,
                        first_decode=0.0, trim_after=5.0, trim_pause=0.0, max_word_rate=0.0, pause_flush=False)
# What `make bench`-style runs measure (the others were measured once, on part of the tune split, and
# are kept runnable through STUDY_VARIANTS): the cumulative path to the defaults, then the levers past them.
RUN = ("baseline", "cap", "greedy", "first1s", "repeats", "pausetrim", "timeguard", "deadline", "pauseflush",
       "step0.8", "threads2", "flushonly")


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
    out.append(Variant("repeats", "hypothesis guard: repeats faster than 6 words/s collapsed, squeezed runs dropped", s))
    s = replace(s, trim_pause=0.15)
    out.append(Variant("pausetrim", "trim also at a final word + 150 ms pause (buffer > 5 s)", s))
    out.append(Variant("pausetrim3", "... once the buffer > 3 s", replace(s, trim_after=3.0)))
    s = replace(s, commit_guard=0.5, commit_probability=0.85)
    out.append(Variant("timeguard", "time guard: final if it ends 0.5 s before the buffer end, p >= 0.85", s))
    s = replace(s, commit_deadline=1.5)
    out.append(Variant("deadline", "... or 1.5 s before the buffer end whatever p", s))
    s = replace(s, pause_flush=True)
    out.append(Variant("pauseflush", "a decode in a pause at the full beam, reused as the region's flush "
                       "(= the defaults)", s))
    out.append(Variant("leadin", "decode buffer starts 0.5 s before the VAD speech start", replace(s, lead_in=0.5)))
    out.append(Variant("flushlead", "reference point: flushonly with the 0.5 s lead-in and the hypothesis guard",
                       replace(TODAY, agreement=10_000, step=5.0, lead_in=0.5, max_word_rate=6.0)))
    out.append(Variant("context0.5", "agreement only on words ending >= 0.5 s before the buffer end",
                       replace(s, commit_context=0.5)))
    out.append(Variant("context1.0", "... 1.0 s", replace(s, commit_context=1.0)))
    out.append(Variant("beamctx", "context 1.0 s, beam 5 tentative", replace(s, commit_context=1.0, tentative_beam=0)))
    out.append(Variant("step0.65", "0.65 s step", replace(s, step=0.65)))
    out.append(Variant("step0.8", "0.8 s step", replace(s, step=0.8)))
    out.append(Variant("step1.0", "1.0 s step", replace(s, step=1.0)))
    out.append(Variant("threads2", "cpu_threads 2 (1 by default): more CPU per call, faster calls", s,
                       asr=AsrConfig(cpu_threads=2)))
    out.append(Variant("window8", "8 s encoder window floor (10 s before)", replace(s, step=0.8),
                       asr=AsrConfig(min_window=8.0)))
    out.append(Variant("flushonly", "reference point: words final only at VAD ends / forced (no agreement)",
                       replace(TODAY, agreement=10_000, step=5.0)))
    return out


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    reference: str
    split: str = "tune"
    language: str = "en"  # of the reference: how the WER normalises it

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


def measure(variant: Variant, recording: Recording, model, vad: SileroVad) -> tuple[dict, list[float], list[float]]:
    cls = TodayRecognizer if variant.today_cap else WhisperRecognizer
    recognizer = cls(model, variant.asr)
    cpu = time.process_time()
    result = ideal_replay(recording.audio, recognizer, vad, variant.streaming)
    cpu = time.process_time() - cpu
    return {
        "wer": round(word_error_rate(recording.reference, result.text, recording.language), 4),
        "words": len(result.final_words),
        "cpu_per_audio_second": round(cpu / recording.duration, 3),
        "final_latency_p50": _pct(result.final_latency, 50),
        "final_latency_p95": _pct(result.final_latency, 95),
        "partial_latency_p50": _pct(result.partial_latency, 50),
        "duplicates": duplicates(result.final_words),
        "echoes": echoes(result.final_words),
        "fallbacks": recognizer.fallbacks,
    }, result.final_latency, result.partial_latency


def offline(recording: Recording, model, asr: AsrConfig | None = None) -> dict[str, float]:
    recognizer = WhisperRecognizer(model, asr or AsrConfig())
    cpu = time.process_time()
    words, _ = recognizer.transcribe_file(recording.audio)
    cpu = time.process_time() - cpu
    text = " ".join(w.text for w in words)
    return {"wer": round(word_error_rate(recording.reference, text, recording.language), 4),
            "cpu_per_audio_second": round(cpu / recording.duration, 3)}


def _mean_wer(rows: dict[str, dict], names: list[str]) -> float:
    return round(sum(rows[n]["wer"] for n in names) / len(names), 4)


def study(recordings: list[Recording], model, vad: SileroVad, chosen: list[Variant],
          say: Callable[[str], None] = print, asr: AsrConfig | None = None) -> dict:
    """`model` loaded with `asr` (the offline anchor's config); each variant's own `asr` decodes the stream."""
    asr = asr or AsrConfig()
    rows: dict[str, dict] = {}
    anchors = {r.name: offline(r, model, asr) for r in recordings}
    models = {asr.cpu_threads: model}  # a variant with other thread counts gets its own load
    for variant in chosen:
        threads = variant.asr.cpu_threads
        if threads not in models:
            models[threads] = load_whisper(variant.asr)
        per, finals, partials = {}, [], []
        for recording in recordings:
            per[recording.name], final, partial = measure(variant, recording, models[threads], vad)
            finals, partials = finals + final, partials + partial
            say(f"{variant.name} {recording.name}: {per[recording.name]}")
        total = sum(r.duration for r in recordings)
        cpu = sum(per[r.name]["cpu_per_audio_second"] * r.duration for r in recordings) / total
        row = {"change": variant.change, "streaming": variant.streaming.__dict__,
               "asr": variant.asr.__dict__, "recordings": per,
               "cpu_per_audio_second": round(cpu, 3),
               "final_latency_p50": _pct(finals, 50), "final_latency_p95": _pct(finals, 95),
               "partial_latency_p50": _pct(partials, 50),
               "max_wer_over_offline": round(max(per[r.name]["wer"] - anchors[r.name]["wer"]
                                                 for r in recordings), 4),
               "duplicates": sum(per[r.name]["duplicates"] for r in recordings),
               "echoes": sum(per[r.name]["echoes"] for r in recordings)}
        for split in sorted({r.split for r in recordings}):
            names = [r.name for r in recordings if r.split == split]
            row[f"wer_{split}"] = _mean_wer(per, names)
            row[f"offline_wer_{split}"] = _mean_wer(anchors, names)
        rows[variant.name] = row
    return {"offline": anchors, "variants": rows,
            "recordings": {r.name: {"split": r.split, "seconds": round(r.duration, 1)} for r in recordings}}


def markdown(section: dict, realtime: dict | None = None) -> str:
    """The README's study tables from one run's `streaming_study` (and `streaming_study_realtime`) sections."""
    splits = sorted({r["split"] for r in section["recordings"].values()})
    head = ["variant", "adds"] + [f"WER {s}" for s in splits] + [
        "worst WER − offline", "CPU s / audio s", "final p50 / p95 (s)", "partial p50 (s)", "twice"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    anchor = next(iter(section["variants"].values()))
    lines.append("| offline | whole file, beam 5 | " + " | ".join(
        f"{anchor[f'offline_wer_{s}']:.3f}" for s in splits) + " | – | "
        + f"{_offline_cpu(section):.3f} | – | – | – |")
    for name, row in section["variants"].items():
        cells = [name, row["change"]] + [f"{row[f'wer_{s}']:.3f}" for s in splits] + [
            f"{row['max_wer_over_offline']:+.3f}", f"{row['cpu_per_audio_second']:.3f}",
            f"{row['final_latency_p50']:.2f} / {row['final_latency_p95']:.2f}",
            f"{row['partial_latency_p50']:.2f}", str(row["duplicates"] + row["echoes"])]
        lines.append("| " + " | ".join(cells) + " |")
    if realtime:
        lines += ["", "| recording | split | s | offline WER | fast WER | real-time WER | final p50 / p95 (s) "
                  "| partial p50 (s) | CPU s / audio s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, row in realtime["recordings"].items():
            fast, rt = row["fast"], row["realtime"]
            lines.append(f"| {name} | {realtime['splits'][name]} | {section['recordings'].get(name, {}).get('seconds', '–')}"
                         f" | {row['offline_wer']:.3f} | {fast['wer']:.3f} | {rt['wer']:.3f} | "
                         f"{rt['final_latency_p50']:.2f} / {rt['final_latency_p95']:.2f} | "
                         f"{rt['partial_latency_p50']:.2f} | {rt['cpu_per_audio_second']:.3f} |")
    return "\n".join(lines)


def _offline_cpu(section: dict) -> float:
    seconds = {n: r["seconds"] for n, r in section["recordings"].items()}
    return sum(section["offline"][n]["cpu_per_audio_second"] * s for n, s in seconds.items()) / sum(seconds.values())


if __name__ == "__main__":
    from bench.results import latest

    run, section = latest("streaming_study")
    try:
        _, realtime = latest("streaming_study_realtime")
    except LookupError:
        realtime = None
    print(f"{run['date'][:10]}, {run['machine']['cpu']}, {run['machine']['cores']} cores\n")
    print(markdown(section, realtime))
