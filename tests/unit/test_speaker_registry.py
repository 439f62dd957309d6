"""SpeakerRegistry with synthetic embeddings: voices are noisy copies of random directions."""
import numpy as np
import pytest

from appliance.diarization.clustering import SpeakerRegistry, speaker_clusters

DIM = 192


def voices(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample(voice: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    # noise 0.03 per dimension: cosine distance to the voice ~0.15, between voices ~1.0
    return voice + rng.normal(scale=noise, size=voice.shape)


def test_first_voices_get_s1_s2_in_order_of_appearance():
    a, b = voices(2)
    rng = np.random.default_rng(1)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    assert reg.assign([sample(a, rng)]) == [0]
    assert reg.assign([sample(b, rng)]) == [1]
    assert reg.labels == ("S1", "S2")


def test_labels_are_stable_over_a_long_conversation():
    a, b = voices(2)
    rng = np.random.default_rng(2)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    reg.assign([sample(a, rng)])
    reg.assign([sample(b, rng)])
    for _ in range(200):
        assert reg.assign([sample(a, rng)]) == [0]
        assert reg.assign([sample(b, rng)]) == [1]
    assert reg.labels == ("S1", "S2")


def test_new_voice_opens_a_new_speaker_and_old_labels_do_not_move():
    a, b, c = voices(3)
    rng = np.random.default_rng(3)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    history = [reg.assign([sample(v, rng)])[0] for v in (a, b, a, b)]
    assert reg.assign([sample(c, rng)]) == [2]
    assert reg.labels == ("S1", "S2", "S3")
    # Earlier decisions are values already handed out; the same voices still map the same.
    assert history == [0, 1, 0, 1]
    assert reg.assign([sample(a, rng)]) == [0]
    assert reg.assign([sample(b, rng)]) == [1]


def test_no_flip_when_a_voice_drifts_slowly():
    """A voice drifting towards another one keeps its label: centroids follow it."""
    a, b = voices(2)
    rng = np.random.default_rng(4)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    reg.assign([a])
    reg.assign([b])
    far = a + 0.5 * (b - a)  # cosine distance to `a` ~0.3: a large, gradual change
    for t in np.linspace(0, 1, 50):
        drifted = (1 - t) * a + t * far
        assert reg.assign([sample(drifted, rng)]) == [0]
    assert reg.assign([sample(b, rng)]) == [1]


def test_two_voices_in_one_window_are_never_the_same_speaker():
    a, b = voices(2)
    rng = np.random.default_rng(5)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    reg.assign([sample(a, rng)])
    reg.assign([sample(b, rng)])
    # Both local speakers are nearest to S1; one-to-one matching gives the closer
    # one S1 and the other its next best, S2, if that is within the threshold.
    near_a, between = sample(a, rng), a + 0.9 * b
    assert reg.assign([between, near_a]) == [1, 0]


def test_a_voice_near_a_taken_speaker_stays_unknown_rather_than_new():
    """Two local speakers that both sound like S1: the segmenter split one voice; no S2 is invented."""
    a, _ = voices(2)
    rng = np.random.default_rng(6)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    reg.assign([sample(a, rng)])
    result = reg.assign([sample(a, rng), sample(a, rng, noise=0.04)])
    assert sorted(result) == [-1, 0]
    assert reg.labels == ("S1",)
    # Likewise when S1 is taken by a local speaker already known from the previous window.
    assert reg.assign([sample(a, rng)], taken={0}) == [-1]


def test_a_far_voice_opens_a_new_speaker_even_when_others_are_taken():
    a, b = voices(2)
    rng = np.random.default_rng(7)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    reg.assign([sample(a, rng)])
    assert reg.assign([sample(b, rng)], taken={0}) == [1]


def test_weak_embeddings_do_not_found_speakers():
    a, b = voices(2)
    rng = np.random.default_rng(7)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=4)
    assert reg.assign([sample(a, rng)], may_create=[False]) == [-1]
    assert reg.labels == ()
    reg.assign([sample(a, rng)])
    # A weak embedding still joins a speaker it matches.
    assert reg.assign([sample(a, rng), sample(b, rng)], may_create=[False, False]) == [0, -1]


def test_full_registry_joins_the_nearest_speaker():
    a, b, c = voices(3)
    rng = np.random.default_rng(8)
    reg = SpeakerRegistry(threshold=0.5, max_speakers=2)
    reg.assign([sample(a, rng)])
    reg.assign([sample(b, rng)])
    nearest = int(np.argmax(reg.centroids() @ c))
    assert reg.assign([c]) == [nearest]
    assert reg.labels == ("S1", "S2")


def test_update_false_leaves_centroids_alone():
    a, b = voices(2)
    reg = SpeakerRegistry(threshold=0.9, max_speakers=4)
    reg.assign([a])
    before = reg.centroids().copy()
    reg.assign([a + 0.5 * b], update=False)
    np.testing.assert_allclose(reg.centroids(), before)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="cosine distance"):
        SpeakerRegistry(threshold=2.5, max_speakers=2)
    with pytest.raises(ValueError, match="max_speakers"):
        SpeakerRegistry(threshold=0.5, max_speakers=0)


def test_clusters_group_voices_in_order_of_appearance():
    a, b, c = voices(3)
    rng = np.random.default_rng(9)
    order = [b, b, a, c, a, b, c]
    labels = speaker_clusters(np.stack([sample(v, rng) for v in order]), threshold=0.5, min_cluster_size=1)
    assert labels.tolist() == [0, 0, 1, 2, 1, 0, 2]
    assert speaker_clusters(np.zeros((0, DIM)), 0.5, 1).tolist() == []
    assert speaker_clusters(a[None], 0.5, 1).tolist() == [0]
