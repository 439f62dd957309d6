"""Fault injection for tests of the daemon's own supervision (config `debug`); never set in production."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from appliance.asr.recognizer import Recognizer
from appliance.subtitles.types import Word

log = logging.getLogger(__name__)


class StallingRecognizer:
    """A recognizer whose decodes hang from `after` (monotonic time) until `release` is set."""

    def __init__(self, inner: Recognizer, after: float, release: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        self.inner = inner
        self.after = after
        self.release = release
        self.clock = clock

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, **options) -> list[Word]:
        if self.clock() >= self.after and not self.release.is_set():
            log.warning("debug: stalling the pipeline as configured")
            self.release.wait()
        return self.inner.transcribe(samples, prompt, **options)

    @property
    def multilingual(self) -> bool:
        return self.inner.multilingual

    def detect_language(self, samples: np.ndarray) -> list[tuple[str, float]]:
        return self.inner.detect_language(samples)
