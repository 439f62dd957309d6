"""Who is who: offline agglomerative clustering, and the streaming session speaker registry.

Both are pure: embeddings in, labels out; no I/O, no clock, no models.
Embeddings are L2-normalised, so cosine distance = 1 - dot product.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment


def speaker_label(index: int) -> str:
    """Session labels in order of first appearance: S1, S2, ..."""
    return f"S{index + 1}"


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def agglomerative(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster index per embedding (0 = the cluster of the first embedding, then in order of appearance).

    Average linkage on cosine distance, cut at `threshold`: scipy's linkage is
    O(n^2) memory and time, so an hour of audio (~7000 embeddings) stays cheap.
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    tree = linkage(_normalised(embeddings), method="average", metric="cosine")
    raw = fcluster(tree, t=threshold, criterion="distance")
    # Renumber by first appearance so labels read S1, S2, ... in time order.
    order = {c: i for i, c in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[c] for c in raw.tolist()], dtype=int)


class SpeakerRegistry:
    """The speakers of one session, for the streaming diarizer.

    Each call gives the embeddings of the distinct local speakers of one window;
    they are matched one-to-one to known speakers (two voices heard at once are
    never the same person) by the smallest total cosine distance. An embedding
    farther than `threshold` from every known speaker opens a new one, up to
    `max_speakers` (past that it joins the nearest); one that is near a known
    speaker who is already taken in this window stays unknown (-1). Labels are issued once, in order of creation, and a
    label is never renamed, merged or reused: what was final stays true.
    """

    def __init__(self, threshold: float, max_speakers: int):
        if not 0 < threshold < 2:
            raise ValueError(f"threshold is a cosine distance in (0, 2), got {threshold}")
        if max_speakers < 1:
            raise ValueError(f"max_speakers must be >= 1, got {max_speakers}")
        self._threshold = threshold
        self._max = max_speakers
        self._sums: list[np.ndarray] = []  # running sum of member embeddings, one per speaker

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(speaker_label(i) for i in range(len(self._sums)))

    def centroids(self) -> np.ndarray:
        if not self._sums:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalised(np.stack(self._sums))

    def assign(self, embeddings: Sequence[np.ndarray], taken: Collection[int] = (),
               may_create: Sequence[bool] | None = None, update: bool = True) -> list[int]:
        """Speaker index (see `labels`) for each local-speaker embedding of one window.

        `taken`: speakers already heard in this window (by other local speakers),
        which these embeddings therefore cannot be. `may_create[i]` False: that
        embedding is too weak to found a new speaker (short speech gives noisy
        embeddings); unmatched, it gets -1 (unknown for now). With `update`,
        matched centroids absorb the new embeddings, so a voice is tracked as it drifts.
        """
        if len(embeddings) == 0:
            return []
        emb = _normalised(np.asarray(embeddings, dtype=np.float64))
        result = [-1] * len(emb)
        forced: set[int] = set()  # joined a speaker only because the registry is full
        fresh: set[int] = set()  # opened a new speaker
        if self._sums:
            distance = 1.0 - emb @ self.centroids().T
            distance[:, [t for t in taken if 0 <= t < len(self._sums)]] = np.inf
            rows, cols = linear_sum_assignment(np.minimum(distance, 4.0))  # inf is not allowed
            for r, c in zip(rows, cols):
                if distance[r, c] <= self._threshold:
                    result[r] = int(c)
        for r in range(len(emb)):
            if result[r] >= 0:
                continue
            if may_create is not None and not may_create[r]:
                continue
            if self._sums and float(np.min(1.0 - emb[r] @ self.centroids().T)) <= self._threshold:
                # It resembles a known voice that is taken in this window: most often
                # the segmenter split one voice into two local speakers. A new
                # speaker here would be spurious; leave it unknown instead.
                continue
            if len(self._sums) < self._max:
                self._sums.append(emb[r].copy())
                result[r] = len(self._sums) - 1
                fresh.add(r)
            else:  # full: the nearest speaker, even if another local speaker maps there too
                result[r] = int(np.argmax(emb[r] @ self.centroids().T))
                forced.add(r)  # too far to describe that voice: do not let it drag the centroid
        if update:
            for r, index in enumerate(result):
                if index >= 0 and r not in forced and r not in fresh:
                    self._sums[index] = self._sums[index] + emb[r]
        return result
