"""The README's benchmark section and the plots, from the newest run holding each section.

`python -m bench.report` prints the section; `--write` also replaces it in README.md (between
the bench markers) and writes the PNGs next to the results. A section no run has measured yet
renders as such; a section with missing keys renders what it has ("–" for the rest).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

from bench.results import RESULTS, latest

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NOT_MEASURED = "not measured yet (`make bench`)"
PLOTS = {"e2e_latency": "latency_cdf.png", "capacity": "capacity.png", "fanout": "fanout.png"}
COMPONENT_ORDER = ("vad_frame", "recognizer_call_2s", "recognizer_call_5s", "recognizer_call_10s",
                   "segmentation_window", "embedding_segment", "cue_assembly_event", "protobuf_event")
LATENCY_ROWS = (
    ("final-word latency p50 (s)", "final_latency_p50", ".2f"),
    ("final-word latency p95 (s)", "final_latency_p95", ".2f"),
    ("partial-word latency p50 (s)", "partial_latency_p50", ".2f"),
    ("partial-word latency p95 (s)", "partial_latency_p95", ".2f"),
    ("speaker-label latency p50 (s)", "speaker_latency_p50", ".2f"),
    ("speaker-label latency p95 (s)", "speaker_latency_p95", ".2f"),
    ("CPU s per audio s", "cpu_per_audio_second", ".2f"),
    ("WER", "wer", ".3f"),
)


def fmt(value: object, spec: str = ".2f") -> str:
    """A number as `spec`, a bool as yes/no, anything missing as "–"."""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, int | float):
        try:
            return format(value, spec)
        except ValueError:  # e.g. a float where an integer was expected
            return str(value)
    return "–" if value is None or value == "" else str(value)


def measured_on(run: dict) -> str:
    machine = run.get("machine", {})
    return f"measured {str(run.get('date', '?'))[:10]} on {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


def components(run: dict, s: dict) -> list[str]:
    names = [n for n in COMPONENT_ORDER if n in s] + sorted(set(s) - set(COMPONENT_ORDER))
    return [f"Per unit of work, {measured_on(run)} (bench/test_components_bench.py):", "",
            *table(("component", "unit", "wall median (ms)", "CPU (ms)"),
                   [(n, fmt(s[n].get("unit")), fmt(s[n].get("wall_median_ms"), ".3f"), fmt(s[n].get("cpu_ms"), ".3f"))
                    for n in names])]


def realtime_replay(run: dict, s: dict) -> list[str]:
    summary, met, targets = s.get("summary", {}), s.get("targets_met", {}), s.get("targets", {})
    mark = {True: "met", False: "**missed**"}

    def row(name, key, spec, target=None, ok_key=None):
        bound = target if target is not None else (f"<= {targets[key]}" if key in targets else "")
        return (name, fmt(summary.get(key), spec), bound, mark.get(met.get(ok_key or key), ""))

    wer = f"{fmt(summary.get('wer'), '.3f')} ({fmt(summary.get('offline_wer'), '.3f')})"
    return [(f"Real-time replay of the sample conversation (30 s, two speakers) through the streaming session "
            f"in-process (ASR + VAD, tiny.en int8), {measured_on(run)}:"), "",
            *table(("measure", "result", "target", ""), [
                row("final-word latency p50 (s)", "final_latency_p50", ".2f"),
                row("final-word latency p95 (s)", "final_latency_p95", ".2f"),
                row("partial-word latency p50 (s)", "partial_latency_p50", ".2f"),
                row("partial-word latency p95 (s)", "partial_latency_p95", ".2f"),
                row("CPU s per audio s", "cpu_per_audio_second", ".2f"),
                ("streaming WER (offline WER)", wer, "<= offline + 0.02", mark.get(met.get("wer"), "")),
            ])]


def recognizer_calls(run: dict, s: dict) -> list[str]:
    calls = s.get("calls", {})
    rows = []
    for window in ("0", "10", "30"):
        cells = [calls.get(f"window={window}s buffer={b}s") for b in (2, 5, 10)]
        label = "exact buffer" if window == "0" else f"{window} s floor"
        rows.append((label, *(f"{fmt(c.get('wall_median_s'))} / {fmt(c.get('cpu_s'))}" if c else "–" for c in cells)))
    return [f"One streaming decode (median wall / CPU seconds) by encoder window and buffer length, {measured_on(run)}:",
            "", *table(("window \\ buffer", "2 s", "5 s", "10 s"), rows)]


def e2e_latency(run: dict, s: dict) -> list[str]:
    ours, base, ratios, offline = s.get("ours", {}), s.get("baseline", {}), s.get("ratios", {}), s.get("offline", {})
    rows = [(name, fmt(ours.get(key), spec), fmt(base.get(key), spec), fmt(ratios.get(key)))
            for name, key, spec in LATENCY_ROWS]
    return [(f"Through the running daemon (Transcribe in real time + a live Subscribe), {fmt(s.get('audio_seconds'), '.0f')} s "
            f"of audio, ours vs the naive baseline ({fmt(base.get('config'))}), {measured_on(run)}:"), "",
            *table(("measure", "ours", "naive baseline", "ours / baseline"), rows), "",
            (f"Offline anchor (whole file at once): WER {fmt(offline.get('wer'), '.3f')}, "
            f"{fmt(offline.get('cpu_per_audio_second'), '.3f')} CPU s per audio s."), "",
            f"![word latency CDF, ours vs baseline](bench/results/{PLOTS['e2e_latency']})"]


def capacity(run: dict, s: dict) -> list[str]:
    rows = [(fmt(r.get("sessions"), "d"), fmt(r.get("final_latency_p50")), fmt(r.get("final_latency_p95")),
             fmt(r.get("backlog_max_seconds")), fmt(r.get("backlog_bounded")), fmt(r.get("cpu_per_audio_second")),
             fmt(r.get("merged_updates"), "d")) for r in sorted(s.get("rows", []), key=lambda r: r.get("sessions", 0))]
    cap, target = s.get("capacity"), s.get("target")
    verdict = "" if not isinstance(cap, int) or not isinstance(target, int) else (
        " (met)" if cap >= target else " (**missed**)")
    return [(f"Concurrent real-time sessions on one daemon (diarization {'on' if s.get('diarization') else 'off'}, "
            f"{fmt(s.get('audio_seconds_per_session'), '.0f')} s each), {measured_on(run)}:"), "",
            *table(("sessions", "final p50 (s)", "final p95 (s)", "backlog max (s)", "backlog bounded",
                    "CPU s per audio s", "merged updates"), rows), "",
            f"Capacity: **{fmt(cap, 'd')}** sessions, target {fmt(target, 'd')}{verdict}. Criterion: {fmt(s.get('criterion'))}.", "",
            f"![final-word latency p95 by sessions](bench/results/{PLOTS['capacity']})"]


def overload(run: dict, s: dict) -> list[str]:
    rows = [("sessions", fmt(s.get("sessions"), "d")), ("duration (s)", fmt(s.get("duration_seconds"), ".0f")),
            ("RSS start / peak / end (MB)", " / ".join(fmt(s.get(k), ".0f") for k in ("rss_start_mb", "rss_peak_mb", "rss_end_mb"))),
            ("merged updates", fmt(s.get("merged_updates"), "d")), ("daemon alive", fmt(s.get("daemon_alive"))),
            ("recovered", fmt(s.get("recovered"))),
            ("final p95 after recovery (s)", fmt(s.get("recovery_final_latency_p95")))]
    notes = ["", str(s["notes"])] if s.get("notes") else []
    return [f"Overload (more sessions than the box can serve), {measured_on(run)}:", "",
            *table(("measure", "result"), rows), *notes]


def fanout(run: dict, s: dict) -> list[str]:
    target = s.get("target_p99_ms")
    config = s.get("config", {})

    def row(r: dict) -> tuple[str, ...]:
        met = (fmt(r["delay_p99_ms"] <= target) if isinstance(target, int | float)
               and isinstance(r.get("delay_p99_ms"), int | float) else "–")
        return (str(r.get("code", "this")), fmt(r.get("subscribers"), "d"), fmt(r.get("events"), "d"),
                fmt(r.get("deliveries"), "d"), fmt(r.get("lost"), "d"), fmt(r.get("delay_p50_ms"), ".1f"),
                fmt(r.get("delay_p99_ms"), ".1f"), fmt(r.get("delay_max_ms"), ".1f"), met,
                fmt(r.get("server_delay_p50_ms"), ".1f"), fmt(r.get("server_delay_p99_ms"), ".1f"),
                fmt(r.get("daemon_cpu_us_per_delivery"), ".0f"), fmt(r.get("daemon_loop_cpu_us_per_delivery"), ".0f"),
                fmt(r.get("client_cpu_us_per_delivery"), ".0f"), fmt(r.get("load_average"), ".1f"))

    rows = [row(r) for r in sorted(s.get("rows", []), key=lambda r: (r.get("subscribers", 0), r.get("code", "")))]
    processes = config.get("client_processes")
    where = ("in this benchmark's process" if processes == 0 else
             f"in {processes} processes of their own" if processes else "in the benchmark's process")
    notes = ["", f"Delay: an event's creation (the daemon's wall clock) to its receipt by a subscriber, {where} "
                 f"({config.get('streams_per_connection', '?')} streams per connection). Server: creation to the "
                 "write to that subscriber's connection (`appliance_delivery_delay_seconds`, interpolated within "
                 "its buckets); it is taken as each write starts. Daemon (loop) µs / delivery: the daemon's CPU (its "
                 "event loop thread's) beyond the smallest size's, per extra delivery; client µs / delivery: the "
                 "subscribers' processes' CPU per delivery. Load: the box's 1-minute load average as the row ended "
                 "(2 cores; other work shares them)."]
    floor = s.get("grpc_floor")
    if floor:
        notes += ["", f"grpc.aio's own floor on this box in the same run (a bare handler writing {fmt(floor.get('subscribers'), 'd')} "
                      "streams the same bytes, clients in a subprocess, nothing else in its process): "
                      f"{fmt(floor.get('loop_cpu_us_per_delivery'), '.0f')} µs of loop CPU per delivery, last write "
                      f"{fmt(floor.get('last_write_p50_ms'), '.1f')} ms after the event (p50; max "
                      f"{fmt(floor.get('last_write_max_ms'), '.1f')} ms)."]
    if config.get("compare"):
        notes += ["", f"Rows `compare`: {config.get('compare_note') or config['compare']}, measured in the same run, "
                      "each size right after `this`."]
    return [f"Fan-out of one session's events to many subscribers over loopback gRPC, {measured_on(run)}:", "",
            *table(("code", "subscribers", "events", "deliveries", "lost", "delay p50 (ms)", "delay p99 (ms)",
                    "delay max (ms)", f"p99 <= {fmt(target, 'g')} ms", "server p50 (ms)", "server p99 (ms)",
                    "daemon µs / delivery", "loop µs / delivery", "client µs / delivery", "load"), rows),
            *notes, "",
            f"![delivery delay by subscribers](bench/results/{PLOTS['fanout']})"]


def french_beside_english(run: dict, s: dict) -> list[str]:
    rows = [(name, fmt(r.get("model")), fmt(r.get("language")), fmt(r.get("final_latency_p50")),
             fmt(r.get("final_latency_p95")), fmt(r.get("partial_latency_p50")), fmt(r.get("wer"), ".3f"))
            for name, r in s.get("rooms", {}).items()]
    return [(f"A French room (whisper-base, {s.get('speech', 'espeak-ng speech')}) beside an English room "
             f"(tiny.en), pushed in real time "
             f"through one daemon for {fmt(s.get('audio_seconds'), '.0f')} s, {measured_on(run)}; daemon CPU "
             f"{fmt(s.get('cpu_per_audio_second'), '.3f')} s per audio s per room:"), "",
            *table(("room", "model", "language", "final p50 (s)", "final p95 (s)", "partial p50 (s)", "WER"), rows)]


def french_rooms(run: dict, s: dict) -> list[str]:
    rows = [(name, fmt(r.get("final_latency_p50")), fmt(r.get("final_latency_p95")), fmt(r.get("partial_latency_p50")),
             fmt(r.get("wer"), ".3f")) for name, r in s.get("rooms", {}).items()]
    return [(f"Two French rooms (whisper-base, real speech: {fmt(s.get('speech'))}) pushed at once in real time "
             f"through one daemon, diarization on, {measured_on(run)}: final p50 / p95 over both rooms' words "
             f"{fmt(s.get('final_latency_p50'))} / {fmt(s.get('final_latency_p95'))} s (bound "
             f"{fmt(s.get('target_final_p95'), 'g')} s), backlog bounded {fmt(s.get('backlog_bounded'))}, daemon CPU "
             f"{fmt(s.get('cpu_per_audio_second'), '.3f')} s per audio s per room:"), "",
            *table(("room", "final p50 (s)", "final p95 (s)", "partial p50 (s)", "WER"), rows)]


def french_streaming(run: dict, s: dict) -> list[str]:
    """Real French on whisper-base: offline against the stream (ideal machine, --fast, --realtime)."""
    study, ideal = s["study"], s["study"]["variants"]["defaults"]["recordings"]
    rows = []
    for name, r in s["recordings"].items():
        fast, rt = r.get("fast", {}), r.get("realtime", {})
        rows.append((name, fmt(s["splits"].get(name)), fmt(r.get("offline_wer"), ".3f"),
                     fmt(ideal.get(name, {}).get("wer"), ".3f"), fmt(fast.get("wer"), ".3f"), fmt(rt.get("wer"), ".3f"),
                     f"{fmt(rt.get('final_latency_p50'))} / {fmt(rt.get('final_latency_p95'))}",
                     fmt(rt.get("cpu_per_audio_second"), ".3f")))
    means = []
    for split in sorted(set(s["splits"].values())):
        chosen = [r for name, r in s["recordings"].items() if s["splits"].get(name) == split]
        offline, fast, live = (fmean(get(r) for r in chosen) for get in (
            lambda r: r["offline_wer"], lambda r: r["fast"]["wer"], lambda r: r["realtime"]["wer"]))
        means.append(f"{split}: offline {offline:.3f}, fast {fast:.3f}, real time {live:.3f}")
    offline_cpu = fmean(v["cpu_per_audio_second"] for v in study["offline"].values())
    return [(f"Real French speech (Asterisk's prompts read by one speaker, 8 kHz telephone audio; tests/data/corpus.py) "
             f"on whisper-base, language fr, offline against the shipped streaming defaults in one run, "
             f"{measured_on(run)} (bench/test_streaming_study.py); offline CPU {offline_cpu:.3f} s per audio s. "
             f"Mean WER by split: {'; '.join(means)}:"), "",
            *table(("recording", "split", "offline WER", "ideal-machine WER", "fast WER", "real-time WER",
                    "real-time final p50 / p95 (s)", "real-time CPU s / audio s"), rows)]


def diarization_heldout(run: dict, s: dict) -> list[str]:
    """Held-out diarization (bench/test_diarization_eval.py): DER, JER and exact speaker counts per kind."""
    offline, live = s["offline"], s["live"]
    rows = []
    for kind, o in offline["mean"].items():
        lv = live["mean"].get(kind, {})
        rows.append((f"{kind} ({fmt(o.get('recordings'), 'd')})",
                     f"{fmt(o.get('der'), '.3f')} / {fmt(o.get('der_collar'), '.3f')}", fmt(o.get("jer"), ".3f"),
                     fmt(o.get("count_exact"), ".0%"),
                     f"{fmt(lv.get('der'), '.3f')} / {fmt(lv.get('der_collar'), '.3f')}", fmt(lv.get("jer"), ".3f"),
                     fmt(lv.get("count_exact"), ".0%")))
    return [(f"Held-out recordings of the evaluation set (thresholds tuned on the tune split only), "
             f"{measured_on(run)}; CPU s per audio s: offline {fmt(offline.get('cpu_s_per_audio_s'), '.3f')}, "
             f"live {fmt(live.get('cpu_s_per_audio_s'), '.3f')}:"), "",
            *table(("held-out (n)", "offline DER 0 / 0.25", "offline JER", "offline count exact",
                    "live DER 0 / 0.25", "live JER", "live count exact"), rows)]


SECTIONS: tuple[tuple[str, str, Callable[[dict, dict], list[str]]], ...] = (
    ("Components", "components", components),
    ("Real-time replay (in-process)", "realtime_replay", realtime_replay),
    ("Recognizer calls", "recognizer_calls", recognizer_calls),
    ("End-to-end latency through the daemon", "e2e_latency", e2e_latency),
    ("Capacity", "capacity", capacity),
    ("Overload", "overload", overload),
    ("Fan-out", "fanout", fanout),
    ("French beside English", "french_beside_english", french_beside_english),
    ("Two French rooms", "french_rooms", french_rooms),
    ("French streaming against offline", "french_streaming", french_streaming),
    ("Diarization, held-out", "diarization_eval_heldout", diarization_heldout),
)


def _latest(section: str, directory: Path) -> tuple[dict, dict] | None:
    try:
        return latest(section, directory)
    except LookupError:
        return None


def render(directory: Path = RESULTS) -> str:
    lines: list[str] = []
    for title, name, renderer in SECTIONS:
        lines += [f"**{title}**", ""]
        found = _latest(name, directory)
        if found is None:
            lines.append(NOT_MEASURED)
        else:
            try:
                lines += renderer(*found)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a half-written section
                lines.append(f"{title}: results incomplete ({type(exc).__name__}: {exc}); rerun `make bench`")
        lines.append("")
    lines.append("The machine may be shared with other work while these run: expect ±15 % between runs.")
    return "\n".join(lines)


def write_plots(directory: Path = RESULTS, out: Path | None = None) -> list[Path]:
    """The PNGs for the sections some run measured; the others are left alone."""
    from bench import plots  # matplotlib only when plotting

    out = out or directory
    written = []
    for section, plot in (("e2e_latency", plots.latency_cdf), ("capacity", plots.capacity), ("fanout", plots.fanout)):
        found = _latest(section, directory)
        if found is not None:
            written.append(plot(found[1], out / PLOTS[section]))
    return written


def replace_section(readme: str, section: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README has no {BEGIN} … {END} markers")
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, readme, flags=re.DOTALL)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    section = f"{BEGIN}\n{render()}\n{END}"
    if "--write" not in argv:
        print(section)
        return
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(), section))
    for path in write_plots():
        print(f"wrote {path.relative_to(ROOT)}")
    print("wrote README.md benchmark section")


if __name__ == "__main__":
    main()
