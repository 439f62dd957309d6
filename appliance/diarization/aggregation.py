"""From per-window local decisions to one speaker timeline (pure numpy, shared by both diarizers).

Overlapping windows each vote on the frames they see (pyannote's reconstruction):
per global frame we average (a) each session speaker's activity and (b) the
number of speakers the segmenter heard, then keep the `round(count)` speakers
with the highest average. This is what makes a frame seen by several windows
more reliable than any single window.
"""
from __future__ import annotations

import numpy as np

from appliance.config import SAMPLE_RATE
from appliance.diarization.models import FrameGrid
from appliance.subtitles.types import SpeakerTurn


def window_votes(activity: np.ndarray, local_to_global: list[int], num_global: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, num_global) activity of session speakers in one window, and (frames,) speaker count.

    `local_to_global[k]` is the session speaker of local speaker k, or -1 when
    unknown (too little speech to embed): such a speaker counts in (b), not in (a).
    """
    frames = activity.shape[0]
    votes = np.zeros((frames, num_global), dtype=np.float32)
    for k, g in enumerate(local_to_global):
        if g >= 0:
            votes[:, g] = np.maximum(votes[:, g], activity[:, k])
    return votes, activity.sum(axis=1).astype(np.float32)


def first_frame(grid: FrameGrid, start_sample: int) -> int:
    """Index on the global grid of a window's first frame (nearest; off by < step/2)."""
    return int(round(start_sample / SAMPLE_RATE / grid.step))


def decide(score: np.ndarray, count: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """(frames, speakers) bool: the top round(mean count) speakers by mean activity, if active at all."""
    seen = np.where(cover > 0, cover, 1.0)[:, None]  # cover is a sum of weights, possibly < 1
    mean = score / seen
    k = np.rint(count / seen[:, 0]).astype(int)
    ranked = np.argsort(-mean, axis=1, kind="stable")
    rank = np.empty_like(ranked)
    np.put_along_axis(rank, ranked, np.arange(score.shape[1])[None, :].repeat(len(score), 0), axis=1)
    return (rank < k[:, None]) & (mean > 0)


def to_turns(active: np.ndarray, labels: list[str] | tuple[str, ...], grid: FrameGrid,
             first: int = 0, end: float | None = None) -> list[SpeakerTurn]:
    """Runs of active frames as turns; frame j (global index first + j) spans centre +- step/2.

    `end` clips the last turn to the audio's real end.
    """
    turns = []
    for s in range(active.shape[1]):
        column = np.concatenate([[False], active[:, s], [False]])
        edges = np.flatnonzero(np.diff(column.astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2]):
            start = max(0.0, (first + a) * grid.step + grid.offset - grid.step / 2)
            stop = (first + b - 1) * grid.step + grid.offset + grid.step / 2
            if end is not None:
                stop = min(stop, end)
            if stop > start:
                turns.append(SpeakerTurn(start=round(float(start), 3), end=round(float(stop), 3), speaker=labels[s]))
    return sorted(turns, key=lambda t: (t.start, t.speaker))
