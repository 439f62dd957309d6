"""The Recognizer protocol and its faster-whisper (CTranslate2) backend.

The model is shared by every session; calls carry all per-stream state
(samples, prompt) as arguments, so one recognizer serves many rooms.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment

from appliance.config import SAMPLE_RATE, AsrConfig
from appliance.subtitles.types import Word


class Recognizer(Protocol):
    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list[Word]:
        """Words in `samples` (16 kHz mono float32), times relative to its first sample."""
        ...


def _words(segments: Iterable[Segment], offset: float = 0.0) -> Iterable[Word]:
    for segment in segments:
        for w in segment.words or ():
            text = w.word.strip()
            if text:
                yield Word(text, round(float(w.start) + offset, 3), round(float(w.end) + offset, 3), round(float(w.probability), 4))


class WhisperRecognizer:
    """faster-whisper on CTranslate2 (int8 on CPU by default)."""

    def __init__(self, model: WhisperModel, config: AsrConfig):
        self.model = model
        self.config = config

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list[Word]:
        segments, _ = self.model.transcribe(
            samples,
            language=self.config.language,
            beam_size=self.config.beam_size,
            initial_prompt=prompt,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=False,
        )
        return list(_words(segments))

    def transcribe_file(
        self, samples: np.ndarray, progress: Callable[[float], None] | None = None
    ) -> tuple[list[Word], str]:
        """A whole recording, offline: Whisper's own 30 s windows with VAD; returns (words, language).

        `progress` is called with the audio time reached after each segment.
        """
        segments, info = self.model.transcribe(
            samples,
            language=self.config.language,
            beam_size=self.config.beam_size,
            word_timestamps=True,
            vad_filter=True,
        )
        words: list[Word] = []
        for segment in segments:
            words.extend(_words([segment]))
            if progress:
                progress(min(segment.end, len(samples) / SAMPLE_RATE))
        return words, info.language
