"""pyannote's offline recipe, pure parts: small-cluster reassignment, speaker bounds, constrained
assignment and keeping the speech of local speakers too short to embed. Plain arrays only."""
import numpy as np
import pytest

from appliance.diarization.clustering import assign_constrained, reassign_small, speaker_clusters
from appliance.diarization.models import FrameGrid
from appliance.diarization.offline import (
    LocalEmbeddings,
    Segmentation,
    SpeakerBounds,
    assign_local_speakers,
    reconstruct,
)

DIM = 192


def voices(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def samples(voice: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    return voice + rng.normal(scale=noise, size=(n, DIM))


def test_small_cluster_joins_the_nearest_large_one():
    a, b = voices(2)
    rng = np.random.default_rng(1)
    near_a = a + 1.5 * voices(1, seed=5)[0]  # a distorted copy of voice a: far enough to split off
    emb = np.vstack([samples(a, 20, rng), samples(b, 20, rng), samples(near_a, 2, rng, noise=0.01)])
    alone = speaker_clusters(emb, threshold=0.3, min_cluster_size=1)
    assert alone.max() + 1 == 3  # without the rule the distorted pair is a third speaker
    clusters = speaker_clusters(emb, threshold=0.3, min_cluster_size=5)
    assert clusters.max() + 1 == 2
    assert set(clusters[40:]) == {clusters[0]}  # ... with it, it joins voice a
    assert set(clusters[:20]) == {0} and set(clusters[20:40]) == {1}


def test_reassign_small_moves_members_of_small_clusters_only():
    emb = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.9, 0.2]])
    clusters = np.array([0, 0, 1, 1, 2])
    assert reassign_small(emb, clusters, np.array([0, 1])).tolist() == [0, 0, 1, 1, 0]
    assert reassign_small(emb, clusters, np.array([], dtype=int)).tolist() == [0, 0, 0, 0, 0]


def test_min_cluster_size_is_capped_for_short_recordings():
    a, b = voices(2)
    rng = np.random.default_rng(2)
    emb = np.vstack([samples(a, 8, rng), samples(b, 3, rng)])  # 11 embeddings: cap is round(1.1) = 1
    assert speaker_clusters(emb, threshold=0.5, min_cluster_size=12).max() + 1 == 2


def test_speaker_count_is_fixed_or_bounded_by_the_caller():
    v = voices(4)
    rng = np.random.default_rng(3)
    emb = np.vstack([samples(x, 10, rng) for x in v])
    assert speaker_clusters(emb, 0.5, 3).max() + 1 == 4
    assert speaker_clusters(emb, 0.5, 3, num_clusters=2).max() + 1 == 2
    assert speaker_clusters(emb, 0.5, 3, max_clusters=3).max() + 1 == 3
    assert speaker_clusters(emb, 0.5, 3, min_clusters=4, max_clusters=4).max() + 1 == 4
    # One voice, but the caller says two: the dendrogram is cut lower.
    one = samples(v[0], 30, rng)
    assert speaker_clusters(one, 0.5, 3).max() + 1 == 1
    assert speaker_clusters(one, 0.5, 3, min_clusters=2).max() + 1 == 2
    with pytest.raises(ValueError, match="1 <= min <= max"):
        speaker_clusters(emb, 0.5, 3, min_clusters=3, max_clusters=2)


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="num_speakers must be >= 1"):
        SpeakerBounds(num=0)
    with pytest.raises(ValueError, match="must be >= min_speakers"):
        SpeakerBounds(min=3, max=2)
    with pytest.raises(ValueError, match="outside"):
        SpeakerBounds(num=5, max=4)


def test_two_local_speakers_of_one_window_never_share_a_cluster():
    similarity = np.array([[0.9, 0.2], [0.8, 0.7]])  # both nearest to cluster 0
    assert assign_constrained(similarity).tolist() == [0, 1]
    assert assign_constrained(np.array([[0.1, 0.9]])).tolist() == [1]


GRID = FrameGrid(step=0.1, offset=0.05)


def segmentation(activity: np.ndarray, hop_frames: int) -> Segmentation:
    starts = [int(round(w * hop_frames * GRID.step * 16_000)) for w in range(len(activity))]
    duration = (len(activity) - 1) * hop_frames * GRID.step + activity.shape[1] * GRID.step
    return Segmentation(grid=GRID, starts=starts, activity=activity, duration=duration)


def test_a_local_speaker_too_short_to_embed_keeps_its_speech():
    """Two windows of 20 frames, hop 10. Window 0: A (frames 0-7), B (12-19). Window 1 (global
    frames 10-29): B goes on (its local 0, embedded, clean speech below min_clean), then a short
    reply too short to embed (local 1, global 22-25): it is labelled, not dropped."""
    act = np.zeros((2, 20, 3), dtype=np.uint8)
    act[0, 0:8, 0] = 1
    act[0, 12:20, 1] = 1
    act[1, 2:10, 0] = 1
    act[1, 12:16, 1] = 1
    a, b = voices(2)
    local = LocalEmbeddings(owners=[(0, 0), (0, 1), (1, 0)], embeddings=np.stack([a, b, b]),
                            clean=np.array([0.8, 0.8, 0.2]))
    seg = segmentation(act, hop_frames=10)
    mapping, num = assign_local_speakers(seg, local, min_clean=0.5, cluster_threshold=0.5, min_cluster_size=1)
    assert num == 2
    assert mapping[0, 0] != mapping[0, 1]
    assert mapping[1, 0] == mapping[0, 1]  # assigned though it took no part in the clustering
    assert mapping[1, 1] == mapping[0, 0]  # B is taken in window 1, so the reply is A's
    turns = reconstruct(seg, mapping, num)
    assert [(t.start, t.end, t.speaker) for t in turns] == [(0.0, 0.8, "S1"), (1.2, 2.0, "S2"), (2.2, 2.6, "S1")]


def test_silence_and_unembeddable_speech():
    act = np.zeros((1, 20, 3), dtype=np.uint8)
    empty = LocalEmbeddings(owners=[], embeddings=np.zeros((0, DIM)), clean=np.zeros(0))
    mapping, num = assign_local_speakers(segmentation(act, 10), empty, 0.5, 0.5, 1)
    assert num == 0 and reconstruct(segmentation(act, 10), mapping, num) == []
    act[0, 3:6, 2] = 1
    mapping, num = assign_local_speakers(segmentation(act, 10), empty, 0.5, 0.5, 1)
    assert num == 1 and [t.speaker for t in reconstruct(segmentation(act, 10), mapping, num)] == ["S1"]
