import pytest

from appliance.config import AppConfig, ConfigError, VadConfig


def test_defaults_and_derived_negative_threshold():
    config = AppConfig().vad
    assert config == VadConfig()
    assert config.resolved_neg_threshold == pytest.approx(0.35)
    assert VadConfig(threshold=0.1).resolved_neg_threshold == pytest.approx(0.01)
    assert VadConfig(threshold=0.6, neg_threshold=0.2).resolved_neg_threshold == 0.2


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"threshold": 0.0}, "vad.threshold"),
        ({"threshold": 1.0}, "vad.threshold"),
        ({"neg_threshold": 0.6}, "vad.neg_threshold"),
        ({"neg_threshold": 0.0}, "vad.neg_threshold"),
        ({"min_speech_s": -0.1}, "vad.min_speech_s"),
        ({"min_silence_s": -1.0}, "vad.min_silence_s"),
        ({"speech_pad_s": -0.01}, "vad.speech_pad_s"),
    ],
)
def test_impossible_values_are_refused_by_name(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        VadConfig(**kwargs)
