"""The benchmark regression guard: `python -m bench.guard check` (`make bench-check`, the last step
of `make test`) and `python -m bench.guard baseline` (`make bench-baseline`).

One measurement (about 3 minutes on 2 cores):
- calibration (bench/calibration.py) three times: at the start, after the component timings
  and at the end, the median per kind, so it sees the machine as the rest of the run did;
- the component workloads (bench/components.py), median wall and CPU time per unit, in two
  passes (before and after the replays), the faster of the two per figure;
- the sample conversation replayed on the ideal machine (bench/ideal_replay.py: latency
  floors, streaming WER and the work per audio second, all independent of load) twice: with
  our configuration and with the naive baseline's (bench/naive.py);
- `REPLAYS` real-time replays of ours (appliance/replay.py): each latency percentile and the
  CPU per audio second are the median over them, so one disturbed replay does not decide;
- offline WER (the same recognizer on the whole file) and offline diarization DER (collar 0).

`check` judges it (bench/compare.py says how): the same-run gates (this run's figures against
each other and fixed quality bounds) decide on any machine; the comparison with
bench/baseline.json is printed beside them and decides only on a machine with the baseline's
CPU fingerprint. Exit 1 when something regressed. `--set SECTION.KEY=VALUE` changes our
configuration for the replays (to try a change, or to inject a regression and see it caught).
`baseline` writes the measurement as the new bench/baseline.json, to be committed.
The latest measurement is also left in .benchmarks/guard-last.json (git-ignored).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from appliance.asr.recognizer import WhisperRecognizer
from appliance.config import SAMPLE_RATE, AppConfig, ConfigError, StreamingConfig, load_config
from appliance.evaluation import read_reference, word_error_rate
from appliance.replay import replay
from appliance.subtitles.types import SpeakerTurn
from bench import naive
from bench.calibration import calibrate
from bench.compare import FLOORS, compare, format_report
from bench.components import Inputs, fastest, measure, workloads
from bench.ideal_replay import ideal_replay
from bench.results import machine

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "bench" / "baseline.json"
LAST = ROOT / ".benchmarks" / "guard-last.json"
REPLAYS = 3
PERCENTILES = FLOORS


def _percentiles(final: list[float], partial: list[float]) -> dict[str, float]:
    values = {"final": final, "partial": partial}
    return {key: float(np.percentile(values[key.split("_")[0]], int(key[-2:]))) for key in PERCENTILES}


def diarization_error_rate(rttm: Path, turns: list[SpeakerTurn], duration: float) -> float:
    from pyannote.core import (  # test extra: only the guard needs them
        Annotation,
        Segment,
    )
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for row in (line.split() for line in rttm.read_text().splitlines() if line.strip()):
        reference[Segment(float(row[3]), float(row[3]) + float(row[4]))] = row[7]
    for turn in turns:
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker
    return DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis, uem=Segment(0, duration))


def _ideal(audio: np.ndarray, recognizer: WhisperRecognizer, vad, streaming: StreamingConfig,
           reference: str, config: AppConfig) -> dict:
    """One ideal-machine replay: latency floors, WER, and process CPU per audio second."""
    cpu = time.process_time()
    result = ideal_replay(audio, recognizer, vad, streaming)
    cpu = time.process_time() - cpu
    floors = _percentiles(result.final_latency, result.partial_latency)
    return {"config": naive.settings(config), "words": len(result.final_words),
            "wer": round(word_error_rate(reference, result.text), 4),
            "cpu_per_audio_second": round(cpu / (len(audio) / SAMPLE_RATE), 4),
            **{key: round(value, 4) for key, value in floors.items()}}


def run_measurement(sample_dir: Path, replays: int = REPLAYS, ours: AppConfig | None = None, say=print) -> dict:
    ours = ours or AppConfig()
    say("guard: loading models and the sample")
    inputs = Inputs.load(sample_dir)
    reference = read_reference(sample_dir / "sample.stm")
    calibrations = [calibrate(inputs.vad)]
    say("guard: component timings (first pass)")
    components = {workload.name: (workload, measure(workload)) for workload in workloads(inputs)}
    calibrations.append(calibrate(inputs.vad))

    recognizer = WhisperRecognizer(inputs.whisper, ours.asr)
    yardstick = naive.config()
    say("guard: ideal-machine replays, ours and the naive baseline (latency floors, streaming WER, CPU)")
    ideal = {"ours": _ideal(inputs.audio, recognizer, inputs.vad, ours.streaming, reference, ours),
             "naive": _ideal(inputs.audio, WhisperRecognizer(inputs.whisper, yardstick.asr), inputs.vad,
                             yardstick.streaming, reference, yardstick)}
    runs = []
    for i in range(replays):
        say(f"guard: real-time replay {i + 1} of {replays} (30 s)")
        result = asyncio.run(replay(inputs.audio, recognizer, inputs.vad, realtime=True, streaming=ours.streaming))
        runs.append(_percentiles(result.final_latency, result.partial_latency)
                    | {"cpu_per_audio_second": result.cpu_per_audio_second,
                       "wer": word_error_rate(reference, result.text)})
    say("guard: component timings (second pass)")
    components = {name: fastest(first, measure(workload)).as_dict() for name, (workload, first) in components.items()}
    calibrations.append(calibrate(inputs.vad))

    def median(key: str) -> float:
        return round(statistics.median(run[key] for run in runs), 4)

    duration = len(inputs.audio) / SAMPLE_RATE
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "calibration": {clock: {kind: round(statistics.median(c[clock][kind] for c in calibrations), 6)
                                for kind in calibrations[0][clock]} for clock in ("wall", "cpu")},
        "components": components,
        "ideal": ideal,
        "latency": {key: {"measured": median(key), "runs": [round(run[key], 4) for run in runs]}
                    for key in PERCENTILES},
        "load": {"cpu_per_audio_second": median("cpu_per_audio_second")},
        "accuracy": {
            "streaming_wer": ideal["ours"]["wer"],
            "naive_streaming_wer": ideal["naive"]["wer"],
            "offline_wer": round(word_error_rate(reference, " ".join(w.text for w in inputs.words)), 4),
            "offline_der": round(diarization_error_rate(sample_dir / "sample.rttm", inputs.turns, duration), 4),
        },
        # Information only: real-time WER moves with where decodes land in time (one word = 0.012).
        "realtime_wer_runs": [round(run["wer"], 4) for run in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "baseline"])
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--replays", type=int, default=REPLAYS)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change our configuration for the replays (not the naive baseline's)")
    args = parser.parse_args(argv)
    if args.command == "check" and not args.baseline.exists():
        print(f"bench-check: no baseline at {args.baseline}: record one with `make bench-baseline`", file=sys.stderr)
        return 1
    if args.command == "baseline" and args.set:
        print("bench-baseline: a baseline is recorded with the shipped configuration, without --set", file=sys.stderr)
        return 1
    try:
        ours = load_config(overrides=args.set)
    except ConfigError as exc:
        print(f"bench-check: {exc}", file=sys.stderr)
        return 1

    from tests.data.fetch import fetch

    now = run_measurement(fetch(), args.replays, ours, say=lambda text: print(text, flush=True))
    if args.set:
        now["overrides"] = args.set
    LAST.parent.mkdir(exist_ok=True)
    LAST.write_text(json.dumps(now, indent=2) + "\n")
    if args.command == "baseline":
        args.baseline.write_text(json.dumps(now, indent=2) + "\n")
        print(f"bench-baseline: wrote {args.baseline}; commit it")
        return 0
    baseline = json.loads(args.baseline.read_text())
    try:
        verdict = compare(baseline, now)
    except KeyError as exc:  # this machine's kind, but an older guard's calibration: not comparable
        print(f"bench-check: {args.baseline} cannot be compared ({exc}): re-record it with `make bench-baseline`",
              file=sys.stderr)
        return 1
    print(format_report(baseline, now, verdict))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
