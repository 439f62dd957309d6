"""`appliance demo` (what `make demo` runs): the real daemon, a replayed room, live captions, clean exit."""
import subprocess
import sys
import wave

import numpy as np

from appliance.audio.decode import load_audio


def test_demo_replays_prints_captions_and_exits_cleanly(sample_dir, tmp_path):
    clip = tmp_path / "clip.wav"
    samples = load_audio(sample_dir / "sample.wav")[6 * 16000 : 18 * 16000]
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((samples * 32767).astype(np.int16).tobytes())
    done = subprocess.run([sys.executable, "-m", "appliance", "demo", "--replay", "--file", str(clip)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "replaying" in done.stderr and "daemon stopped (exit status 0)" in done.stderr
    assert "[session room: ended" in done.stderr
    finals = [line for line in done.stdout.splitlines() if line and not line.startswith("…")]
    assert any("New Jersey" in line for line in finals), done.stdout
