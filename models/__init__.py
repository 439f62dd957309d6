"""Exported model artefacts and their manifest (installed as the `appliance_models` package)."""
