from appliance.asr.hypothesis import collapse_repeats
from appliance.subtitles.types import Word


def words(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end) for text, start, end in items]


def texts(ws: list[Word]) -> list[str]:
    return [w.text for w in ws]


def test_a_word_loop_squeezed_into_the_buffer_end_keeps_what_its_span_holds():
    run = words(("some", 0.0, 0.3), ("words", 0.3, 0.7), ("words", 0.7, 1.0), ("words", 1.0, 1.02),
                ("words", 1.02, 1.03), ("words", 1.03, 1.04), ("words", 1.04, 1.05))
    # After the first, a copy needs 0.25 s at 4 words/s: one more fits, the squeezed ones go.
    assert texts(collapse_repeats(run, max_rate=4.0)) == ["some", "words", "words"]


def test_a_phrase_echoed_in_no_time_is_dropped():
    run = words(("I", 0.0, 0.5), ("don't", 0.5, 0.9), ("hear", 0.9, 1.1), ("that.", 1.1, 1.4),
                ("I", 1.4, 1.4), ("don't", 1.4, 1.4), ("hear", 1.4, 1.4), ("that.", 1.4, 1.45))
    assert texts(collapse_repeats(run, max_rate=6.0)) == ["I", "don't", "hear", "that."]


def test_repeats_at_speaking_pace_stay():
    said = words(("no,", 0.0, 0.3), ("no,", 0.5, 0.8), ("no.", 1.0, 1.3),
                 ("you", 2.0, 2.2), ("know,", 2.2, 2.5), ("you", 2.6, 2.8), ("know.", 2.8, 3.1))
    assert collapse_repeats(said, max_rate=6.0) == said


def test_off_when_rate_is_zero():
    run = words(("a", 0.0, 0.0), ("a", 0.0, 0.0), ("a", 0.0, 0.0))
    assert collapse_repeats(run, max_rate=0) == run


def test_a_long_phrase_loop_is_collapsed():
    phrase = ["Oh,", "I'm", "originally", "from", "Chicago."]
    run = [Word(t, 1.8 + 0.2 * i, 2.0 + 0.2 * i) for i, t in enumerate(phrase)]
    run += [Word(t, 3.0, 3.0) for t in phrase] + [Word(t, 3.2, 3.2) for t in phrase]
    assert texts(collapse_repeats(run, max_rate=6.0)) == phrase


def test_a_squeezed_run_is_dropped_but_single_instant_words_stay():
    from appliance.asr.hypothesis import drop_squeezed

    ws = words(("Chicago.", 0.98, 1.32), ("Oh,", 1.32, 1.32), ("I'm", 1.32, 1.32), ("originally", 1.32, 1.32),
               ("from", 1.32, 1.7), ("I", 2.0, 2.0), ("know", 2.0, 2.3))
    assert texts(drop_squeezed(ws)) == ["Chicago.", "from", "I", "know"]
