"""The systemd packaging: the unit passes `systemd-analyze verify` and `security`, `make
install-files` lays out a root the unit verifies in, and the example config matches the code."""
from __future__ import annotations

import dataclasses
import os
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


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make install-files DESTDIR=…` installs: everything but the venv."""
    root = tmp_path_factory.mktemp("destdir")
    done = _run("make", "-s", "install-files", f"DESTDIR={root}")
    assert done.returncode == 0, done.stderr
    return root


def _unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


# --- the unit ---

def test_security_exposure_at_most_1_5():
    done = _run("systemd-analyze", "security", "--offline=true", "--threshold=15", str(UNIT))
    score = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d)", done.stdout)
    assert score, done.stdout + done.stderr
    assert done.returncode == 0 and float(score[1]) <= MAX_EXPOSURE, done.stdout


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    # ExecStart must exist under --root: a stand-in for the venv's entry point, and the host's
    # own units for sysinit.target and the rest of the default dependencies.
    stub = root / "opt/appliance/venv/bin/appliance"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    host_units = Path("/usr/lib/systemd/system")
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    return _run("systemd-analyze", "verify", f"--root={root}", "appliance.service")


def test_installed_unit_verifies(root: Path):
    done = _verify(root)
    # verify exits 0 on a setting it ignores, with a warning: any output is a failure.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_reports_a_bad_setting(root: Path, tmp_path: Path):
    broken = tmp_path / "root"
    shutil.copytree(root, broken, symlinks=True)
    unit = broken / "etc/systemd/system/appliance.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notfy"))
    assert "notfy" in (_verify(broken).stderr)


def test_notify_watchdog_and_stop_timeout():
    settings = _unit_settings(UNIT.read_text())
    assert (settings["Type"], settings["NotifyAccess"]) == ("notify", "main")
    assert settings["WatchdogSec"] == "30s"
    assert settings["ExecStart"] == "/opt/appliance/venv/bin/appliance serve --config /etc/appliance/appliance.toml"
    # SIGTERM drains the sessions, then the server, each for up to grace_seconds.
    stop = int(settings["TimeoutStopSec"].removesuffix("s"))
    assert stop > 2 * ServerConfig().grace_seconds + 10


# --- make install-files ---

def test_install_files_layout(root: Path):
    mode = {p: (root / p).stat().st_mode & 0o7777 for p in (
        "etc/systemd/system/appliance.service", "etc/sysusers.d/appliance.conf",
        "etc/tmpfiles.d/appliance.conf", "etc/appliance", "etc/appliance/appliance.toml",
        "opt/appliance/share/appliance.toml.example")}
    assert mode == {
        "etc/systemd/system/appliance.service": 0o644, "etc/sysusers.d/appliance.conf": 0o644,
        "etc/tmpfiles.d/appliance.conf": 0o644, "etc/appliance": 0o750, "etc/appliance/appliance.toml": 0o640,
        "opt/appliance/share/appliance.toml.example": 0o644}
    assert (root / "etc/systemd/system/appliance.service").read_text() == UNIT.read_text()
    assert (root / "etc/appliance/appliance.toml").read_text() == EXAMPLE.read_text()


def test_install_files_keeps_the_operators_config(tmp_path: Path):
    config = tmp_path / "etc/appliance/appliance.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[server]\n")
    done = _run("make", "-s", "install-files", f"DESTDIR={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert config.read_text() == "[server]\n"
    assert (tmp_path / "opt/appliance/share/appliance.toml.example").read_text() == EXAMPLE.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles needs root to chown")
def test_sysusers_and_tmpfiles_give_the_config_to_the_service_group(root: Path):
    # No file arguments: they read what the root holds in sysusers.d and tmpfiles.d, ours only.
    assert _run("systemd-sysusers", f"--root={root}").returncode == 0
    done = _run("systemd-tmpfiles", f"--root={root}", "--create")
    assert done.returncode == 0, done.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    group = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert passwd["appliance"][5] == "/var/lib/appliance"
    assert "appliance" in group["audio"][3].split(",")
    gid = int(group["appliance"][2])
    for path in ("etc/appliance", "etc/appliance/appliance.toml"):
        assert ((root / path).stat().st_uid, (root / path).stat().st_gid) == (0, gid)


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
