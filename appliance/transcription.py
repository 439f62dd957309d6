"""Whole-file transcription for a face (the OpenAI-compatible endpoint): decode, recognise with
the daemon's shared recognizer, label speakers with the offline diarizer. The same steps as
`appliance transcribe --diarize`; blocking, so the face runs it in an executor of its own."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from appliance.asr.recognizer import WhisperRecognizer
from appliance.audio.decode import load_audio
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

    recognizer: WhisperRecognizer
    diarization: DiarizationModels | None
    diarization_config: DiarizationConfig
    executor: Executor

    async def run(self, path: Path, language: str | None, diarize: bool) -> Transcript:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.transcribe, path, language,
                                                                diarize)

    def transcribe(self, path: Path, language: str | None, diarize: bool) -> Transcript:
        """AudioInputError for a file that is not audio; `diarize` only when models are loaded."""
        samples = load_audio(path)
        words, detected = self.recognizer.transcribe_file(samples, language=language)
        diarize = diarize and self.diarization is not None
        if diarize:
            words = attach_speakers(words, OfflineDiarizer(self.diarization, self.diarization_config)(samples))
        return Transcript(words, detected, len(samples) / SAMPLE_RATE, diarize)
