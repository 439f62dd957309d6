"""Render the README's benchmark section from the latest bench/results/run-*.json (`python -m bench.report --write`)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.results import latest

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def render() -> str:
    run, replay = latest("realtime_replay")
    s, met, targets, m = replay["summary"], replay["targets_met"], replay["targets"], run["machine"]
    mark = {True: "met", False: "**missed**"}
    rows = [
        ("final-word latency p50", f"{s['final_latency_p50']:.2f} s", f"<= {targets['final_latency_p50']} s", met["final_latency_p50"]),
        ("final-word latency p95", f"{s['final_latency_p95']:.2f} s", f"<= {targets['final_latency_p95']} s", met["final_latency_p95"]),
        ("partial-word latency p50", f"{s['partial_latency_p50']:.2f} s", f"<= {targets['partial_latency_p50']} s", met["partial_latency_p50"]),
        ("partial-word latency p95", f"{s['partial_latency_p95']:.2f} s", "", None),
        ("CPU s per audio s (ASR + VAD)", f"{s['cpu_per_audio_second']:.2f}", f"<= {targets['cpu_per_audio_second']}", met["cpu_per_audio_second"]),
        ("streaming WER (offline WER)", f"{s['wer']:.3f} ({s['offline_wer']:.3f})", "<= offline + 0.02", met["wer"]),
    ]
    lines = [
        f"Real-time replay of the sample conversation (30 s, two speakers) through the streaming "
        f"session, {run['date'][:10]}, {m['cpu']}, {m['cores']} cores, ctranslate2 "
        f"{m['packages'].get('ctranslate2')}, tiny.en int8:",
        "",
        "| measure | result | target | |",
        "|---|---|---|---|",
        *[f"| {name} | {value} | {target} | {mark.get(ok, '')} |" for name, value, target, ok in rows],
        "",
        "One streaming decode (median wall / CPU seconds), by encoder window and buffer length:",
        "",
        "| window \\ buffer | 2 s | 5 s | 10 s |",
        "|---|---|---|---|",
    ]
    calls = latest("recognizer_calls")[1]["calls"]
    for window in ("0", "10", "30"):
        cells = [calls.get(f"window={window}s buffer={b}s") for b in (2, 5, 10)]
        label = "exact buffer" if window == "0" else f"{window} s floor"
        lines.append(f"| {label} | " + " | ".join(
            f"{c['wall_median_s']:.2f} / {c['cpu_s']:.2f}" if c else "–" for c in cells) + " |")
    lines += ["", "Diarization costs and accuracy: `models/diarization/README.md`. The machine is shared "
              "with other work while these run; expect ±15 % between runs."]
    return "\n".join(lines)


def main() -> None:
    section = f"{BEGIN}\n{render()}\n{END}"
    if "--write" not in sys.argv:
        print(section)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    main()
