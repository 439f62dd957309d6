"""A room's detected language: decided after enough speech, rechecked rarely, switched only on evidence."""
from appliance.asr.language import LanguagePolicy


def test_nothing_is_decided_before_enough_speech_then_the_best_guess_is_taken():
    policy = LanguagePolicy(min_speech=3.0, recheck_every=30.0)
    assert not policy.due(2.9) and policy.language is None
    assert policy.due(3.0)
    assert policy.observe([("fr", 0.55), ("en", 0.3)], 3.0) == "fr"
    assert not policy.due(20.0) and policy.due(33.0)  # rechecked only after 30 s more speech


def test_one_confident_contrary_check_does_not_flip_the_room():
    policy = LanguagePolicy(switch_after=2, confidence=0.6)
    policy.observe([("fr", 0.9)], 3.0)
    assert policy.observe([("en", 0.95)], 33.0) == "fr"  # one check: not enough
    assert policy.observe([("fr", 0.8)], 63.0) == "fr"  # and the count starts over
    assert policy.observe([("en", 0.95)], 93.0) == "fr"
    assert policy.changes == 0


def test_unconfident_challengers_never_count():
    policy = LanguagePolicy(switch_after=2, confidence=0.6)
    policy.observe([("fr", 0.9)], 3.0)
    for t in (33.0, 63.0, 93.0):
        assert policy.observe([("es", 0.5), ("fr", 0.4)], t) == "fr"


def test_a_language_that_wins_enough_checks_in_a_row_takes_over_once():
    policy = LanguagePolicy(switch_after=2, confidence=0.6)
    policy.observe([("en", 0.9)], 3.0)
    policy.observe([("fr", 0.8)], 33.0)
    assert policy.observe([("fr", 0.85)], 63.0) == "fr" and policy.changes == 1


def test_an_empty_detection_keeps_what_was_decided():
    policy = LanguagePolicy()
    policy.observe([("de", 0.7)], 3.0)
    assert policy.observe([], 33.0) == "de"
