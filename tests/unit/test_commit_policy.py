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


def test_time_guard_commits_a_sure_word_with_enough_audio_after_it_from_one_hypothesis():
    policy = CommitPolicy(agreement=2, guard=0.5, min_probability=0.85)
    decision = policy.update([Word("sure", 0.0, 0.4, 0.95), Word("unsure", 0.5, 0.8, 0.5),
                              Word("late", 0.9, 1.2, 0.99)], buffer_end=1.5)
    # "sure" ends 1.1 s before the end at p 0.95; "unsure" blocks what follows (final words are a prefix).
    assert texts(decision.final) == ["sure"] and texts(decision.partial) == ["unsure", "late"]


def test_time_guard_never_trusts_a_word_squeezed_into_no_time():
    policy = CommitPolicy(agreement=2, guard=0.5, min_probability=0.5)
    assert policy.update([Word("ghost", 0.4, 0.4, 0.99)], buffer_end=2.0).final == []


def test_deadline_commits_whatever_the_probability():
    policy = CommitPolicy(agreement=2, guard=0.5, min_probability=0.9, deadline=1.5)
    decision = policy.update([Word("mumble", 0.0, 0.3, 0.2), Word("recent", 0.4, 0.7, 0.2)], buffer_end=1.9)
    assert texts(decision.final) == ["mumble"]


def test_context_holds_back_agreed_words_at_the_buffer_end():
    policy = CommitPolicy(agreement=2, context=0.5)
    policy.update(hyp(("a", 0.0), ("b", 0.5)), buffer_end=1.0)
    decision = policy.update(hyp(("a", 0.0), ("b", 0.5)), buffer_end=1.0)
    assert texts(decision.final) == ["a"]  # b ends at 0.8, within 0.5 s of the end


def test_a_word_said_again_after_its_final_copy_is_new_not_a_drifted_repeat():
    # "Hello? Oh hello," — the second hello starts after the first ended (+ drift): it is new.
    policy = CommitPolicy(agreement=1)
    policy.update([Word("Hello?", 8.4, 8.66)], buffer_end=9.5, buffer_start=7.58)
    decision = policy.update([Word("Hello?", 8.42, 8.66), Word("hello,", 8.94, 9.2), Word("I", 9.2, 9.3)],
                             buffer_end=10.0, buffer_start=7.58)
    assert texts(decision.final) == ["hello,", "I"]


def test_a_drifted_re_decode_of_final_words_is_dropped_anywhere_in_the_buffer():
    policy = CommitPolicy(agreement=1)
    policy.update(hyp(("we're", 10.0), ("just", 10.4), ("saying", 10.8), ("words.", 11.2)), buffer_start=10.0)
    # The same phrase decoded again with later times (the buffer still holds it), then new words.
    decision = policy.update(hyp(("we're", 10.2), ("just", 10.6), ("saying", 11.0), ("words.", 11.45),
                                 ("more", 12.0)), buffer_start=10.0)
    assert texts(decision.final) == ["more"]


def test_a_prompt_echo_after_a_pause_is_dropped():
    policy = CommitPolicy(agreement=1)
    policy.flush(hyp(("some", 1.0), ("more", 1.4), ("words", 1.8)))
    # Next region, 3 s later: the decoder repeats the prompt before the new speech.
    decision = policy.update(hyp(("some", 5.0), ("more", 5.3), ("words", 5.6), ("thanks", 6.0)), buffer_start=4.8)
    assert texts(decision.final) == ["thanks"]


def test_same_text_at_overlapping_times_is_the_same_word():
    from appliance.asr.policy import same_word

    assert same_word(Word("Words.", 1.0, 1.4), Word("words", 1.1, 1.5))
    assert not same_word(Word("words", 1.0, 1.4), Word("words", 1.4, 1.8))  # said twice, touching
    assert not same_word(Word("words", 1.0, 1.4), Word("word", 1.0, 1.4))


def test_final_words_are_bounded_in_memory_and_counted():
    policy = CommitPolicy(agreement=1, keep_seconds=10.0)
    for i in range(200):
        policy.update([Word(f"w{i}", float(i), i + 0.5)])
    assert policy.final_count == 200
    assert len(policy.final) <= 12 and policy.final[-1].text == "w199"
    assert policy.prompt(before=1000.0).endswith("w198 w199")


def test_pause_trim_cuts_in_the_middle_of_a_pause_after_a_final_word():
    policy = CommitPolicy(agreement=1)
    policy.update([Word("one", 0.0, 0.4), Word("two", 0.45, 0.8), Word("three", 1.2, 1.5)])
    # "two" is followed by 0.4 s of silence: cut at 0.8 + min(0.4, 0.3) / 2 = 0.95.
    assert policy.trim_point(0.0, pause=0.15) == 0.95
    # The partial tail counts as what follows the last final word.
    assert policy.trim_point(0.0, pause=0.15, following=[Word("four", 1.9, 2.2)]) == 1.65
    assert policy.trim_point(1.6, pause=0.15) is None


def test_a_start_stretched_over_final_audio_is_clamped_so_finals_stay_in_order():
    policy = CommitPolicy(agreement=1)
    policy.update([Word("Well,", 22.08, 22.44)])
    decision = policy.update([Word("There", 21.99, 22.65), Word("isn't", 22.65, 22.93)])
    assert [(w.text, w.start) for w in decision.final] == [("There", 22.44), ("isn't", 22.65)]


def test_stall_point_restarts_the_buffer_after_the_last_final_word_once_nothing_is_heard_past_it():
    policy = CommitPolicy(agreement=1)
    words = [Word("some", 6.0, 6.2), Word("errors", 6.2, 6.4), Word("but", 6.5, 6.6)]
    policy.update(words)
    # The same text again, its last word drifted a little later, 2 s and more before the buffer end.
    again = [Word("some", 6.0, 6.2), Word("errors", 6.2, 6.4), Word("but...", 6.5, 6.8)]
    assert policy.stall_point(again, buffer_start=5.2, buffer_end=8.9, stall=2.0) == 6.6
    assert policy.stall_point([], buffer_start=5.2, buffer_end=8.9, stall=2.0) == 6.6  # nothing heard at all
    # Not yet 2 s of buffer past what was heard.
    assert policy.stall_point(again, buffer_start=5.2, buffer_end=8.7, stall=2.0) is None
    # A word past the final ones is still being decided: not a stall.
    assert policy.stall_point(again + [Word("who", 7.0, 7.2)], buffer_start=5.2, buffer_end=9.5, stall=2.0) is None
    # No final word inside the buffer: no cut point.
    assert policy.stall_point([], buffer_start=6.7, buffer_end=9.5, stall=2.0) is None
