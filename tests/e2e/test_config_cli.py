"""The command line refuses a bad configuration in one line naming the key (exit 2, no
traceback, nothing bound), and `appliance doctor` reports what a technician checks first."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import free_port


def appliance(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


BAD = {
    "unknown key": ('[server]\nlisten = "127.0.0.1:{port}"\nlisen_backlog = 5\n', "server.lisen_backlog"),
    "wrong type": ('[server]\nlisten = "127.0.0.1:{port}"\n[streaming]\nstep = "fast"\n', "streaming.step"),
    "negative step": ('[server]\nlisten = "127.0.0.1:{port}"\n[streaming]\nstep = -1\n', "streaming.step"),
    "missing cert": ('[server]\nlisten = "127.0.0.1:{port}"\ntls_cert = "/nonexistent/cert.pem"\n'
                     'tls_key = "/nonexistent/key.pem"\n', "server.tls_cert"),
    "remote without TLS": ('[server]\nlisten = "0.0.0.0:{port}"\n', "server.listen"),
    # The same rule for /metrics.
    "remote metrics without TLS": ('[server]\nlisten = "127.0.0.1:{port}"\n[metrics]\nlisten = "0.0.0.0:{port}"\n',
                                   "metrics.listen"),
    "pushed-room id rule for rooms": ('[server]\nlisten = "127.0.0.1:{port}"\n[[sessions]]\nid = "../etc"\n'
                                      'source = "microphone"\n', "sessions.id"),
    "http remote without TLS": ('[server]\nlisten = "127.0.0.1:{port}"\n[http]\nlisten = "0.0.0.0:{port}"\n',
                                "http.listen"),
    "http bad listen": ('[server]\nlisten = "127.0.0.1:{port}"\n[http]\nlisten = "8080"\n', "http.listen"),
}


@pytest.mark.parametrize("case", BAD)
def test_serve_refuses_a_bad_config_in_one_line(case, tmp_path):
    text, key = BAD[case]
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "bad.toml"
    metrics = "" if "[metrics]" in text else f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    config.write_text(metrics + text.format(port=port))
    done = appliance("serve", "--config", str(config), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and key in lines[0] and lines[0].startswith("appliance: error:"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert bindable(port) and bindable(metrics_port)  # it bound nothing (and left nothing bound)


def test_doctor_prints_config_devices_models_accelerators_and_ok(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token\n")
    done = appliance("doctor", "--set", f"server.token_file={tokens}", "--set", "streaming.step=0.25", cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[streaming]\nstep = 0.25\n" in out  # the effective config, overrides applied
    assert f'token_file = "{tokens}"' in out and "s3cret-token" not in out  # secrets only as paths
    assert "# input devices" in out
    assert "whisper-tiny.en" in out and "silero-vad" in out and "verified" in out and "FAILED" not in out
    assert "onnxruntime providers: " in out and "CPUExecutionProvider" in out
    assert "ctranslate2 CUDA devices: " in out
    assert out.rstrip().endswith("doctor: ok")


def test_doctor_warns_that_a_room_waits_for_its_absent_microphone(tmp_path):
    """The daemon serves without it (the room waits, UNAVAILABLE): a warning, not a fault."""
    config = tmp_path / "appliance.toml"
    config.write_text('[capture]\ndevice = "no-such-mic"\n\n[[sessions]]\nid = "room"\nsource = "microphone"\n')
    missing_mic = appliance("doctor", "--config", str(config), cwd=tmp_path)
    assert missing_mic.returncode == 0, missing_mic.stdout
    assert "microphone: WARNING: room room" in missing_mic.stdout and "no-such-mic" in missing_mic.stdout
    assert "stays UNAVAILABLE until it is plugged in" in missing_mic.stdout
    assert missing_mic.stdout.rstrip().endswith("doctor: ok, 1 warning(s)")


def test_doctor_counts_problems_and_fails(tmp_path):
    bad = appliance("doctor", "--set", "streaming.step=-1", cwd=tmp_path)
    assert bad.returncode == 1
    assert "config: PROBLEM: streaming.step" in bad.stdout
    assert "# models" in bad.stdout  # the other checks still ran
    assert bad.stdout.rstrip().endswith("doctor: 1 problem(s)")


@pytest.mark.parametrize("flag, logged", [(None, False), ("INFO", True)])
def test_serve_log_level_comes_from_config_unless_given_on_the_command_line(flag, logged, tmp_path):
    from tests.e2e.daemon import DaemonProcess

    config = '[server]\nlisten = "{address}"\ngrace_seconds = 1.0\n[metrics]\nenabled = false\n[log]\nlevel = "WARNING"\n'
    daemon = DaemonProcess(config, tmp_path, log_level=flag).start()
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert ("level=info logger=appliance.daemon msg=\"listening on" in log) == logged, log


def test_serve_starts_with_its_microphone_absent_and_the_room_waits_for_it(tmp_path):
    """A USB microphone is often plugged in after the box boots: the daemon serves, the room is
    UNAVAILABLE saying which device it waits for, and the log says so once at start."""
    import grpc

    from appliance._generated.appliance.v1 import appliance_pb2 as pb
    from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
    from tests.e2e.daemon import DaemonProcess

    config = ('[server]\nlisten = "{address}"\ngrace_seconds = 1.0\n[capture]\ndevice = "no-such-mic"\n'
              '[[sessions]]\nid = "room"\nsource = "microphone"\n')
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            sessions = pb_grpc.SessionsStub(channel)
            deadline = time.monotonic() + 20
            while (room := sessions.Get(pb.GetSessionRequest(session_id="room"))).state != pb.UNAVAILABLE:
                assert time.monotonic() < deadline, room
                time.sleep(0.2)
        assert "no-such-mic" in room.message, room
        assert asyncio.run(daemon.health("session/room")) == "NOT_SERVING"
        assert asyncio.run(daemon.health("")) == "SERVING"
    finally:
        assert daemon.stop() == 0
    assert "no-such-mic" in daemon.log.read_text() and "stays down until it appears" in daemon.log.read_text()


TRANSCRIBE_BAD = {
    "bad value": ("[asr]\nbeam_size = 0\n", "asr.beam_size"),
    "unknown key": ("[diarization]\nmax_speaker = 2\n", "diarization.max_speaker"),
}


@pytest.mark.parametrize("case", TRANSCRIBE_BAD)
@pytest.mark.parametrize("command", ["transcribe", "replay"])
def test_file_commands_refuse_a_bad_config_naming_the_key(command, case, tmp_path, sample_dir):
    text, key = TRANSCRIBE_BAD[case]
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = appliance(command, str(sample_dir / "sample.wav"), "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and key in done.stderr


def test_transcribe_and_replay_apply_the_config_serve_uses(tmp_path, sample_dir):
    """The operator's diarization and streaming settings apply to files too."""
    import json

    config = tmp_path / "appliance.toml"
    config.write_text("[diarization]\ncluster_threshold = 1.9\n\n[streaming]\nstep = 2.0\n")  # one cluster
    sample = str(sample_dir / "sample.wav")
    cues = json.loads(appliance("transcribe", sample, "--diarize", "--format", "json", cwd=tmp_path).stdout)
    one = json.loads(appliance("transcribe", sample, "--diarize", "--format", "json", "--config", str(config),
                               cwd=tmp_path).stdout)
    speakers = lambda doc: {w.get("speaker") for s in doc["segments"] for w in s.get("words", [])}  # noqa: E731
    assert len(speakers(cues)) == 2 and len(speakers(one)) == 1

    def updates(*extra: str) -> int:
        out = appliance("replay", "--fast", sample, *extra, cwd=tmp_path, timeout=300).stdout
        return int(next(line.split()[-1] for line in out.splitlines() if line.split()[:1] == ["updates"]))

    assert updates("--config", str(config)) < updates() / 2  # a 2 s step decodes far less often
