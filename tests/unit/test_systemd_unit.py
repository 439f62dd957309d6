"""The systemd packaging: the unit passes `systemd-analyze security`, and the example
config matches the code."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import typing
from pathlib import Path

import pytest

from appliance.config import AppConfig, ServerConfig, load_config

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "appliance.service"
EXAMPLE = SYSTEMD / "appliance.toml"
MAX_EXPOSURE = 1.5


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(command[0])
    # Fail, never skip: a missing tool would silently pass an unverified unit.
    assert exe, f"{command[0]} is missing: `make system-deps` installs it (Debian package systemd)"
    return subprocess.run([exe, *command[1:]], capture_output=True, text=True, timeout=120, cwd=REPO)


def _unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


# --- the unit ---

def test_security_exposure_at_most_1_5():
    done = _run("systemd-analyze", "security", "--offline=true", "--threshold=15", str(UNIT))
    score = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d)", done.stdout)
    assert score, done.stdout + done.stderr
    assert done.returncode == 0 and float(score[1]) <= MAX_EXPOSURE, done.stdout


def test_notify_watchdog_and_stop_timeout():
    settings = _unit_settings(UNIT.read_text())
    assert (settings["Type"], settings["NotifyAccess"]) == ("notify", "main")
    assert settings["WatchdogSec"] == "30s"
    assert settings["ExecStart"] == "/opt/appliance/venv/bin/appliance serve --config /etc/appliance/appliance.toml"
    # SIGTERM drains the sessions, then the server, each for up to grace_seconds.
    stop = int(settings["TimeoutStopSec"].removesuffix("s"))
    assert stop > 2 * ServerConfig().grace_seconds + 10


# --- the example config ---

def test_example_config_loads_as_the_defaults_with_one_microphone_room():
    config = load_config(EXAMPLE)
    assert [(s.id, s.source) for s in config.sessions] == [("room", "microphone")]
    assert config == AppConfig(sessions=config.sessions)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(AppConfig)
    sections = {f.name: hints[f.name] for f in dataclasses.fields(AppConfig) if f.name != "sessions"}
    return {**sections, "sessions": typing.get_args(hints["sessions"])[0]}


def _block(text: str, section: str) -> str:
    header = f"[[{section}]]" if section == "sessions" else f"[{section}]"
    lines = text.splitlines()
    assert header in lines, f"no {header} in {EXAMPLE.name}"
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("section", list(_sections()))
def test_example_lists_every_option_with_its_default(section: str):
    block = _block(EXAMPLE.read_text(), section)
    for field in dataclasses.fields(_sections()[section]):
        line = re.search(rf"^(#?) ?{field.name} = (.+)$", block, re.MULTILINE)
        assert line, f"{section}.{field.name} is missing from {EXAMPLE.name}"
        commented, value = line[1], line[2]
        # A commented-out option shows its default; "unset" (None) ones show an example instead.
        if commented and section != "sessions" and field.default is not None:
            shown = getattr(getattr(load_config(overrides=[f"{section}.{field.name}={value}"]), section), field.name)
            assert shown == field.default, f"{section}.{field.name}: example shows {value}, default is {field.default!r}"
