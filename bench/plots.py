"""The benchmark plots (matplotlib, Agg: no display), each from one results section."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def _cdf(ax, values: list[float], label: str, style: str) -> None:
    if values:
        x = np.sort(np.asarray(values, dtype=float))
        ax.step(x, np.arange(1, len(x) + 1) / len(x), style, where="post", label=f"{label} ({len(x)} words)")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def latency_cdf(section: dict, path: Path) -> Path:
    """Final and partial word latency CDFs, ours vs the naive baseline (e2e_latency)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("final", "partial")):
        for who, style in (("ours", "-"), ("baseline", "--")):
            _cdf(ax, section.get(who, {}).get(f"{kind}_latencies") or [], who, style)
        ax.set_title(f"{kind}-word latency")
        ax.set_xlim(left=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("seconds after the word was spoken")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("fraction of words")
    return _save(fig, path)


def capacity(section: dict, path: Path, bound: float = 2.0) -> Path:
    """Final-word latency p95 by concurrent sessions; backlog bounded (o) or growing (x)."""
    rows = sorted(section.get("rows", []), key=lambda r: r["sessions"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["sessions"] for r in rows], [r["final_latency_p95"] for r in rows], "-", color="grey")
    for bounded, marker, color, label in ((True, "o", "tab:green", "backlog bounded"),
                                          (False, "x", "tab:red", "backlog growing")):
        chosen = [r for r in rows if bool(r.get("backlog_bounded")) == bounded]
        if chosen:
            ax.plot([r["sessions"] for r in chosen], [r["final_latency_p95"] for r in chosen], marker,
                    color=color, markersize=9, label=label)
    ax.axhline(bound, color="tab:red", linestyle=":", label=f"{bound:g} s bound")
    if "target" in section:
        ax.axvline(section["target"], color="tab:blue", linestyle=":", label=f"target {section['target']} sessions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, ax, path, "concurrent sessions", "final-word latency p95 (s)")


def fanout(section: dict, path: Path) -> Path:
    """Delivery delay p50/p99 by subscribers (each code measured, e.g. before and after), with the p99 target."""
    rows = sorted(section.get("rows", []), key=lambda r: r["subscribers"])
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {("this", "delay_p50_ms"): "tab:blue", ("this", "delay_p99_ms"): "tab:orange"}
    for code, repeat in dict.fromkeys((r.get("code", "this"), r.get("repeat", 0)) for r in rows):
        mine = [r for r in rows if r.get("code", "this") == code and r.get("repeat", 0) == repeat]
        suffix = "" if code == "this" else f" ({code})"
        for key, style in (("delay_p50_ms", "o-"), ("delay_p99_ms", "s-")):
            ax.plot([r["subscribers"] for r in mine], [r[key] for r in mine], style if code == "this" else style + "-",
                    color=colours.get((code, key), "tab:green" if key == "delay_p50_ms" else "tab:red"),
                    label=key.split("_")[1] + suffix if repeat == 0 else None)  # one label per series, not per repeat
    if "target_p99_ms" in section:
        ax.axhline(section["target_p99_ms"], color="tab:red", linestyle=":", label=f"p99 target {section['target_p99_ms']} ms")
    ax.set_xscale("log")
    return _finish(fig, ax, path, "subscribers", "delivery delay (ms)")
