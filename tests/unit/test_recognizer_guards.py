"""The recognizer's pure helpers: CTranslate2's token cap arithmetic and the decoder loop guard."""
from appliance.asr.recognizer import compression_ratio, max_length_for, repeats_at_end


def generation_cap(max_length: int, prompt_length: int) -> int:
    """CTranslate2's Whisper generation cap (read from its decoding code, checked on the model)."""
    return min(max_length // 2, max_length - prompt_length)


def test_max_length_gives_exactly_the_intended_cap_with_or_without_a_prompt():
    for prompt_length in (2, 3, 30, 120):
        for max_new in (10, 34, 130):
            assert generation_cap(max_length_for(prompt_length, max_new), prompt_length) == max_new


def test_max_length_never_exceeds_the_model_context():
    assert max_length_for(300, 200) == 448


def test_loop_guard_sees_a_short_gram_three_times_or_a_long_one_twice():
    assert repeats_at_end([5, 1, 2, 1, 2, 1, 2])
    assert not repeats_at_end([5, 1, 2, 1, 2])
    long = list(range(10, 17))
    assert repeats_at_end([1] + long + long)
    assert not repeats_at_end([1, 2, 3, 4, 5, 6, 7, 8])


def test_compression_ratio_is_high_for_repeated_text():
    assert compression_ratio("words " * 30) > 2.4
    assert compression_ratio("I didn't know you were there, neither did I.") < 2.4
