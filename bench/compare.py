"""The regression guard's verdict: a measurement against the committed baseline. Pure.

Both documents (bench/guard.py writes them) hold raw figures from their own machine plus
that run's calibration. Machines differ and are noisy, so timings are compared as they
would have been on the baseline's machine:

- The calibration gives two speed ratios (bench/calibration.py), > 1 when this run's
  machine is slower: `k_cpu` from process CPU seconds (the work itself) and `k_wall` from
  wall seconds (waiting for a core included, as real-time latency does).
- Component timings and CPU per audio second are compared as CPU time: now / k_cpu vs
  baseline. CPU time is the work a stage costs (it sets capacity) and hardly moves when
  other processes compete for the cores; wall medians of millisecond calls on a busy
  2-core box moved by 2x in this project's own runs.
- A latency percentile is partly compute and partly audio time that no CPU speed changes
  (the step, the agreement wait, the VAD's end of speech). Each run measures that fixed
  part directly (its "ideal" figure: bench/ideal_replay.py), and only the rest is scaled:
  ideal + max(measured - ideal, 0) / k_wall vs baseline. Scaling the whole percentile would
  let a fast machine hide a regression and fail a slow machine for nothing; scaling none of
  it would make the baseline a property of one box. A change of the fixed part itself (a
  longer step) is a real regression and is compared unscaled.
- WER and DER are compared absolutely: worse by more than `accuracy` fails.

A figure in the baseline that this run lacks fails (a benchmark silently dropped is a
regression of the guard); a figure only this run has is listed as new, not compared.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.calibration import speed_ratio


@dataclass(frozen=True)
class Limits:
    timing: float = 0.25  # relative: 0.25 fails a figure 25 % slower than the baseline
    accuracy: float = 0.01  # absolute WER / DER


@dataclass(frozen=True)
class Row:
    measure: str
    baseline: float | None
    now: float | None  # as measured in this run
    adjusted: float | None  # `now` as on the baseline's machine (what is compared)
    change: str
    limit: str
    ok: bool


@dataclass(frozen=True)
class Verdict:
    k_cpu: float  # this machine's CPU-time slowness vs the baseline's
    k_wall: float  # the same in wall time
    rows: list[Row]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]


def _missing(measure: str, baseline: float | None) -> Row:
    return Row(measure, baseline, None, None, "missing in this run", "must be measured", False)


def _new(measure: str, now: float) -> Row:
    return Row(measure, None, now, None, "new, not in the baseline", "-", True)


def _relative(measure: str, baseline: float, now: float, adjusted: float, limits: Limits) -> Row:
    change = adjusted / baseline - 1 if baseline > 0 else 0.0
    return Row(measure, baseline, now, adjusted, f"{change:+.1%}", f"<= +{limits.timing:.0%}",
               change <= limits.timing)


def _absolute(measure: str, baseline: float, now: float, limits: Limits) -> Row:
    change = now - baseline
    return Row(measure, baseline, now, now, f"{change:+.4f}", f"<= +{limits.accuracy}",
               change <= limits.accuracy + 1e-12)


def _pairs(baseline: dict, now: dict):
    """(name, baseline value, now value or None) for the baseline's keys; new rows for the others."""
    for name, value in baseline.items():
        yield name, value, now.get(name)
    for name in now.keys() - baseline.keys():
        yield name, None, now[name]


def _group(baseline: dict, now: dict, label, value, judge):
    """Rows of one group of figures: new, missing, or judged (baseline entry, this run's entry)."""
    for name, base, cur in _pairs(baseline, now):
        measure = label(name)
        if base is None:
            yield _new(measure, value(cur))
        elif cur is None:
            yield _missing(measure, value(base))
        else:
            yield judge(measure, base, cur)


def compare(baseline: dict, now: dict, limits: Limits = Limits()) -> Verdict:
    k_cpu = speed_ratio(baseline["calibration"]["cpu"], now["calibration"]["cpu"])
    k_wall = speed_ratio(baseline["calibration"]["wall"], now["calibration"]["wall"])

    def component(measure: str, base: dict, cur: dict) -> Row:
        return _relative(measure, base["cpu_ms"], cur["cpu_ms"], cur["cpu_ms"] / k_cpu, limits)

    def latency(measure: str, base: dict, cur: dict) -> Row:
        compute = max(cur["measured"] - cur["ideal"], 0.0)
        return _relative(measure, base["measured"], cur["measured"], cur["ideal"] + compute / k_wall, limits)

    groups = (
        ("components", "{} CPU ms".format, lambda v: v["cpu_ms"], component),
        ("latency", "{} s".format, lambda v: v["measured"], latency),
        ("load", str, float, lambda measure, base, cur: _relative(measure, base, cur, cur / k_cpu, limits)),
        ("accuracy", str, float, lambda measure, base, cur: _absolute(measure, base, cur, limits)),
    )
    rows = [row for key, label, value, judge in groups
            for row in _group(baseline.get(key, {}), now.get(key, {}), label, value, judge)]
    return Verdict(k_cpu, k_wall, rows)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def format_report(baseline: dict, now: dict, verdict: Verdict) -> str:
    """The calibration figures and every comparison, as a plain-text table."""
    lines = [f"baseline: {baseline.get('date', '?')} on {_machine(baseline)}",
             f"now:      {now.get('date', '?')} on {_machine(now)}", "",
             "calibration (median s)   baseline wall / CPU   now wall / CPU"]
    base_cal, now_cal = baseline["calibration"], now["calibration"]
    for kind in base_cal["cpu"]:
        lines.append(f"  {kind:<22} {_cell(base_cal['wall'].get(kind)):>8} / {_cell(base_cal['cpu'].get(kind)):<8}   "
                     f"{_cell(now_cal['wall'].get(kind)):>8} / {_cell(now_cal['cpu'].get(kind))}")
    lines += [(f"  speed ratios (geometric mean; > 1: this machine is slower): k_cpu = {verdict.k_cpu:.3f}, "
              f"k_wall = {verdict.k_wall:.3f}"), "",
              ("compared as on the baseline's machine: components and CPU per audio s: now / k_cpu; latency: "
              "ideal + (measured - ideal) / k_wall"), ""]
    header = ("measure", "baseline", "now", "as on base", "change", "limit", "result")
    table = [header] + [(r.measure, _cell(r.baseline), _cell(r.now), _cell(r.adjusted), r.change, r.limit,
                         "pass" if r.ok else "FAIL") for r in verdict.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    failed = verdict.failures
    lines += ["", f"bench-check: {'ok' if not failed else 'FAILED'}: {len(verdict.rows) - len(failed)} of "
              f"{len(verdict.rows)} comparisons within limits"
              + ("" if not failed else "; regressed: " + ", ".join(r.measure for r in failed))]
    return "\n".join(lines)


def _machine(document: dict) -> str:
    machine = document.get("machine", {})
    return f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
