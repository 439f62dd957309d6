"""The firmware boot test's parsers and the SBOM's Python lock, on real tool output."""
from __future__ import annotations

import importlib.util
import ssl
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "firmware" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_fingerprint_matches_openssl_and_the_provisioning_line_parses(tmp_path):
    boot_test = _load("boot_test")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=appliance", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=tmp_path, check=True, capture_output=True)
    printed = subprocess.run(["openssl", "x509", "-in", "cert.pem", "-noout", "-fingerprint", "-sha256"],
                             cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip().split("=")[1]
    der = ssl.PEM_cert_to_DER_cert((tmp_path / "cert.pem").read_text())
    assert boot_test.fingerprint(der) == printed
    # The lines /usr/libexec/appliance-provision prints: first boot, then the login banner.
    console = (f"[   22.1] regulatory\r\nappliance: TLS certificate SHA-256 fingerprint {printed} "
               f"(generated, token generated)\r\nappliance login: \r\n"
               f"appliance: TLS certificate SHA-256 fingerprint {printed}\r\n")
    assert boot_test.console_fingerprints(console) == [(printed, True), (printed, False)]


def test_debugfs_stat_reads_mode_and_owner():
    boot_test = _load("boot_test")
    # `debugfs -R 'stat /lib/appliance/tokens'` on a provisioned state partition.
    text = ("Inode: 800   Type: regular    Mode:  0600   Flags: 0x80000\n"
            "Generation: 3174036955    Version: 0x00000000:00000003\n"
            "User:   997   Group:   997   Project:     0   Size: 65\n")
    assert boot_test.debugfs_stat(text) == (0o600, 997, 997)


def test_python_lock_has_a_hash_per_distribution_and_comments_the_local_wheel():
    sbom = _load("sbom")
    report = {"pip_version": "23.0.1", "install": [
        {"download_info": {"url": "https://files.pythonhosted.org/packages/x/tqdm-4.70.1-py3-none-any.whl",
                           "archive_info": {"hash": "sha256=ab12"}},
         "metadata": {"name": "tqdm", "version": "4.70.1"}},
        {"download_info": {"url": "file:///tmp/appliance-venv/appliance-0.1.0-py3-none-any.whl",
                           "archive_info": {"hashes": {"sha256": "cd34"}}},
         "metadata": {"name": "appliance", "version": "0.1.0"}},
    ]}
    assert sbom.lock_lines(report) == [
        "# appliance==0.1.0 --hash=sha256:cd34  (this tree's wheel, appliance-0.1.0-py3-none-any.whl)",
        "tqdm==4.70.1 --hash=sha256:ab12",
    ]
