"""The Recognizer protocol and its faster-whisper (CTranslate2) backend.

The model is shared by every session; calls carry all per-stream state
(samples, prompt) as arguments, so one recognizer serves many rooms.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, get_ctranslate2_storage, merge_punctuations

from appliance.config import SAMPLE_RATE, AsrConfig
from appliance.subtitles.types import Word


MAX_WINDOW = 30  # seconds: Whisper's receptive field
TOKENS_PER_SECOND = 8  # cap on generated tokens per second of audio (speech is ~3-5)
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


class Recognizer(Protocol):
    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list[Word]:
        """Words in `samples` (16 kHz mono float32), times relative to its first sample."""
        ...


def _words(segments: Iterable[Segment]) -> Iterable[Word]:
    for segment in segments:
        for w in segment.words or ():
            text = w.word.strip()
            if text:
                yield Word(text, round(float(w.start), 3), round(float(w.end), 3), round(float(w.probability), 4))


class WhisperRecognizer:
    """faster-whisper on CTranslate2 (int8 on CPU by default).

    `transcribe` serves streaming: one buffer (at most 30 s) per call, encoded in a
    window of `min_window` seconds or the buffer's length if longer, instead of
    Whisper's fixed 30 s. Encoding only the exact buffer makes the decoder loop on
    short inputs; a 10 s floor keeps offline accuracy at a third of the cost
    (measurements in the README). Generated tokens are capped by the audio length,
    which stops the rare runaway repetition.
    """

    def __init__(self, model: WhisperModel, config: AsrConfig):
        self.model = model
        self.config = config
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
            language=config.language or ("en" if model.model.is_multilingual else None),
        )

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list[Word]:
        config, fx = self.config, self.model.feature_extractor
        duration = len(samples) / SAMPLE_RATE
        if duration > MAX_WINDOW:
            raise ValueError(f"recognizer buffer is {duration:.1f} s; at most {MAX_WINDOW} s per call")
        features = fx(samples)
        content_frames = min(features.shape[-1] - 1, MAX_WINDOW * 100)
        window = max(config.min_window, duration) if config.min_window else duration
        frames = min(MAX_WINDOW * 100, int(np.ceil(window * 100)))
        features = pad_or_trim(features, frames)
        encoded = self.model.model.encode(get_ctranslate2_storage(features[None]))

        tokenizer = self._tokenizer
        if self.model.model.is_multilingual and config.language is None:
            language_token = self.model.model.detect_language(encoded)[0][0][0]
            tokenizer.language = tokenizer.tokenizer.token_to_id(language_token)
            tokenizer.language_code = language_token[2:-2]
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        prompt_tokens = self.model.get_prompt(tokenizer, previous, without_timestamps=True)
        max_new = int(TOKENS_PER_SECOND * duration) + 10
        result = self.model.model.generate(
            encoded, [prompt_tokens], beam_size=config.beam_size,
            max_length=min(len(prompt_tokens) + max_new, self.model.max_length),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        if not tokens or result.no_speech_prob > config.no_speech_threshold:
            return []
        (alignment,) = self.model.find_alignment(tokenizer, [tokens], encoded, content_frames)
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        return [
            Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3),
                 round(float(w["probability"]), 4))
            for w in alignment
            if w["word"].strip()
        ]

    def transcribe_file(
        self, samples: np.ndarray, progress: Callable[[float], None] | None = None, language: str | None = None,
    ) -> tuple[list[Word], str]:
        """A whole recording, offline: Whisper's own 30 s windows with VAD; returns (words, language).

        `progress` is called with the audio time reached after each segment; `language` (a
        request's) overrides the configured one.
        """
        segments, info = self.model.transcribe(
            samples,
            language=language or self.config.language,
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
