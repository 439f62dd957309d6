from appliance.evaluation import normalize, read_reference, word_error_rate


def test_normalize_strips_punctuation_keeps_apostrophes():
    assert normalize("Oh, I DIDN'T know!  Okay.") == "oh i didn't know okay"


def test_wer_ignores_case_and_punctuation():
    assert word_error_rate("Hello, world.", "hello world") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5


def test_read_stm(tmp_path):
    stm = tmp_path / "r.stm"
    stm.write_text("s 1 A 0.0 1.0 Hello?\ns 1 B 1.0 2.0 Oh, hello there.\n")
    assert read_reference(stm) == "Hello? Oh, hello there."
