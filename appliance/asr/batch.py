"""The decode scheduler: the rooms that are due decoded together, one CTranslate2 call for all.

On CPU, Whisper's encoder costs about the same per item batched or not (it is compute
bound), but generation is a few small matrix products per token and beam: batching N rooms'
beams into one call costs far less than N calls (bench/test_batch_bench.py measures it).

The stages are WhisperRecognizer's own (features, encode, tokenizer, generate with its loop
guard, align): alone in its call, an item is decoded exactly as `WhisperRecognizer.transcribe`
decodes it. Items batch together when their model calls can be one call:
- the same encoder window: in a shared call the window is `asr.min_window` or the buffer
  rounded up to a WINDOW_GRID multiple, so long buffers of different lengths still share a
  call (a little more padding than WhisperRecognizer's exact window: measured harmless);
- previous-text prompts of the same token length (CTranslate2 needs the start of transcript at
  the same position in every item). Every prompt is the last `asr.prompt_tokens` tokens of its
  room's text (WhisperRecognizer's own prompt), so rooms past their first minute agree. Cutting
  prompts to buckets (0, 1, 2, 4, ... 32 tokens) batched as much but cost 0.03 WER: short
  buckets throw the context away; one length of 64 tokens keeps it (the README's study);
- the same beam size, language and task (a multilingual room whose language is to be detected
  is decoded alone: its start sequence is known only after its own encoding).
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
from faster_whisper.audio import pad_or_trim

from appliance.asr.gather import BatchRun, Gatherer
from appliance.asr.overload import OverloadConfig, OverloadPolicy, RoomLoad
from appliance.asr.recognizer import MAX_WINDOW, WhisperRecognizer, fixed_language
from appliance.config import SAMPLE_RATE, AsrConfig
from appliance.subtitles.types import Word

WINDOW_GRID = 2.5  # seconds: encoder windows beyond the floor are rounded up to a multiple of this


@dataclass(frozen=True)
class Request:
    samples: np.ndarray
    prompt: str | None = None
    beam_size: int | None = None  # None: the configured one
    language: str | None = None  # None: the recognizer's (asr.language); "auto": detected
    task: str | None = None


@dataclass
class _Item:
    request: Request
    features: np.ndarray  # mel, padded to WhisperRecognizer's window
    content_frames: int
    previous: list[int]  # previous-text tokens
    max_new: int
    beam_size: int
    grid_frames: int  # the window rounded up to the grid, for sharing a call

    def shared(self) -> _Item:
        """This item as it goes into a call with others: the grid window."""
        return replace(self, features=pad_or_trim(self.features, self.grid_frames))


def _rows(encoded: ctranslate2.StorageView, rows: list[int]) -> ctranslate2.StorageView:
    """Some items of a batched encoder output (CPU storage, as WhisperRecognizer's `_row`)."""
    if len(rows) == encoded.shape[0]:
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))


class BatchDecoder:
    """Encode, generate and align a list of requests in as few CTranslate2 calls as they allow.

    Stateless between calls (safe to share): every per-room input comes in the request.
    """

    def __init__(self, recognizer: WhisperRecognizer):
        self.recognizer = recognizer
        self.config: AsrConfig = recognizer.config

    def window_frames(self, seconds: float) -> int:
        window = seconds
        if self.config.min_window:
            window = max(self.config.min_window, np.ceil(seconds / WINDOW_GRID) * WINDOW_GRID)
        return min(MAX_WINDOW * 100, int(np.ceil(window * 100)))

    def _detects(self, request: Request) -> bool:
        return self.recognizer.multilingual and (
            fixed_language(request.language) or fixed_language(self.config.language)) is None

    def _prepare(self, request: Request) -> _Item:
        samples = request.samples
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise ValueError(f"recognizer input must be 1-D float32, got {samples.ndim}-D {samples.dtype}")
        if not np.isfinite(samples).all():
            raise ValueError("recognizer input holds NaN or infinite samples")
        rec = self.recognizer
        features, content_frames = rec.features(samples)  # checks the length
        duration = len(samples) / SAMPLE_RATE
        return _Item(request, features, content_frames, rec.previous_tokens(request.prompt), rec.max_new_tokens(duration),
                     request.beam_size or self.config.beam_size,
                     max(features.shape[-1], self.window_frames(duration)))

    def decode(self, requests: Sequence[Request]) -> list[list[Word] | BaseException]:
        out: list[list[Word] | BaseException] = [[] for _ in requests]
        groups: dict[tuple, list[tuple[int, _Item]]] = {}
        for i, request in enumerate(requests):
            try:
                item = self._prepare(request)
            except Exception as exc:  # noqa: BLE001 - this item's error, not the batch's
                out[i] = exc
                continue
            key = (item.grid_frames, len(item.previous), item.beam_size,
                   fixed_language(request.language), request.task, i if self._detects(request) else -1)
            groups.setdefault(key, []).append((i, item))
        for members in groups.values():
            if len(members) > 1:  # alone, an item is decoded exactly as WhisperRecognizer would
                members = [(i, item.shared()) for i, item in members]
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
        """One encode, one generate (and one beam pass for the greedy items that looped), then
        alignment, for items sharing window, prompt length, beam, language and task."""
        rec, config, first = self.recognizer, self.config, items[0].request
        encoded = rec.encode([it.features for it in items])
        tokenizer = rec.tokenizer(encoded, first.language, first.task)
        prompts = [rec.model.get_prompt(tokenizer, it.previous, without_timestamps=True) for it in items]
        caps = [it.max_new for it in items]
        generated = rec.generate(encoded, prompts, items[0].beam_size, caps, tokenizer.eot)
        if items[0].beam_size < config.beam_size:
            looped = [i for i, g in enumerate(generated) if rec.looped(tokenizer, g)]
            if looped:
                rec.fallbacks += len(looped)
                again = rec.generate(_rows(encoded, looped), [prompts[i] for i in looped], config.beam_size,
                                     [caps[i] for i in looped], tokenizer.eot)
                for i, g in zip(looped, again):
                    generated[i] = g
        # Whisper's silence rule, as WhisperRecognizer.transcribe applies it: non-speech only if the
        # model says so and is unsure of the text it made.
        tokens = [[] if not g.tokens or (g.no_speech_prob > config.no_speech_threshold
                                         and g.avg_logprob < config.log_prob_threshold) else g.tokens
                  for g in generated]
        return rec.align(tokenizer, tokens, encoded, [it.content_frames for it in items])


