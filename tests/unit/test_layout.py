from appliance.subtitles.layout import CueBuilder, CueRules, layout_cues, wrap_lines
from appliance.subtitles.types import Word


def words(text: str, start: float = 0.0, step: float = 0.3, speaker: str | None = None) -> list[Word]:
    return [Word(t, round(start + i * step, 3), round(start + i * step + 0.25, 3), 0.9, speaker)
            for i, t in enumerate(text.split())]


def test_short_text_is_one_line():
    assert wrap_lines(["Hello", "there."], 42, 2) == ("Hello there.",)


def test_long_text_is_two_balanced_lines_within_limit():
    texts = "At least you know they all call me a Yankee down here so what".split()
    lines = wrap_lines(texts, 42, 2)
    assert lines is not None and len(lines) == 2
    assert all(len(line) <= 42 for line in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 12
    assert " ".join(lines) == " ".join(texts)


def test_text_beyond_two_lines_does_not_fit():
    assert wrap_lines(["word"] * 30, 42, 2) is None


def test_overlong_single_word_gets_its_own_line():
    assert wrap_lines(["x" * 60], 42, 2) == ("x" * 60,)


def test_cues_respect_line_and_duration_limits():
    ws = words("one two three four five six seven eight nine ten " * 8, step=0.35)
    cues = layout_cues(ws)
    assert [w for c in cues for w in c.words] == ws  # nothing lost, nothing repeated, order kept
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
        assert cue.end - cue.start <= 7.0 + 1e-9
        assert cue.end >= cue.words[-1].end


def test_speaker_change_starts_a_new_cue():
    ws = words("hello there", speaker="S1") + words("hi how are you", start=1.0, speaker="S2")
    cues = layout_cues(ws)
    assert [c.speaker for c in cues] == ["S1", "S2"]
    assert cues[0].text == "hello there"


def test_long_pause_starts_a_new_cue():
    cues = layout_cues(words("before the pause") + words("after it", start=5.0))
    assert [c.text for c in cues] == ["before the pause", "after it"]


def test_sentence_end_closes_cue_only_after_min_duration():
    quick = words("Hello. Oh, hello.", step=0.2)  # first sentence is up 0.25 s: keep going
    assert len(layout_cues(quick)) == 1
    slow = words("Hello there my friend. Nice to see you", step=0.4)  # 1.45 s before the period
    assert [c.text for c in layout_cues(slow)] == ["Hello there my friend.", "Nice to see you"]


def test_short_cue_is_extended_to_min_duration_but_not_over_next_cue():
    alone = layout_cues([Word("Hi.", 2.0, 2.3)])
    assert alone[0].end == 3.0
    squeezed = layout_cues([Word("Yes.", 2.0, 2.3, speaker="S1"), Word("No.", 2.6, 2.9, speaker="S2")])
    assert squeezed[0].end == 2.6  # stops where the next speaker's cue starts
    assert squeezed[1].end == 3.6


def test_pending_shows_open_cue_and_flush_closes_it():
    builder = CueBuilder(CueRules())
    for w in words("live words arriving"):
        assert builder.add(w) == []
    assert builder.pending().text == "live words arriving"
    (cue,) = builder.flush()
    assert cue.text == "live words arriving"
    assert builder.pending() is None and builder.flush() == []
