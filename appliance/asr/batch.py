"""The decode scheduler: the rooms that are due decoded together, one CTranslate2 call for all.

On CPU, Whisper's encoder costs about the same per item batched or not (it is compute
bound), but generation is a few small matrix products per token and beam: batching N rooms'
beams into one call costs far less than N calls (bench/test_batch_bench.py measures it).

Items batch together when their model calls can be one call:
- the same encoder window: the window is `asr.min_window` or the buffer rounded up to a
  WINDOW_GRID multiple, so long buffers of different lengths still share a call (a little more
  padding than WhisperRecognizer's exact window, which is harmless: padding is what keeps the
  decoder from looping);
- previous-text prompts of the same token length (CTranslate2 needs the start of transcript at
  the same position in every item): each prompt is cut to the longest PROMPT_BUCKETS length it
  reaches, keeping its last tokens, so rooms past the first few words share a bucket;
- the same beam size.
Generation runs with the largest token cap of the group and each result is cut to the cap it
would have had alone.
A group whose model call fails is retried item by item, so one bad buffer fails only itself.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_ctranslate2_storage, merge_punctuations

from appliance.asr.gather import BatchRun, Gatherer
from appliance.asr.overload import OverloadConfig, OverloadPolicy, RoomLoad
from appliance.asr.recognizer import (
    APPEND_PUNCTUATION,
    MAX_WINDOW,
    PREPEND_PUNCTUATION,
    TOKENS_PER_SECOND,
)
from appliance.config import SAMPLE_RATE, AsrConfig
from appliance.subtitles.types import Word

WINDOW_GRID = 2.5  # seconds: encoder windows beyond the floor are rounded up to a multiple of this
PROMPT_BUCKETS = (0, 1, 2, 4, 8, 16, 32)  # previous-text token lengths a prompt is cut to (its last tokens)


@dataclass(frozen=True)
class Request:
    samples: np.ndarray
    prompt: str | None = None
    beam_size: int | None = None  # None: the configured one


@dataclass
class _Item:
    features: np.ndarray  # mel, padded to the window
    content_frames: int
    prompt: list[int]  # the full generate prompt (previous text, start of transcript, no timestamps)
    max_length: int  # generate's max_length for this item alone, as WhisperRecognizer sets it
    beam_size: int
    previous: list[int]  # the previous-text tokens inside `prompt`

    @property
    def token_cap(self) -> int:
        # What CTranslate2 generates at most for this max_length (its own rule), so a batched
        # item stops where the same item alone would, whatever the group's max_length.
        return min(self.max_length // 2, self.max_length - len(self.prompt))


def _bucket(n: int) -> int:
    return max(b for b in PROMPT_BUCKETS if b <= n)


class BatchDecoder:
    """Encode, generate and align a list of requests in as few CTranslate2 calls as they allow.

    Stateless between calls (safe to share): every per-room input comes in the request.
    """

    def __init__(self, model: WhisperModel, config: AsrConfig):
        self.model = model
        self.config = config
        # A multilingual model without asr.language detects each buffer's language: the items
        # then differ in start sequence and are decoded one by one (set the language to batch them).
        self._detect = model.model.is_multilingual and config.language is None
        self._tokenizers: dict[str | None, Tokenizer] = {}
        self._tokenizer = self._tokenizer_for(config.language or ("en" if model.model.is_multilingual else None))

    def _tokenizer_for(self, language: str | None) -> Tokenizer:
        if language not in self._tokenizers:  # built once per language: tokenizers are not shared mutably
            self._tokenizers[language] = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                                   task="transcribe", language=language)
        return self._tokenizers[language]

    def window_frames(self, seconds: float) -> int:
        window = seconds
        if self.config.min_window:
            window = max(self.config.min_window, np.ceil(seconds / WINDOW_GRID) * WINDOW_GRID)
        return min(MAX_WINDOW * 100, int(np.ceil(window * 100)))

    def _prepare(self, request: Request) -> _Item:
        samples = request.samples
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise ValueError(f"recognizer input must be 1-D float32, got {samples.ndim}-D {samples.dtype}")
        duration = len(samples) / SAMPLE_RATE
        if duration > MAX_WINDOW:
            raise ValueError(f"recognizer buffer is {duration:.1f} s; at most {MAX_WINDOW} s per call")
        if not np.isfinite(samples).all():
            raise ValueError("recognizer input holds NaN or infinite samples")
        features = self.model.feature_extractor(samples)
        content_frames = min(features.shape[-1] - 1, MAX_WINDOW * 100)
        features = pad_or_trim(features, self.window_frames(duration))
        tokenizer = self._tokenizer
        previous = tokenizer.encode(" " + request.prompt.strip()) if request.prompt and request.prompt.strip() else []
        previous = previous[len(previous) - _bucket(len(previous)):]
        prompt = self.model.get_prompt(tokenizer, previous, without_timestamps=True)
        beam = request.beam_size or self.config.beam_size
        max_length = min(len(prompt) + int(TOKENS_PER_SECOND * duration) + 10, self.model.max_length)
        return _Item(features, content_frames, prompt, max_length, beam, previous)

    def decode(self, requests: Sequence[Request]) -> list[list[Word] | BaseException]:
        out: list[list[Word] | BaseException] = [[] for _ in requests]
        groups: dict[tuple[int, int, int, int], list[tuple[int, _Item]]] = {}
        for i, request in enumerate(requests):
            try:
                item = self._prepare(request)
            except Exception as exc:  # noqa: BLE001 - this item's error, not the batch's
                out[i] = exc
                continue
            key = (item.features.shape[-1], len(item.prompt), item.beam_size, i if self._detect else -1)
            groups.setdefault(key, []).append((i, item))
        for members in groups.values():
            try:
                results = self._run_group([item for _, item in members])
            except Exception:  # noqa: BLE001 - find the culprit: each item alone
                results = []
                for _, item in members:
                    try:
                        results.append(self._run_group([item])[0])
                    except Exception as exc:  # noqa: BLE001
                        results.append(exc)
            for (i, _), result in zip(members, results):
                out[i] = result
        return out

    def _run_group(self, items: list[_Item]) -> list[list[Word]]:
        """One encode, one generate, one align for items sharing window, prompt length and beam."""
        model, tokenizer = self.model, self._tokenizer
        encoded = model.model.encode(get_ctranslate2_storage(np.stack([it.features for it in items])))
        if self._detect:  # one item (see decode): its own language, its own start sequence
            language_token = model.model.detect_language(encoded)[0][0][0]
            tokenizer = self._tokenizer_for(language_token[2:-2])
            items = [replace(items[0], prompt=model.get_prompt(tokenizer, items[0].previous, without_timestamps=True))]
        results = model.model.generate(
            encoded, [it.prompt for it in items], beam_size=items[0].beam_size,
            max_length=max(it.max_length for it in items),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
        )
        texts: list[list[int]] = []
        for item, result in zip(items, results):
            tokens = [t for t in result.sequences_ids[0][: item.token_cap] if t < tokenizer.eot]
            keep = bool(tokens) and result.no_speech_prob <= self.config.no_speech_threshold
            texts.append(tokens if keep else [])
        spoken = [i for i, tokens in enumerate(texts) if tokens]
        words: list[list[Word]] = [[] for _ in items]
        if not spoken:
            return words
        if len(spoken) < len(items):  # align only what was heard: a sub-batch of the encoder output
            encoded = ctranslate2.StorageView.from_array(np.asarray(_host(encoded))[spoken])
        alignments = model.find_alignment(tokenizer, [texts[i] for i in spoken], encoded,
                                          [items[i].content_frames for i in spoken])
        for i, alignment in zip(spoken, alignments):
            merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
            words[i] = [
                Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3),
                     round(float(w["probability"]), 4))
                for w in alignment
                if w["word"].strip()
            ]
        return words


def _host(view: ctranslate2.StorageView) -> ctranslate2.StorageView:
    return view if view.device == "cpu" else view.to_device(ctranslate2.Device.cpu)


class DecodeScheduler:
    """The shared recognizer of every room: batches the rooms that are due into one decode.

    `room(key)` gives a room its own handle (the Recognizer protocol plus its `RoomLoad`);
    `transcribe` on the scheduler itself serves callers that do not say which room they are
    (they all count as one room for gathering and the overload policy).
    """

    def __init__(self, decoder: BatchDecoder, *, max_batch: int = 8, gather: float = 0.05, concurrency: int = 1,
                 overload: OverloadConfig | None = None, on_batch: Callable[[BatchRun], None] | None = None):
        self.decoder = decoder
        self.on_batch = on_batch  # metrics: batch size and seconds per model call
        self.policy = OverloadPolicy(overload or OverloadConfig(), concurrency=concurrency)
        self.batches = 0
        self.batched_items = 0
        self._policy_lock = threading.Lock()  # leaders of concurrent batches report at once
        self._gatherer: Gatherer[Request, list[Word]] = Gatherer(
            decoder.decode, max_batch=max_batch, gather=gather, concurrency=concurrency, on_batch=self._observe)

    @classmethod
    def for_model(cls, model: WhisperModel, config: AsrConfig, **kwargs) -> DecodeScheduler:
        return cls(BatchDecoder(model, config), max_batch=config.batch_size, gather=config.batch_gather,
                   concurrency=config.num_workers, **kwargs)

    def room(self, key: Hashable) -> RoomRecognizer:
        self._gatherer.join(key)
        with self._policy_lock:
            return RoomRecognizer(self, key, self.policy.join(key))

    def close_room(self, key: Hashable) -> None:
        self._gatherer.forget(key)
        with self._policy_lock:
            self.policy.leave(key)

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *, beam_size: int | None = None,
                   room: Hashable = None) -> list[Word]:
        load = self.policy.rooms.get(room)
        if load is not None and load.greedy:
            beam_size = 1
        return self._gatherer.call(Request(samples, prompt, beam_size), room)

    def _observe(self, run: BatchRun) -> None:
        """After each batch (on the leader's thread): lags to the policy, at most one level change."""
        done = run.started + run.seconds
        with self._policy_lock:
            self.batches += 1
            self.batched_items += len(run.keys)
            self.policy.busy(run.started, done)
            for key, wait in zip(run.keys, run.waits):
                if key in self.policy.rooms or key is None:
                    self.policy.observe(key, wait + run.seconds, len(run.keys))
            self.policy.decide(done)
        if self.on_batch is not None:
            self.on_batch(run)

    @property
    def mean_batch(self) -> float:
        return self.batched_items / self.batches if self.batches else 0.0


@dataclass
class RoomRecognizer:
    """One room's recognizer: the shared scheduler, with this room's key and load."""

    scheduler: DecodeScheduler
    key: Hashable
    load: RoomLoad  # read by the session for SessionInfo and metrics

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *, beam_size: int | None = None
                   ) -> list[Word]:
        return self.scheduler.transcribe(samples, prompt, beam_size=beam_size, room=self.key)

    def close(self) -> None:
        self.scheduler.close_room(self.key)

