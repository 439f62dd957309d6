"""Package list only; everything else is in pyproject.toml.

models/ (the manifest and our exported ONNX artefacts) installs as the
`appliance_models` package so an installed appliance finds its models with
importlib.resources, exactly as it finds third-party model packages.
"""
from setuptools import find_packages, setup

setup(
    # appliance.http.static holds the room-screen page (data only, declared so setuptools ships it).
    packages=find_packages(include=["appliance", "appliance.*"])
    + ["appliance.http.static", "appliance_models", "appliance_models.diarization"],
    package_dir={"appliance_models": "models"},
)
