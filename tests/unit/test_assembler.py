from appliance.subtitles.assembler import CueAssembler, dominant_speaker
from appliance.subtitles.events import EventKind
from appliance.subtitles.types import Decision, Word


def w(text: str, start: float, speaker: str | None = None) -> Word:
    return Word(text, start, round(start + 0.3, 3), 0.9, speaker)


def test_partial_shows_final_words_then_tentative_ones():
    asm = CueAssembler()
    (event,) = asm.update(Decision(final=[w("Good", 0.0)], partial=[w("morning", 0.4)], stability=0.6))
    assert event.kind == EventKind.PARTIAL and event.cue_id == "c1"
    assert event.text == "Good morning" and event.final_words == 1 and event.stability == 0.6


def test_region_end_closes_the_cue_with_immutable_final():
    asm = CueAssembler()
    asm.update(Decision(final=[w("Good", 0.0)], partial=[w("morning", 0.4)]))
    (final,) = asm.update(Decision(final=[w("morning.", 0.4)], closed=True))
    assert final.kind == EventKind.FINAL and final.cue_id == "c1" and final.text == "Good morning."
    assert final.end >= 1.0  # minimum display time
    (nxt,) = asm.update(Decision(final=[], partial=[w("Next", 3.0)], stability=0.5))
    assert nxt.cue_id == "c2" and nxt.final_words == 0


def test_speaker_change_closes_the_cue_and_labels_it():
    asm = CueAssembler()
    asm.update(Decision(final=[w("Hello", 0.0, "S1"), w("there.", 0.4, "S1")]))
    events = asm.update(Decision(final=[w("Hi", 1.2, "S2")], partial=[]))
    kinds = [(e.kind, e.cue_id, e.speaker) for e in events]
    assert kinds == [(EventKind.FINAL, "c1", "S1"), (EventKind.PARTIAL, "c2", "S2")]


def test_overlong_partial_spills_into_the_next_cue_id():
    asm = CueAssembler()
    words = [w(f"word{i}", i * 0.3) for i in range(20)]  # > 84 characters
    events = asm.update(Decision(final=[], partial=words, stability=0.4))
    assert [e.cue_id for e in events] == ["c1", "c2"]
    assert all(len(line) <= 42 for e in events for line in e.lines)


def test_revised_away_partial_is_cleared():
    asm = CueAssembler()
    asm.update(Decision(partial=[w("uh", 0.0)], stability=0.2))
    (cleared,) = asm.update(Decision(partial=[]))
    assert cleared.kind == EventKind.PARTIAL and cleared.words == () and cleared.cue_id == "c1"
    assert asm.update(Decision(partial=[])) == []


def test_finish_closes_open_cue_and_cues_are_kept_for_export():
    asm = CueAssembler()
    asm.update(Decision(final=[w("last", 5.0), w("words", 5.4)]))
    (final,) = asm.finish()
    assert final.kind == EventKind.FINAL and asm.cues["c1"].text == "last words"


def test_dominant_speaker_by_duration():
    words = [Word("a", 0, 0.2, speaker="S1"), Word("bbbb", 0.2, 1.0, speaker="S2"), Word("c", 1.0, 1.1)]
    assert dominant_speaker(words) == "S2" and dominant_speaker([Word("x", 0, 1)]) is None
