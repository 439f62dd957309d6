from appliance.asr.policy import CommitPolicy
from appliance.subtitles.types import Word


def hyp(*items: tuple[str, float]) -> list[Word]:
    """Words from (text, start) pairs, each 0.3 s long."""
    return [Word(text, start, round(start + 0.3, 3), 0.8) for text, start in items]


def texts(words: list[Word]) -> list[str]:
    return [w.text for w in words]


def test_local_agreement_commits_the_common_prefix_only():
    policy = CommitPolicy(agreement=2)
    first = policy.update(hyp(("hello", 0.0), ("there", 0.4)))
    assert first.final == [] and texts(first.partial) == ["hello", "there"]
    second = policy.update(hyp(("hello", 0.0), ("there", 0.4), ("my", 0.8), ("friend", 1.2)))
    assert texts(second.final) == ["hello", "there"]
    assert texts(second.partial) == ["my", "friend"]


def test_revisions_stay_partial_until_agreed():
    policy = CommitPolicy(agreement=2)
    policy.update(hyp(("I", 0.0), ("need", 0.3), ("to", 0.6)))
    revised = policy.update(hyp(("Neither", 0.0), ("did", 0.3), ("I.", 0.6)))
    assert revised.final == [] and texts(revised.partial) == ["Neither", "did", "I."]
    agreed = policy.update(hyp(("Neither", 0.0), ("did", 0.35), ("I.", 0.6)))
    assert texts(agreed.final) == ["Neither", "did", "I."]


def test_agreement_ignores_case_and_punctuation_but_keeps_latest_spelling():
    policy = CommitPolicy(agreement=2)
    policy.update(hyp(("hello", 0.0), ("world", 0.4)))
    decision = policy.update(hyp(("Hello,", 0.0), ("world.", 0.4)))
    assert texts(decision.final) == ["Hello,", "world."]


def test_agreement_of_three():
    policy = CommitPolicy(agreement=3)
    assert policy.update(hyp(("a", 0.0))).final == []
    assert policy.update(hyp(("a", 0.0), ("b", 0.4))).final == []
    assert texts(policy.update(hyp(("a", 0.0), ("b", 0.4))).final) == ["a"]


def test_no_word_is_final_twice_when_the_window_still_holds_it():
    policy = CommitPolicy(agreement=2)
    policy.update(hyp(("one", 0.0), ("two", 0.4)))
    policy.update(hyp(("one", 0.0), ("two", 0.4), ("three", 0.8)))
    # The buffer still starts at 0: the decoder repeats final words, with shifted times.
    later = policy.update(hyp(("one", 0.05), ("two", 0.45), ("three", 0.8), ("four", 1.2)))
    later2 = policy.update(hyp(("one", 0.0), ("two", 0.4), ("three", 0.85), ("four", 1.2)))
    finals = texts(policy.final)
    assert finals == ["one", "two", "three", "four"]
    assert len(finals) == len(set(finals))
    assert texts(later.final) == ["three"] and texts(later2.final) == ["four"]


def test_ngram_overlap_removes_a_repeated_head_with_drifted_times():
    policy = CommitPolicy(agreement=1)
    policy.update(hyp(("good", 0.0), ("morning", 0.4)))
    # "morning" re-decoded as starting after the final end: the n-gram match drops it.
    decision = policy.update([Word("morning", 0.72, 0.9), Word("everyone", 1.0, 1.3)])
    assert texts(decision.final) == ["everyone"]


def test_finals_never_change_once_emitted():
    policy = CommitPolicy(agreement=2)
    policy.update(hyp(("the", 0.0), ("cat", 0.3)))
    policy.update(hyp(("the", 0.0), ("cat", 0.3)))
    frozen = list(policy.final)
    policy.update(hyp(("a", 0.0), ("dog", 0.3), ("sat", 0.7)))
    policy.update(hyp(("a", 0.0), ("dog", 0.3), ("sat", 0.7)))
    assert policy.final[: len(frozen)] == frozen
    assert texts(policy.final) == ["the", "cat", "sat"]


def test_vad_end_flush_finalises_the_tail_and_clears_partial():
    policy = CommitPolicy(agreement=2)
    policy.update(hyp(("see", 0.0), ("you", 0.3)))
    flushed = policy.flush(hyp(("see", 0.0), ("you", 0.3), ("soon.", 0.6)))
    assert texts(flushed.final) == ["see", "you", "soon."] and flushed.partial == []
    # After a flush a fresh region agrees from scratch.
    assert policy.update(hyp(("next", 2.0))).final == []


def test_force_finalises_up_to_a_time_and_keeps_the_rest_partial():
    policy = CommitPolicy(agreement=2)
    decision = policy.force(hyp(("a", 0.0), ("b", 0.5), ("c", 1.0), ("d", 1.5)), until=1.35)
    assert texts(decision.final) == ["a", "b", "c"] and texts(decision.partial) == ["d"]


def test_trim_point_is_the_last_final_sentence_end_inside_the_buffer():
    policy = CommitPolicy(agreement=1)
    policy.update(hyp(("Hi.", 0.0), ("How", 0.5), ("are", 0.9), ("you?", 1.3), ("Fine", 1.8)))
    assert policy.trim_point(buffer_start=0.0) == 1.6
    assert policy.trim_point(buffer_start=1.7) is None


def test_prompt_is_final_text_before_the_buffer_bounded_in_length():
    policy = CommitPolicy(agreement=1)
    policy.update(hyp(("one", 0.0), ("two", 0.4), ("three", 0.8)))
    assert policy.prompt(before=0.75) == "one two"
    assert policy.prompt(before=5.0, max_chars=10) == "two three"


def test_stability_is_mean_probability_of_the_partial():
    policy = CommitPolicy(agreement=2)
    decision = policy.update([Word("a", 0.0, 0.2, 0.5), Word("b", 0.3, 0.5, 1.0)])
    assert decision.stability == 0.75
