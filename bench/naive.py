"""The naive baseline: the yardstick every "ours vs the baseline" figure is measured against.

The classic re-decode loop on the same engine: Whisper's full 30 s padded window,
LocalAgreement-2, no VAD flush (words settle by agreement only). The step and the beam are
pinned too (0.5 s, 5: today's defaults), so that a change of our defaults moves only ours and
a comparison in one run sees it. One definition for the daemon-level benchmarks
(bench/test_system_bench.py, as config overrides) and the guard (bench/guard.py, as configs).
"""
from __future__ import annotations

from appliance.config import AppConfig, load_config

OVERRIDES: dict[str, object] = {
    "asr.min_window": 30.0,
    "asr.beam_size": 5,
    "streaming.step": 0.5,
    "streaming.agreement": 2,
    "streaming.vad_flush": False,
    "streaming.pause_flush": False,
}


def toml(value: object) -> str:
    """A config value as the TOML text `--set` and APPLIANCE_* variables take."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def config() -> AppConfig:
    """The defaults with the naive baseline's overrides."""
    return load_config(overrides=[f"{key}={toml(value)}" for key, value in OVERRIDES.items()])


def settings(config: AppConfig) -> dict[str, object]:
    """The fields the naive baseline pins, as `config` has them (to record what ran)."""
    return {key: getattr(getattr(config, key.split(".")[0]), key.split(".")[1]) for key in OVERRIDES}
