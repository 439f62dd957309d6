"""Offline diarization of a whole recording (the CLI's `--diarize`, session export).

pyannote's recipe: sliding windows -> speech and local speakers from the
segmenter's powerset output -> one embedding per (window, local speaker) on its
clean (non-overlapped) frames -> agglomerative clustering of the embeddings with
enough clean speech, small clusters joining the nearest large one, the number of
speakers estimated or bounded by the caller -> every local speaker assigned to a
cluster (two in one window never to the same) -> reconstruction by
overlapping-window votes. A local speaker too short to embed still keeps its
speech: it joins the speaker whose activity around it overlaps it most.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from appliance.config import SAMPLE_RATE, DiarizationConfig
from appliance.diarization.aggregation import decide, first_frame, to_turns, window_votes
from appliance.diarization.clustering import assign_constrained, centroids_of, speaker_clusters, speaker_label
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


@dataclass(frozen=True)
class SpeakerBounds:
    """What the caller knows about the number of speakers (`--num-speakers`, `--min/max-speakers`)."""

    num: int | None = None
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if self.num is not None and self.num < 1:
            raise ValueError(f"num_speakers must be >= 1, got {self.num}")
        if self.min < 1:
            raise ValueError(f"min_speakers must be >= 1, got {self.min}")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max_speakers ({self.max}) must be >= min_speakers ({self.min})")
        if self.num is not None and (self.num < self.min or (self.max is not None and self.num > self.max)):
            raise ValueError(f"num_speakers {self.num} is outside [min_speakers, max_speakers]")


@dataclass(frozen=True)
class Segmentation:
    """The segmenter's view of a recording: (windows, frames, local speakers) 0/1 activity."""

    grid: FrameGrid
    starts: list[int]       # start sample of each window
    activity: np.ndarray    # frames past the audio's end are zero
    duration: float         # seconds of audio

    def first(self, w: int) -> int:
        """Global frame index of window w's first frame."""
        return first_frame(self.grid, self.starts[w])

    @property
    def frames(self) -> int:
        return self.first(len(self.starts) - 1) + self.activity.shape[1]


@dataclass(frozen=True)
class LocalEmbeddings:
    """One embedding per (window, local speaker) with enough speech to embed."""

    owners: list[tuple[int, int]]
    embeddings: np.ndarray  # (len(owners), dim)
    clean: np.ndarray       # seconds of clean (single-speaker) speech behind each


def assign_local_speakers(segmentation: Segmentation, local: LocalEmbeddings, min_clean: float,
                          cluster_threshold: float, min_cluster_size: int,
                          bounds: SpeakerBounds = SpeakerBounds()) -> tuple[np.ndarray, int]:
    """(windows, local speakers) session speaker of every active local speaker (-1: inactive), and how many.

    Pure: the clustering half of the recipe, on precomputed segmentation and embeddings.
    """
    activity = segmentation.activity
    windows, _, k_local = activity.shape
    mapping = np.full((windows, k_local), -1, dtype=int)
    active = activity.any(axis=1)  # (windows, local)
    if not active.any():
        return mapping, 0
    n = len(local.owners)
    if n:
        train = local.clean >= min_clean
        if not train.any():
            train = np.ones(n, dtype=bool)  # a short recording: cluster what there is
        clusters = speaker_clusters(local.embeddings[train], cluster_threshold, min_cluster_size,
                                    num_clusters=bounds.num, min_clusters=bounds.min, max_clusters=bounds.max)
        centroids = centroids_of(local.embeddings[train], clusters)
        similarity = local.embeddings @ centroids.T
        by_window: dict[int, list[int]] = {}
        for i, (w, _) in enumerate(local.owners):
            by_window.setdefault(w, []).append(i)
        for w, rows in by_window.items():
            for i, c in zip(rows, assign_constrained(similarity[rows])):
                mapping[local.owners[i]] = int(c)
        num = len(centroids)
    else:
        num = 1
        mapping[active] = 0  # speech, none long enough to embed (a very short clip): one speaker
        return mapping, num
    # Local speakers too short to embed: the speaker most active on their frames in other windows.
    score, _, _ = _votes(segmentation, mapping, num)
    for w, k in zip(*np.nonzero(active & (mapping < 0))):
        j = segmentation.first(int(w))
        frames = activity[w, :, k].astype(bool)
        near = score[j:j + len(frames)][frames].sum(axis=0)
        taken = set(mapping[w][mapping[w] >= 0].tolist())
        if len(taken) >= num:
            continue  # every speaker is heard elsewhere in this window: counted, not labelled
        if near.max() <= 0:
            near = score.sum(axis=0)  # nobody near: the most talkative speaker
        near[list(taken)] = -np.inf
        mapping[w, k] = int(np.argmax(near))
    return mapping, num



