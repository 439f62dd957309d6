"""Whole-file transcription for a face (the OpenAI-compatible endpoint): decode, recognise with
one of the daemon's shared recognizers, label speakers with the offline diarizer. The same steps as
`appliance transcribe --diarize`; blocking, so the face runs it in an executor of its own."""
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


@dataclass(frozen=True)
class Transcript:
    words: list[Word]
    language: str
    duration: float  # seconds of audio
    diarized: bool  # speakers were labelled


@dataclass(frozen=True)
class FileTranscriber:
    """`executor` is the daemon's for files alone (one thread): one file at a time, and the live
    rooms' decodes keep their own executor; the shared recognizer queues the calls of both, a
    30 s window of the file at a time, so a long file delays a live decode by one window at most."""

    recognizers: Recognizers
    diarization: DiarizationModels | None
    diarization_config: DiarizationConfig
    executor: Executor

    def model_for(self, requested: str | None, language: str | None) -> str:
        """The model a request names if it is one of the box's speech models (OpenAI clients send
        their own names, such as whisper-1: those get [asr]'s); ValueError if that model cannot do
        `language`."""
        manifest = self.recognizers.manifest
        model = requested if requested in manifest and manifest[requested].role == "asr" else self.recognizers.config.model
        problem = self.recognizers.get(model).cannot(language, None)
        if problem:
            raise ValueError(f"model {model} {problem}: send model=whisper-base")
        return model

    async def run(self, path: Path, model: str, language: str | None, diarize: bool) -> Transcript:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.transcribe, path, model,
                                                                language, diarize)

    def transcribe(self, path: Path, model: str, language: str | None, diarize: bool) -> Transcript:
        """AudioInputError for a file that is not audio; `diarize` only when models are loaded."""
        samples = load_audio(path)
        words, detected = self.recognizers.get(model).transcribe_file(samples, language=language)
        diarize = diarize and self.diarization is not None
        if diarize:
            words = attach_speakers(words, OfflineDiarizer(self.diarization, self.diarization_config)(samples))
        return Transcript(words, detected, len(samples) / SAMPLE_RATE, diarize)