class DecodeScheduler:
    """The shared recognizer of every room: batches the rooms that are due into one decode.

    `room(key)` gives a room its own handle (the Recognizer protocol plus its `RoomLoad`);
    `transcribe` on the scheduler itself serves callers that do not say which room they are
    (they all count as one room for gathering, and the overload policy leaves them alone).
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
    def for_recognizer(cls, recognizer: WhisperRecognizer, **kwargs) -> DecodeScheduler:
        config = recognizer.config
        return cls(BatchDecoder(recognizer), max_batch=config.batch_size, gather=config.batch_gather,
                   concurrency=config.num_workers, **kwargs)

    # What is not a streaming decode goes straight to the recognizer (rare, unbatched).
    @property
    def recognizer(self) -> WhisperRecognizer:
        return self.decoder.recognizer

    @property
    def multilingual(self) -> bool:
        return self.recognizer.multilingual

    @property
    def config(self) -> AsrConfig:
        return self.recognizer.config

    def detect_language(self, samples: np.ndarray) -> list[tuple[str, float]]:
        return self.recognizer.detect_language(samples)

    def cannot(self, language: str | None, task: str | None) -> str | None:
        return self.recognizer.cannot(language, task)

    def transcribe_file(self, samples: np.ndarray, **kwargs):
        return self.recognizer.transcribe_file(samples, **kwargs)

    def room(self, key: Hashable) -> RoomRecognizer:
        self._gatherer.join(key)
        with self._policy_lock:
            return RoomRecognizer(self, key, self.policy.join(key))

    def close_room(self, key: Hashable) -> None:
        self._gatherer.forget(key)
        with self._policy_lock:
            self.policy.leave(key)

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *, beam_size: int | None = None,
                   language: str | None = None, task: str | None = None, room: Hashable = None) -> list[Word]:
        load = self.policy.rooms.get(room)
        if load is not None and load.greedy:
            beam_size = 1  # the loop guard still redoes a looping decode at full beam
        return self._gatherer.call(Request(samples, prompt, beam_size, language, task), room)

    def _observe(self, run: BatchRun) -> None:
        """After each batch (on the leader's thread): lags to the policy, at most one level change."""
        done = run.started + run.seconds
        with self._policy_lock:
            self.batches += 1
            self.batched_items += len(run.keys)
            self.policy.busy(run.started, done)
            for key, wait in zip(run.keys, run.waits):
                if key in self.policy.rooms:  # rooms with a handle; anonymous callers are never degraded
                    self.policy.observe(key, wait + run.seconds, len(run.keys), done)
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

    @property
    def multilingual(self) -> bool:
        return self.scheduler.multilingual

    def transcribe(self, samples: np.ndarray, prompt: str | None = None, *, beam_size: int | None = None,
                   language: str | None = None, task: str | None = None) -> list[Word]:
        return self.scheduler.transcribe(samples, prompt, beam_size=beam_size, language=language, task=task,
                                         room=self.key)

    def detect_language(self, samples: np.ndarray) -> list[tuple[str, float]]:
        return self.scheduler.detect_language(samples)

    def close(self) -> None:
        self.scheduler.close_room(self.key)