def _votes(segmentation: Segmentation, mapping: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per global frame: summed activity of each speaker, summed local speaker count, windows seen."""
    total = segmentation.frames
    score = np.zeros((total, num), dtype=np.float32)
    count = np.zeros(total, dtype=np.float32)
    cover = np.zeros(total, dtype=np.float32)
    for w, act in enumerate(segmentation.activity):
        votes, heard = window_votes(act, mapping[w].tolist(), num)
        j = segmentation.first(w)
        score[j:j + len(act)] += votes
        count[j:j + len(act)] += heard
        cover[j:j + len(act)] += 1
    return score, count, cover


def reconstruct(segmentation: Segmentation, mapping: np.ndarray, num: int) -> list[SpeakerTurn]:
    """Speaker turns from the per-window assignment (overlapping-window votes)."""
    if num == 0:
        return []
    score, count, cover = _votes(segmentation, mapping, num)
    labels = [speaker_label(i) for i in range(num)]
    turns = to_turns(decide(score, count, cover), labels, segmentation.grid, end=segmentation.duration)
    # Labels in order of first speech, whatever the cluster numbering.
    order = {s: speaker_label(i) for i, s in enumerate(dict.fromkeys(t.speaker for t in turns))}
    return [replace(t, speaker=order[t.speaker]) for t in turns]


@dataclass
class OfflineDiarizer:
    """Stateless apart from the shared models: one instance can serve every request."""

    models: DiarizationModels
    config: DiarizationConfig

    def __call__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE,
                 bounds: SpeakerBounds = SpeakerBounds()) -> list[SpeakerTurn]:
        check_rate(sample_rate)
        samples = check_audio(samples)
        if len(samples) == 0:
            return []
        segmentation = self.segment(samples)
        local = self.embed(samples, segmentation)
        cfg = self.config
        mapping, num = assign_local_speakers(segmentation, local, cfg.min_embedding_duration,
                                             cfg.cluster_threshold, cfg.min_cluster_size, bounds)
        return reconstruct(segmentation, mapping, num)

    def _windows(self, samples: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
        cfg = self.config
        win = int(round(cfg.window * SAMPLE_RATE))
        starts = window_starts(len(samples), win, int(round(cfg.step * SAMPLE_RATE)))
        padded = np.zeros(max(win, len(samples)), dtype=np.float32)  # a short clip: zero-pad the one window
        padded[: len(samples)] = samples
        return starts, [padded[s:s + win] for s in starts]

    def segment(self, samples: np.ndarray) -> Segmentation:
        seg = self.models.segmenter
        starts, windows = self._windows(samples)
        activity = np.concatenate([seg(np.stack(windows[i:i + _BATCH])) for i in range(0, len(windows), _BATCH)])
        # Frames past the end of the audio (padding) are not speech of anybody.
        frame_times = np.arange(activity.shape[1]) * seg.grid.step + seg.grid.offset
        duration = len(samples) / SAMPLE_RATE
        for w, start in enumerate(starts):
            activity[w] &= (start / SAMPLE_RATE + frame_times < duration)[:, None].astype(activity.dtype)
        return Segmentation(grid=seg.grid, starts=starts, activity=activity, duration=duration)

    def embed(self, samples: np.ndarray, segmentation: Segmentation) -> LocalEmbeddings:
        """Every local speaker with enough speech for the embedder (clean frames preferred)."""
        grid, embedder = segmentation.grid, self.models.embedder
        _, windows = self._windows(samples)
        owners, embeddings, clean = [], [], []
        valid = np.ones(segmentation.activity.shape[1], dtype=bool)
        for w, act in enumerate(segmentation.activity):
            masks = speaker_masks(act, valid)
            for k, e in enumerate(embed_local_speakers(embedder, grid, windows[w], act, valid,
                                                       max(embedder.min_duration, grid.step))):
                if e is not None:
                    owners.append((w, k))
                    embeddings.append(e)
                    clean.append(float(masks[k][0].sum()) * grid.step)
        dim = embedder.dimension
        return LocalEmbeddings(owners=owners,
                               embeddings=np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32),
                               clean=np.array(clean, dtype=np.float64))
