"""Adapters for other software (optional extras). The daemon never imports this package."""
