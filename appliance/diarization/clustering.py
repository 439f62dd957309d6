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
        self.counts: list[int] = []  # embeddings absorbed, one per speaker

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
                self.counts.append(1)
                result[r] = len(self._sums) - 1
                fresh.add(r)
            else:  # full: the nearest speaker, even if another local speaker maps there too
                result[r] = int(np.argmax(emb[r] @ self.centroids().T))
                forced.add(r)  # too far to describe that voice: do not let it drag the centroid
        if update:
            for r, index in enumerate(result):
                if index >= 0 and r not in forced and r not in fresh:
                    self._sums[index] = self._sums[index] + emb[r]
                    self.counts[index] += 1
        return result


def _large(clusters: np.ndarray, min_size: int) -> np.ndarray:
    ids, sizes = np.unique(clusters, return_counts=True)
    return ids[sizes >= min_size]


def _cut(tree: np.ndarray, t: float) -> np.ndarray:
    return fcluster(tree, t=t, criterion="distance") - 1


def speaker_clusters(embeddings: np.ndarray, threshold: float, min_cluster_size: int,
                     num_clusters: int | None = None, min_clusters: int = 1,
                     max_clusters: int | None = None) -> np.ndarray:
    """pyannote's recipe: cluster index per embedding, numbered by first appearance.

    Average-linkage on cosine distance cut at `threshold`; clusters with fewer than
    `min_cluster_size` members (capped at a tenth of all embeddings, so a short
    recording keeps its speakers) are not speakers of their own: each joins the
    large cluster whose centroid is nearest. When the number of large clusters is
    outside [min_clusters, max_clusters], or `num_clusters` is given, the
    dendrogram is cut at the merge nearest the threshold that gives that many.
    """
    n = len(embeddings)
    if num_clusters is not None:
        min_clusters = max_clusters = num_clusters
    max_clusters = max(n, 1) if max_clusters is None else max_clusters
    if min_clusters < 1 or max_clusters < min_clusters:
        raise ValueError(f"speaker bounds must satisfy 1 <= min <= max, got min {min_clusters}, max {max_clusters}")
    if n <= 1:
        return np.zeros(n, dtype=int)
    emb = _normalised(np.asarray(embeddings, dtype=np.float64))
    tree = linkage(emb, method="average", metric="cosine")
    min_size = min(min_cluster_size, max(1, round(0.1 * n)))
    clusters = _cut(tree, threshold)
    large = _large(clusters, min_size)
    target = None
    if len(large) < min_clusters:
        target = min(min_clusters, n)
    elif len(large) > max_clusters:
        target = max_clusters
    if target is not None:
        # Cut by merge index instead of distance, starting from the merges nearest the threshold.
        by_index = tree.copy()
        by_index[:, 2] = np.arange(n - 1)
        best, best_large = clusters, large
        for i in np.argsort(np.abs(tree[:, 2] - threshold), kind="stable"):
            candidate = _cut(by_index, float(i))
            candidate_large = _large(candidate, min_size)
            if abs(len(candidate_large) - target) < abs(len(best_large) - target):
                best, best_large = candidate, candidate_large
            if len(best_large) == target:
                break
        clusters, large = best, best_large
    clusters = reassign_small(emb, clusters, large)
    order = {c: i for i, c in enumerate(dict.fromkeys(clusters.tolist()))}
    return np.array([order[c] for c in clusters.tolist()], dtype=int)


def reassign_small(embeddings: np.ndarray, clusters: np.ndarray, large: np.ndarray) -> np.ndarray:
    """Members of clusters not in `large` join the large cluster with the nearest centroid (cosine)."""
    if len(large) == 0:
        return np.zeros_like(clusters)
    emb = _normalised(np.asarray(embeddings, dtype=np.float64))
    centroids = _normalised(np.stack([emb[clusters == c].mean(axis=0) for c in large]))
    out = clusters.copy()
    for c in np.unique(clusters):
        if c in large:
            continue
        centroid = _normalised(emb[clusters == c].mean(axis=0))
        out[clusters == c] = large[int(np.argmax(centroids @ centroid))]
    return out


def centroids_of(embeddings: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """(num clusters, dim) normalised mean embedding of each cluster 0..max."""
    emb = _normalised(np.asarray(embeddings, dtype=np.float64))
    return _normalised(np.stack([emb[clusters == c].mean(axis=0) for c in range(int(clusters.max()) + 1)]))


def assign_constrained(similarity: np.ndarray) -> np.ndarray:
    """Cluster per local speaker of one window: best total similarity, no two on one cluster if possible.

    Two voices heard in one window are never the same person (pyannote's
    constrained argmax). Rows beyond the number of clusters take their argmax.
    """
    out = np.argmax(similarity, axis=1)
    if len(similarity) and similarity.shape[1]:
        rows, cols = linear_sum_assignment(-similarity)
        out[rows] = cols
    return out
