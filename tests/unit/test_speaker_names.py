"""Speaker names (pure): name validation, naming a label in a session's events, and matching
live speakers to enrolled voiceprints."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.delivery.eventlog import EventLog
from appliance.diarization.voiceprints import EnrolledMatcher, Voice, Voiceprint, match_voices
from appliance.subtitles.events import EventKind, SubtitleEvent
from appliance.subtitles.names import MAX_NAME_CHARACTERS, SpeakerNames, name_problem
from appliance.subtitles.types import Word


@pytest.mark.parametrize("name", ["Alice", "Dr. Émilie Dupont-Laurent", "李雷", "a" * MAX_NAME_CHARACTERS, "S1x"])
def test_good_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name, why", [
    ("", "empty"), ("   ", "empty"), ("a" * (MAX_NAME_CHARACTERS + 1), "at most 64"),
    ("Al\nice", "control"), ("Al\x00ice", "control"), ("Al\u200bice", "control"), ("Alice\u2028", "control"),
    (" Alice", "white space"), ("S12", "label"),
])
def test_bad_names_say_why_without_repeating_the_name(name, why):
    problem = name_problem(name)
    assert problem is not None and why in problem
    assert name.strip() == "" or name.strip() not in problem


def _final(cue_id: str, *speakers: str) -> SubtitleEvent:
    words = tuple(Word(f"w{i}", i, i + 0.5, speaker=s) for i, s in enumerate(speakers))
    return SubtitleEvent(EventKind.FINAL, cue_id, speakers[0], 0.0, len(speakers), (cue_id,), words,
                         final_words=len(words))


def test_naming_a_label_updates_its_past_cues_and_names_later_ones():
    names, log = SpeakerNames(), EventLog("room")
    for event in (_final("c1", "S1", "S1"), _final("c2", "S2"), _final("c3", "S2", "S1")):
        log.publish(names.apply(event))
    updates = names.rename("S1", "Alice")
    assert [(u.kind, u.cue_id, u.speaker) for u in updates] == [
        (EventKind.SPEAKER_UPDATE, "c1", "Alice"), (EventKind.SPEAKER_UPDATE, "c3", "S2")]
    assert [w.speaker for w in updates[1].words] == ["S2", "Alice"]  # only that speaker's words
    for update in updates:
        log.publish(update)
    later = names.apply(_final("c4", "S1"))
    assert later.speaker == "Alice" and later.words[0].speaker == "Alice"
    log.publish(later)
    assert [c.speaker for c in log.cues()] == ["Alice", "S2", "S2", "Alice"]  # what exports read
    # Renamed again, by its name; then back to its label.
    assert names.resolve("Alice") == "S1" and names.resolve("S2") == "S2" and names.resolve("Bob") is None
    assert [u.speaker for u in names.rename("S1", "Bob")] == ["Bob", "S2", "Bob"]
    assert [u.cue_id for u in names.rename("S1", "")] == ["c1", "c3", "c4"]
    assert names.apply(_final("c5", "S1")).speaker == "S1"


def test_a_label_named_twice_the_same_publishes_nothing_and_old_cues_are_forgotten():
    names = SpeakerNames(keep=2)
    for i in range(4):
        names.apply(_final(f"c{i}", "S1"))
    assert [u.cue_id for u in names.rename("S1", "Alice")] == ["c2", "c3"]
    assert names.rename("S1", "Alice") == []


def test_late_relabel_of_a_named_speakers_cue_carries_the_name():
    names = SpeakerNames()
    names.apply(_final("c1", "S1"))
    names.rename("S2", "Bob")
    relabelled = SubtitleEvent(EventKind.SPEAKER_UPDATE, "c1", "S2", 0, 1, ("c1",), (Word("w0", 0, 0.5, speaker="S2"),))
    shown = names.apply(relabelled)
    assert shown.speaker == "Bob" and shown.words[0].speaker == "Bob"
    assert [u.speaker for u in names.rename("S2", "Robert")] == ["Robert"]  # the relabelled cue is S2's now


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _print(i: str, name: str, v) -> Voiceprint:
    return Voiceprint(i, name, _unit(v), 10.0, 0.0)


def test_match_voices_is_one_to_one_above_the_threshold():
    prints = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0])])
    # Both centroids are nearest Alice; the better one gets her, the other gets Bob only if close enough.
    centroids = np.stack([_unit([1, 0.1, 0]), _unit([1, 0.5, 0])])
    assert match_voices(centroids, prints, threshold=0.4) == [0, 1]
    assert match_voices(centroids, prints, threshold=0.6) == [0, -1]
    assert match_voices(np.stack([_unit([0, 0, 1])]), prints, threshold=0.4) == [-1]
    assert match_voices(np.zeros((0, 3)), prints, 0.4) == []


def test_enrolled_matcher_waits_for_evidence_names_once_and_follows_the_store():
    enrolled = [_print("vp-a", "Alice", [1, 0, 0]), _print("vp-b", "Bob", [0, 1, 0])]
    matcher = EnrolledMatcher(lambda: enrolled, threshold=0.5, min_embeddings=3)
    alice, bob, stranger = _unit([1, 0.2, 0]), _unit([0.1, 1, 0]), _unit([0, 0, 1])
    assert matcher.matches([Voice("S1", alice, 2)]) == []  # too few embeddings yet
    assert matcher.matches([Voice("S1", alice, 3), Voice("S2", stranger, 9)]) == [("S1", "Alice")]
    # S1 keeps its name even if its centroid drifts; Alice is not given to a second speaker.
    assert matcher.matches([Voice("S1", bob, 9), Voice("S3", alice, 9)]) == []
    assert matcher.matches([Voice("S4", bob, 9)], skip={"S4"}) == []  # a person named S4
    enrolled.pop()  # Bob's voiceprint deleted
    assert matcher.matches([Voice("S4", bob, 9)]) == []
    enrolled.append(_print("vp-c", "Carol", [0, 0, 1]))  # enrolled while the session runs
    assert matcher.matches([Voice("S2", stranger, 9)]) == [("S2", "Carol")]
    other_model = EnrolledMatcher(lambda: [_print("vp-x", "X", [1, 0])], threshold=0.5)
    assert other_model.matches([Voice("S1", alice, 9)]) == []  # a vector of another dimension never matches
    with pytest.raises(ValueError):
        EnrolledMatcher(lambda: [], threshold=1.5)
