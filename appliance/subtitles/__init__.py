"""Subtitle domain types, cue layout rules and writers."""
