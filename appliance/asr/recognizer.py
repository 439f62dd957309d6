"""The Recognizer protocol and its faster-whisper (CTranslate2) backend.

The model is shared by every session; calls carry all per-stream state
(samples, prompt, beam) as arguments and locals, so one recognizer serves many rooms
from several threads.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, get_ctranslate2_storage, merge_punctuations

from appliance.config import AUTO, SAMPLE_RATE, AsrConfig
from appliance.subtitles.types import Word


MAX_WINDOW = 30  # seconds: Whisper's receptive field
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


class Recognizer(Protocol):
    multilingual: bool  # False: an English-only model (no language, no translation)

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *,
                   beam_size: int | None = None, language: str | None = None, task: str | None = None) -> list[Word]:
        """Words in `samples` (16 kHz mono float32), times relative to its first sample.

        `beam_size` None: the recognizer's configured (final-quality) beam; 1: greedy, for
        tentative decodes whose words may still change. `language` None or "auto": detected
        in this buffer (a multilingual model); `task` "translate": English words for any speech.
        """
        ...

    def detect_language(self, samples: np.ndarray) -> list[tuple[str, float]]:
        """(language code, probability) heard in `samples`, most likely first."""
        ...


def fixed_language(language: str | None) -> str | None:
    """A language to decode in, or None when it is to be detected."""
    return None if language in (None, AUTO) else language


def _words(segments: Iterable[Segment]) -> Iterable[Word]:
    for segment in segments:
        for w in segment.words or ():
            text = w.word.strip()
            if text:
                yield Word(text, round(float(w.start), 3), round(float(w.end), 3), round(float(w.probability), 4))


def max_length_for(prompt_length: int, max_new: int, model_max: int = 448) -> int:
    """CTranslate2's `max_length` that lets `max_new` tokens follow a `prompt_length` prompt.

    CTranslate2 caps generation at min(max_length / 2, max_length - prompt_length) (its
    Whisper decoder reserves half the context for the prompt), so max_length = prompt +
    max_new halves the intended cap when the prompt is short.
    """
    return min(model_max, max(2 * max_new, prompt_length + max_new))


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def repeats_at_end(tokens: list[int], max_ngram: int = 16, long_ngram: int = 6) -> bool:
    """Whether the sequence ends in a decoder loop: an n-gram three times in a row, or a long one twice."""
    for n in range(1, max_ngram + 1):
        repeats = 2 if n >= long_ngram else 3
        if len(tokens) < n * repeats:
            break
        gram = tokens[-n:]
        if all(tokens[-(k + 1) * n : len(tokens) - k * n] == gram for k in range(1, repeats)):
            return True
    return False


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # text tokens, end-of-text removed
    no_speech_prob: float
    avg_logprob: float  # mean log probability per token (Whisper's confidence in the text)
    capped: bool  # generation stopped at the token cap, not at end-of-text


class WhisperRecognizer:
    """faster-whisper on CTranslate2 (int8 on CPU by default).

    `transcribe` serves streaming: one buffer (at most 30 s) per call, encoded in a
    window of `min_window` seconds or the buffer's length if longer, instead of
    Whisper's fixed 30 s. Encoding only the exact buffer makes the decoder loop on
    short inputs; a 10 s floor keeps offline accuracy at a third of the cost
    (measurements in the README). Generated tokens are capped by the audio length,
    and a greedy decode that loops (a repeated n-gram at its end, a compression ratio
    above the threshold, or the cap reached) is decoded again with the full beam.

    A call is four stages, each a small method taking batches where CTranslate2 does,
    so a scheduler can run several rooms' decodes as one: `features` → `encode` →
    `generate` → `align`.
    """

    def __init__(self, model: WhisperModel, config: AsrConfig):
        self.model = model
        self.config = config
        self.multilingual = model.model.is_multilingual
        # Read-only after construction: a per-call language or task gets its own Tokenizer.
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, self.multilingual, task="transcribe",
            language=fixed_language(config.language) or ("en" if self.multilingual else None),
        )
        self.fallbacks = 0  # greedy decodes redone with the full beam (a loop was caught)

    # -- stages ------------------------------------------------------------------------
    def features(self, samples: np.ndarray) -> tuple[np.ndarray, int]:
        """(log-mel features padded to the encoder window, frames holding the audio)."""
        duration = len(samples) / SAMPLE_RATE
        if duration > MAX_WINDOW:
            raise ValueError(f"recognizer buffer is {duration:.1f} s; at most {MAX_WINDOW} s per call")
        features = self.model.feature_extractor(samples)
        content_frames = min(features.shape[-1] - 1, MAX_WINDOW * 100)
        min_window = self.config.min_window
        window = max(min_window, duration) if min_window else duration
        frames = min(MAX_WINDOW * 100, int(np.ceil(window * 100)))
        return pad_or_trim(features, frames), content_frames

    def encode(self, features: list[np.ndarray]) -> ctranslate2.StorageView:
        """Encoder output for a batch of feature windows of one length."""
        return self.model.model.encode(get_ctranslate2_storage(np.stack(features)))

    def tokenizer(self, encoded: ctranslate2.StorageView, language: str | None = None,
                  task: str | None = None) -> Tokenizer:
        """The tokenizer of this call's language and task; the language is detected in `encoded`
        when the model is multilingual and none is fixed (by the call or asr.language)."""
        task = task or self.config.task
        if not self.multilingual:
            return self._tokenizer
        language = fixed_language(language) or fixed_language(self.config.language)
        if language is None:
            language = self.model.model.detect_language(encoded)[0][0][0][2:-2]
        if (language, task) == (self._tokenizer.language_code, "transcribe"):
            return self._tokenizer
        return Tokenizer(self.model.hf_tokenizer, True, task=task, language=language)

    def cannot(self, language: str | None, task: str | None) -> str | None:
        """Why this model cannot decode `language` / do `task`, or None."""
        if not self.multilingual and language not in (None, AUTO, "en"):
            return (f"is an English-only model; it cannot do language {language!r} "
                    "(use a multilingual model such as whisper-base)")
        if not self.multilingual and task == "translate":
            return "is an English-only model; it cannot translate (use a multilingual model such as whisper-base)"
        return None

    def detect_language(self, samples: np.ndarray) -> list[tuple[str, float]]:
        """(language code, probability) for `samples`, most likely first (multilingual models);
        an English-only model says [("en", 1.0)]."""
        if not self.multilingual:
            return [("en", 1.0)]
        features, _ = self.features(samples[-MAX_WINDOW * SAMPLE_RATE:])
        ranked = self.model.model.detect_language(self.encode([features]))[0]
        return [(token[2:-2], float(probability)) for token, probability in ranked]

    def previous_tokens(self, prompt: str | None) -> list[int]:
        """The prompt's last `asr.prompt_tokens` text tokens (any tokenizer of the model gives the
        same ids for text, whatever its language or task)."""
        keep = self.config.prompt_tokens
        if not prompt or not prompt.strip() or not keep:
            return []
        return self._tokenizer.encode(" " + prompt.strip())[-keep:]

    def prompt_tokens(self, tokenizer: Tokenizer, prompt: str | None) -> list[int]:
        return self.model.get_prompt(tokenizer, self.previous_tokens(prompt), without_timestamps=True)

    def max_new_tokens(self, duration: float) -> int:
        return int(self.config.tokens_per_second * duration) + 10

    def max_length(self, prompt_length: int, max_new: int) -> int:
        return max_length_for(prompt_length, max_new, self.model.max_length)

    def generate(self, encoded: ctranslate2.StorageView, prompts: list[list[int]], beam_size: int,
                 max_new: list[int], eot: int) -> list[Generated]:
        """One generation pass over a batch (prompts of equal length, as CTranslate2 requires)."""
        max_length = self.max_length(max(map(len, prompts)), max(max_new))
        results = self.model.model.generate(
            encoded, prompts, beam_size=beam_size, max_length=max_length,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
        )
        out = []
        for result, cap in zip(results, max_new):
            tokens = [t for t in result.sequences_ids[0] if t < eot]
            # CTranslate2's score is the length-normalised log probability; Whisper averages over n + 1.
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if result.scores else 0.0
            out.append(Generated(tokens[:cap], result.no_speech_prob, avg_logprob, capped=len(tokens) >= cap))
        return out

    def looped(self, tokenizer: Tokenizer, generated: Generated) -> bool:
        """The loop guard: signs that a (greedy) decode ran away instead of transcribing."""
        threshold = self.config.compression_ratio_threshold
        if generated.capped or repeats_at_end(generated.tokens):
            return True
        return bool(threshold) and compression_ratio(tokenizer.decode(generated.tokens)) > threshold

    def align(self, tokenizer: Tokenizer, tokens: list[list[int]], encoded: ctranslate2.StorageView,
              content_frames: list[int]) -> list[list[Word]]:
        """Word times for each item's tokens (cross-attention DTW), punctuation merged into words."""
        out = []
        for i, (item, frames) in enumerate(zip(tokens, content_frames)):
            if not item:
                out.append([])
                continue
            one = encoded if len(tokens) == 1 else _row(encoded, i)
            (alignment,) = self.model.find_alignment(tokenizer, [item], one, frames)
            merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
            out.append([
                Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3),
                     round(float(w["probability"]), 4))
                for w in alignment if w["word"].strip()
            ])
        return out

    # -- one call ----------------------------------------------------------------------
    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *,
                   beam_size: int | None = None, language: str | None = None, task: str | None = None) -> list[Word]:
        config = self.config
        beam = beam_size or config.beam_size
        features, content_frames = self.features(samples)
        encoded = self.encode([features])
        tokenizer = self.tokenizer(encoded, language, task)
        prompt_ids = self.prompt_tokens(tokenizer, prompt)
        cap = self.max_new_tokens(len(samples) / SAMPLE_RATE)
        (generated,) = self.generate(encoded, [prompt_ids], beam, [cap], tokenizer.eot)
        if beam < config.beam_size and self.looped(tokenizer, generated):
            self.fallbacks += 1
            (generated,) = self.generate(encoded, [prompt_ids], config.beam_size, [cap], tokenizer.eot)
        # Whisper's own silence rule: non-speech only if it says so AND is unsure of the text it made
        # (no_speech_prob alone drops real speech a multilingual model finds unusual, e.g. synthetic French).
        if not generated.tokens or (generated.no_speech_prob > config.no_speech_threshold
                                    and generated.avg_logprob < config.log_prob_threshold):
            return []
        (words,) = self.align(tokenizer, [generated.tokens], encoded, [content_frames])
        return words

    def transcribe_file(
        self, samples: np.ndarray, progress: Callable[[float], None] | None = None,
        language: str | None = None, task: str | None = None,
    ) -> tuple[list[Word], str]:
        """A whole recording, offline: Whisper's own 30 s windows with VAD; returns (words, language).

        `progress` is called with the audio time reached after each segment.
        """
        segments, info = self.model.transcribe(
            samples,
            language=fixed_language(language) or fixed_language(self.config.language),
            task=task or self.config.task,
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


def _row(encoded: ctranslate2.StorageView, i: int) -> ctranslate2.StorageView:
    """Item `i` of a batched encoder output (CPU storage), for per-item alignment."""
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[i : i + 1]))
