"""Whole-file transcription for a face (the OpenAI-compatible endpoint): decode, recognise,
label speakers with the offline diarizer. The same steps as `appliance transcribe --diarize`.

Live rooms come first. A file is decoded by a recognizer of its own (the files' `Recognizers`,
built with `AppConfig.transcription_asr()`: its own CTranslate2 model, one thread by default),
loaded on the file executor's one thread, whose nice value the executor's initializer raised
(`appliance.inference.priority`): CTranslate2's worker threads, created by that thread, inherit
it, and so does the offline diarizer's ONNX work, which runs on the calling thread. The kernel
then hands the cores to live decodes first, inside a model call as well as between calls.
Sharing the live rooms' model instead queues a live decode behind a whole 30 s file window
(several seconds on 2 cores: the README's measurements)."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from appliance.audio.decode import load_audio
from appliance.build import Recognizers
from appliance.config import SAMPLE_RATE, DiarizationConfig
from appliance.diarization.models import DiarizationModels
from appliance.diarization.offline import OfflineDiarizer
from appliance.diarization.words import attach_speakers
from appliance.subtitles.types import Word


class ModelRefused(ValueError):
    """The request's model cannot do what it asks (the message says what to send instead)."""


@dataclass(frozen=True)
class Transcript:
    words: list[Word]
    language: str
    duration: float  # seconds of audio
    diarized: bool  # speakers were labelled


@dataclass(frozen=True)
class FileTranscriber:
    """`recognizers` are the files' own (never the live rooms'); `executor` is the daemon's for
    files alone: one thread, at lower priority, one file at a time. Every model of `recognizers`
    is loaded on that thread (`run` does all its work there), so its threads inherit the priority."""

    recognizers: Recognizers
    diarization: DiarizationModels | None
    diarization_config: DiarizationConfig
    executor: Executor

    def model_for(self, requested: str | None, language: str | None) -> str:
        """The model a request names if it is one of the box's speech models (OpenAI clients send
        their own names, such as whisper-1: those get [asr]'s); ModelRefused if that model cannot
        do `language`. Loads the model: call it on the executor's thread."""
        manifest = self.recognizers.manifest
        model = requested if requested in manifest and manifest[requested].role == "asr" else self.recognizers.config.model
        problem = self.recognizers.get(model).cannot(language, None)
        if problem:
            raise ModelRefused(f"model {model} {problem}: send model=whisper-base")
        return model

    async def run(self, path: Path, requested_model: str | None, language: str | None, diarize: bool) -> Transcript:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.transcribe, path,
                                                                requested_model, language, diarize)

    def transcribe(self, path: Path, requested_model: str | None, language: str | None, diarize: bool) -> Transcript:
        """ModelRefused for a model that cannot do `language`, AudioInputError for a file that is
        not audio; `diarize` only when the diarization models are loaded."""
        model = self.model_for(requested_model, language)
        samples = load_audio(path)
        words, detected = self.recognizers.get(model).transcribe_file(samples, language=language)
        diarize = diarize and self.diarization is not None
        if diarize:
            words = attach_speakers(words, OfflineDiarizer(self.diarization, self.diarization_config)(samples))
        return Transcript(words, detected, len(samples) / SAMPLE_RATE, diarize)
