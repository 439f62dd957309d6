"""Live speaker labels (pure bookkeeping between the streaming diarizer and the cue assembler),
and the linking of local speakers across overlapping segmentation windows."""
import numpy as np

from appliance.diarization.labels import SpeakerLabeler, relabel
from appliance.diarization.streaming import StreamingUpdate, link_local_speakers
from appliance.subtitles.types import SpeakerTurn, Word


def turn(start: float, end: float, speaker: str) -> SpeakerTurn:
    return SpeakerTurn(start, end, speaker)


def test_a_word_past_the_final_horizon_gets_the_current_guess_and_waits():
    labeler = SpeakerLabeler()
    labeler.update(StreamingUpdate(final_until=1.0, tentative=[turn(1.0, 4.0, "S1")]))
    labelled, final = labeler.label([Word("hello", 2.0, 2.5)])
    assert [w.speaker for w in labelled] == ["S1"] and final == []


def test_a_pending_word_settles_once_the_horizon_passes_it_and_a_changed_label_is_reported():
    labeler = SpeakerLabeler()
    labeler.update(StreamingUpdate(final_until=1.0, tentative=[turn(1.0, 4.0, "S1")]))
    (guess,), _ = labeler.label([Word("hello", 2.0, 2.5)])
    settled = labeler.update(StreamingUpdate(final=[turn(1.8, 3.0, "S2")], final_until=3.0))
    assert [(w.text, w.speaker) for w in settled.words] == [("hello", "S2")]
    assert settled.changed == [(guess, settled.words[0])]
    again = labeler.update(StreamingUpdate(final_until=4.0))  # each word settles once
    assert again.words == [] and again.changed == []


def test_a_settled_label_that_matches_the_guess_is_not_a_change():
    labeler = SpeakerLabeler()
    labeler.update(StreamingUpdate(final_until=0.0, tentative=[turn(0.0, 3.0, "S1")]))
    labeler.label([Word("yes", 1.0, 1.4)])
    settled = labeler.update(StreamingUpdate(final=[turn(0.5, 2.0, "S1")], final_until=2.5))
    assert [w.speaker for w in settled.words] == ["S1"] and settled.changed == []


def test_words_already_behind_the_horizon_are_final_at_once_and_partials_are_not_tracked():
    labeler = SpeakerLabeler()
    labeler.update(StreamingUpdate(final=[turn(0.0, 2.0, "S2")], final_until=2.0,
                                   tentative=[turn(2.0, 5.0, "S1")]))
    labelled, final = labeler.label([Word("early", 0.5, 1.0), Word("late", 3.0, 3.5)])
    assert [w.speaker for w in final] == ["S2"] and [w.text for w in final] == ["early"]
    labeler.label([Word("maybe", 4.0, 4.5)], track=False)
    settled = labeler.update(StreamingUpdate(final=[turn(2.0, 5.0, "S1")], final_until=5.0))
    assert [w.text for w in settled.words] == ["late"]  # the partial word was never pending


def test_relabel_applies_changes_to_the_words_of_a_cue_only_when_one_is_in_it():
    a, b = Word("one", 0.0, 0.4, speaker="S1"), Word("two", 0.5, 0.9, speaker="S1")
    changed = [(b, Word("two", 0.5, 0.9, speaker="S2"))]
    assert relabel((a, b), changed) == (a, Word("two", 0.5, 0.9, speaker="S2"))
    assert relabel((a,), changed) is None


def activity(frames: int, speaking: dict[int, tuple[int, int]]) -> np.ndarray:
    """[frames, 3] 0/1 activity with local speaker k active over its [start, end) frames."""
    out = np.zeros((frames, 3), dtype=np.int8)
    for k, (start, end) in speaking.items():
        out[start:end, k] = 1
    return out


def test_local_speakers_are_linked_by_their_shared_frames_in_the_overlap():
    # Window 2 starts 10 frames after window 1; its numbering is swapped.
    previous = activity(30, {0: (0, 18), 1: (18, 30)})
    current = activity(30, {1: (0, 8), 0: (8, 30)})  # frames 10..18 of previous = 0..8 of current
    assert sorted(link_local_speakers(previous, current, shift=10, min_frames=3)) == [(0, 1), (1, 0)]


def test_too_little_shared_speech_links_nothing_and_no_overlap_links_nothing():
    previous = activity(30, {0: (0, 12)})
    current = activity(30, {0: (0, 2), 1: (2, 30)})  # only 2 frames shared with previous speaker 0
    assert link_local_speakers(previous, current, shift=10, min_frames=3) == []
    assert link_local_speakers(previous, current, shift=30, min_frames=1) == []
