"""`make install DESTDIR=…`: the real venv, built from a wheel of this tree (about 20 s with
the packages cached). The files it installs besides are checked in tests/unit/test_systemd_unit.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_install_builds_a_venv_for_opt_appliance(tmp_path: Path):
    assert shutil.which("make"), "make is missing"
    done = subprocess.run(["make", "-s", "install", f"DESTDIR={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    venv = tmp_path / "opt/appliance/venv"
    # Its scripts point where the image will hold the venv, not into DESTDIR.
    assert (venv / "bin/appliance").read_text().splitlines()[0] == "#!/opt/appliance/venv/bin/python3"
    assert str(tmp_path) not in (venv / "pyvenv.cfg").read_text()
    # The project is installed, not linked to this checkout, and its command runs.
    where = subprocess.run([venv / "bin/python", "-c", "import appliance; print(appliance.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.stdout.startswith(str(venv / "lib")), where.stdout + where.stderr
    usage = subprocess.run([venv / "bin/python", "-m", "appliance", "serve", "--help"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert usage.returncode == 0 and "--config" in usage.stdout, usage.stderr
    assert (tmp_path / "etc/systemd/system/appliance.service").is_file()
