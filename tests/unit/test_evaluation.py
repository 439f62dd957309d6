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


def test_french_normalisation_keeps_accents_and_splits_at_apostrophes_and_hyphens():
    assert normalize("L’homme a dit : « Peut-être qu'il viendra aujourd'hui. »", "fr") == \
        "l homme a dit peut être qu il viendra aujourd hui"
    assert normalize("Élève, ÉTÉ, naïf", "fr") == "élève été naïf"
    # A composed and a decomposed é are the same letter.
    assert normalize("e\u0301te\u0301", "fr") == normalize("été", "fr")


def test_french_wer_counts_words_not_spelling_variants():
    assert word_error_rate("C'est l'été, n'est-ce pas ?", "c’est l’été n’est ce pas", "fr") == 0.0
    assert word_error_rate("qu'on dise", "qu 'on dise", "fr") == 0.0  # Whisper's word split
    assert word_error_rate("l'homme", "le homme", "fr") == 0.5  # the article really differs
    assert word_error_rate("à la maison", "a la maison", "fr") == 1 / 3  # an accent is a different word


def test_english_typographic_apostrophes_are_plain_ones():
    assert normalize("I didn’t know") == "i didn't know"
