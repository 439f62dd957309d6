"""Enrolled voiceprints matched to a session's speakers. Pure: vectors in, names out.

A voiceprint is one person's speaker embedding (L2-normalised, as the embedder gives it),
never audio. A session speaker is named after an enrolled person when the centroid of its
embeddings is at least `threshold` cosine-similar to that person's voiceprint; the
assignment is one-to-one (two speakers of one room are never the same enrolled person), and a
name, once given, stays (what was published stays true).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Voiceprint:
    id: str
    name: str
    vector: np.ndarray  # L2-normalised embedding
    speech_seconds: float
    created: float  # Unix time


@dataclass(frozen=True)
class Voice:
    """A session speaker as the streaming diarizer knows it."""

    label: str
    centroid: np.ndarray  # L2-normalised mean of its embeddings
    embeddings: int  # how many embeddings went into it


def match_voices(centroids: np.ndarray, prints: np.ndarray, threshold: float) -> list[int]:
    """Per centroid, the index of its voiceprint (-1: none): one-to-one, the largest total
    cosine similarity, pairs below `threshold` dropped."""
    result = [-1] * len(centroids)
    if len(centroids) == 0 or len(prints) == 0:
        return result
    similarity = np.asarray(centroids, np.float64) @ np.asarray(prints, np.float64).T
    rows, cols = linear_sum_assignment(-similarity)
    for r, c in zip(rows, cols):
        if similarity[r, c] >= threshold:
            result[int(r)] = int(c)
    return result


class EnrolledMatcher:
    """One session's matching of its speakers to the enrolled voiceprints.

    `voiceprints` is read at each call (the store's in-memory snapshot: an enrolment or a
    deletion counts from the next diarizer step). A speaker is matched once it has
    `min_embeddings` embeddings: a first, short embedding is too noisy to name anyone by.
    """

    def __init__(self, voiceprints: Callable[[], Sequence[Voiceprint]], threshold: float,
                 min_embeddings: int = 3):
        if not -1.0 < threshold < 1.0:
            raise ValueError(f"threshold is a cosine similarity in (-1, 1), got {threshold}")
        self._voiceprints = voiceprints
        self.threshold = threshold
        self.min_embeddings = min_embeddings
        self.named: dict[str, str] = {}  # label -> voiceprint id, for the session's lifetime

    def matches(self, voices: Sequence[Voice], skip: Collection[str] = ()) -> list[tuple[str, str]]:
        """(label, name) pairs newly matched; labels in `skip` (named by a person) are left alone."""
        used = set(self.named.values())
        prints = [p for p in self._voiceprints() if p.id not in used]
        open_voices = [v for v in voices if v.label not in self.named and v.label not in skip
                       and v.embeddings >= self.min_embeddings]
        if not prints or not open_voices:
            return []
        dimension = len(open_voices[0].centroid)
        prints = [p for p in prints if len(p.vector) == dimension]
        found = match_voices(np.stack([v.centroid for v in open_voices]),
                             np.stack([p.vector for p in prints]) if prints else np.zeros((0, dimension)),
                             self.threshold)
        out = []
        for voice, index in zip(open_voices, found):
            if index >= 0:
                self.named[voice.label] = prints[index].id
                out.append((voice.label, prints[index].name))
        return out
