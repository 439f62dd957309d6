"""Offline diarization of a whole recording (the CLI's `--diarize`, session export).

Sliding windows -> local speakers from the segmenter -> one embedding per
(window, local speaker) on its clean frames -> agglomerative clustering ->
reconstruction by overlapping-window votes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.config import SAMPLE_RATE, DiarizationConfig
from appliance.diarization.aggregation import decide, first_frame, to_turns, window_votes
from appliance.diarization.clustering import agglomerative, speaker_label
from appliance.diarization.models import (
    DiarizationModels,
    FrameGrid,
    SpeakerEmbedder,
    check_audio,
    check_rate,
    fbank_frame_mask,
)
from appliance.subtitles.types import SpeakerTurn

_BATCH = 16  # windows per segmenter call: bounds memory on hour-long files


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of windows covering [0, num_samples); the last one ends at the audio's end."""
    last = max(num_samples - window, 0)
    starts = list(range(0, last + 1, hop))
    if starts[-1] < last:
        starts.append(last)
    return starts


def speaker_masks(activity: np.ndarray, valid: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per local speaker: (clean frames, all active frames), restricted to frames of real audio."""
    alone = activity.sum(axis=1) == 1
    return [((activity[:, k] == 1) & alone & valid, (activity[:, k] == 1) & valid)
            for k in range(activity.shape[1])]


def embed_local_speakers(embedder: SpeakerEmbedder, grid: FrameGrid, samples: np.ndarray,
                         activity: np.ndarray, valid: np.ndarray, min_duration: float,
                         only: Sequence[int] | None = None,
                         max_duration: float | None = None) -> list[np.ndarray | None]:
    """One embedding per local speaker of a window, or None when it has too little speech.

    Clean (single-speaker) frames are preferred: overlapped speech mixes two
    voices. A speaker who only ever overlaps falls back to all its frames.
    `only` restricts the work to some local speakers; `max_duration` keeps the
    most recent speech only (the streaming diarizer's cost cap).
    """
    min_frames = int(np.ceil(min_duration / grid.step))
    out: list[np.ndarray | None] = []
    for k, (clean, active) in enumerate(speaker_masks(activity, valid)):
        chosen = clean if clean.sum() >= min_frames else active
        if (only is not None and k not in only) or chosen.sum() < min_frames:
            out.append(None)
            continue
        frames = np.flatnonzero(chosen)
        if max_duration is not None:
            frames = frames[-int(np.ceil(max_duration / grid.step)):]
        # fbank only the span that holds the chosen frames: cheaper on long windows.
        first = max(0, int((frames[0] * grid.step + grid.offset - grid.step) * SAMPLE_RATE))
        last = min(len(samples), int((frames[-1] * grid.step + grid.offset + grid.step) * SAMPLE_RATE))
        span = np.zeros(len(chosen), dtype=bool)
        span[frames] = True
        shifted = FrameGrid(step=grid.step, offset=grid.offset - first / SAMPLE_RATE)
        cropped = samples[first:last]
        out.append(embedder.embed(cropped, fbank_frame_mask(shifted, span, len(cropped))))
    return out


@dataclass
class OfflineDiarizer:
    """Stateless apart from the shared models: one instance can serve every request."""

    models: DiarizationModels
    config: DiarizationConfig

    def __call__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[SpeakerTurn]:
        check_rate(sample_rate)
        samples = check_audio(samples)
        if len(samples) == 0:
            return []
        seg, cfg = self.models.segmenter, self.config
        grid = seg.grid
        win = int(round(cfg.window * SAMPLE_RATE))
        starts = window_starts(len(samples), win, int(round(cfg.step * SAMPLE_RATE)))
        padded = np.zeros(max(win, len(samples)), dtype=np.float32)  # a short clip: zero-pad the one window
        padded[: len(samples)] = samples
        windows = [padded[s:s + win] for s in starts]
        activity = np.concatenate([seg(np.stack(windows[i:i + _BATCH])) for i in range(0, len(windows), _BATCH)])

        # Frames past the end of the audio (padding) are not speech of anybody.
        frame_times = np.arange(activity.shape[1]) * grid.step + grid.offset
        embeddings, owners = [], []  # owners: (window, local speaker) of each embedding
        for w, (start, act) in enumerate(zip(starts, activity)):
            valid = start / SAMPLE_RATE + frame_times < len(samples) / SAMPLE_RATE
            activity[w] &= valid[:, None].astype(activity.dtype)
            for k, e in enumerate(embed_local_speakers(
                    self.models.embedder, grid, windows[w], act, valid, cfg.min_embedding_duration)):
                if e is not None:
                    embeddings.append(e)
                    owners.append((w, k))

        if embeddings:
            clusters = agglomerative(np.stack(embeddings), cfg.cluster_threshold)
        elif activity.any():
            # Speech, but none long enough to embed (a very short clip): one speaker.
            owners = [(w, k) for w in range(len(starts)) for k in range(activity.shape[2]) if activity[w, :, k].any()]
            clusters = np.zeros(len(owners), dtype=int)
        else:
            return []  # silence
        num_speakers = int(clusters.max()) + 1
        mapping = {owner: int(c) for owner, c in zip(owners, clusters)}

        total = first_frame(grid, starts[-1]) + activity.shape[1]
        score = np.zeros((total, num_speakers), dtype=np.float32)
        count = np.zeros(total, dtype=np.float32)
        cover = np.zeros(total, dtype=np.float32)
        for w, (start, act) in enumerate(zip(starts, activity)):
            local_to_global = [mapping.get((w, k), -1) for k in range(act.shape[1])]
            votes, heard = window_votes(act, local_to_global, num_speakers)
            j = first_frame(grid, start)
            score[j:j + len(act)] += votes
            count[j:j + len(act)] += heard
            cover[j:j + len(act)] += 1
        labels = [speaker_label(i) for i in range(num_speakers)]
        return to_turns(decide(score, count, cover), labels, grid, end=len(samples) / SAMPLE_RATE)
