import pytest

from appliance.config import AppConfig, CaptureConfig, ConfigError


def test_defaults():
    config = AppConfig().capture
    assert config == CaptureConfig()
    assert (config.device, config.channel, config.channels) == (None, None, None)
    assert config.block_seconds == 0.02 and config.queue_seconds == 2.0
    assert (config.reconnect_initial, config.reconnect_max) == (0.5, 10.0)


def test_device_by_name_or_index():
    assert CaptureConfig(device="USB").device == "USB"
    assert CaptureConfig(device=3, channel=1, channels=2).channel == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"device": ""}, "capture.device"),
        ({"device": -1}, "capture.device"),
        ({"device": 1.5}, "capture.device"),
        ({"channel": -1}, "capture.channel"),
        ({"channels": 0}, "capture.channels"),
        ({"channels": 2, "channel": 2}, "capture.channel"),
        ({"block_seconds": 0.0}, "capture.block_seconds"),
        ({"queue_seconds": 0.01}, "capture.queue_seconds"),
        ({"reconnect_initial": 0.0}, "capture.reconnect_initial"),
        ({"reconnect_initial": 5.0, "reconnect_max": 1.0}, "capture.reconnect_max"),
        ({"stall_seconds": 0.01}, "capture.stall_seconds"),
    ],
)
def test_impossible_values_are_refused_by_name(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        CaptureConfig(**kwargs)
