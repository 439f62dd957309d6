"""The firmware image's config: the documented example with the image's settings, and valid."""
from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from appliance.config import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "systemd" / "appliance.toml").read_text()


def _image_config():
    spec = importlib.util.spec_from_file_location("image_config", REPO / "firmware" / "image_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_settings_are_uncommented_and_everything_else_stays_documented():
    image_config = _image_config()
    text = image_config.configure(EXAMPLE, image_config.IMAGE_SETTINGS)
    data = tomllib.loads(text)
    for section, values in image_config.IMAGE_SETTINGS.items():
        assert data[section] == values
    assert data["sessions"] == [{"id": "room", "source": "microphone"}]
    assert len(text.splitlines()) == len(EXAMPLE.splitlines()) + image_config.HEADER.count("\n")


def test_image_config_loads_once_the_provisioned_files_exist(tmp_path):
    image_config = _image_config()
    path = tmp_path / "appliance.toml"
    path.write_text(image_config.configure(EXAMPLE, image_config.IMAGE_SETTINGS))
    # The state partition's files, provisioned at first boot, are stand-ins here.
    for name in ("cert.pem", "key.pem", "tokens"):
        (tmp_path / name).write_text("x\n")
    moved = [f"server.tls_cert={tmp_path / 'cert.pem'}", f"server.tls_key={tmp_path / 'key.pem'}",
             f"server.token_file={tmp_path / 'tokens'}", f"metrics.tls_cert={tmp_path / 'cert.pem'}",
             f"metrics.tls_key={tmp_path / 'key.pem'}"]
    config = load_config(path, overrides=moved)
    assert config.server.listen == "0.0.0.0:50051" and config.server.tls
    assert config.metrics.listen == "0.0.0.0:9464"
    assert [s.id for s in config.sessions] == ["room"]


def test_a_setting_the_example_does_not_document_is_refused():
    image_config = _image_config()
    with pytest.raises(KeyError, match="server.no_such_key"):
        image_config.configure(EXAMPLE, {"server": {"no_such_key": 1}})
