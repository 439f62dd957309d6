"""Whole-file transcription for a face (the OpenAI-compatible endpoint): decode, recognise,
label speakers with the offline diarizer. The same steps as `appliance transcribe --diarize`.

Live rooms come first, so files never run in the daemon's process: they go to one worker process
of their own (`FileTranscriber` starts it on the first file, and again if it died), which loads
its own recognizer and diarization models and runs every thread (its own, numpy's, then
CTranslate2's and ONNX Runtime's, which inherit it) at a nice value `http.transcription_nice`
above the daemon's. The kernel then gives live decodes the cores first, inside a model call as
well as between calls. Measured (README, bench/test_upload_bench.py): at nice +19 a long upload
leaves a live room's final-word latency within a few per cent; the same worker at the rooms'
priority slows it by half. Sharing the live rooms' model queued a live decode behind a whole
file window (seconds on 2 cores); a nice *thread* of the daemon still slowed live words by half,
because it shares the daemon's GIL: preempted while holding it, it stalls every live thread (a
priority inversion a process cannot cause)."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from appliance.audio.decode import AudioInputError, load_audio
from appliance.build import Recognizers
from appliance.config import SAMPLE_RATE, AppConfig
from appliance.diarization.models import DiarizationModels
from appliance.diarization.models import load_models as load_diarization
from appliance.diarization.offline import OfflineDiarizer
from appliance.diarization.words import attach_speakers
from appliance.inference.manifest import load_manifest
from appliance.inference.priority import lower_this_process
from appliance.subtitles.types import Word

log = logging.getLogger(__name__)

IDLE_EXIT = 1.0  # seconds an idle worker is given to exit on its own when the daemon stops


class ModelRefused(ValueError):
    """The request's model cannot do what it asks (the message says what to send instead)."""


class TranscriptionFailed(RuntimeError):
    """The worker could not transcribe a file for a reason that is not the file's (a crash, a model)."""


@dataclass(frozen=True)
class Transcript:
    words: list[Word]
    language: str
    duration: float  # seconds of audio
    diarized: bool  # speakers were labelled


@dataclass(frozen=True)
class FileJob:
    """One file, as it crosses to the worker."""

    path: Path
    model: str | None  # what the request named (None: [asr]'s)
    language: str | None
    diarize: bool


class FileWorker:
    """The worker process's side: the files' own models (loaded on first use, on this process's
    lowered-priority thread) and the steps of one file."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.recognizers = Recognizers(config.transcription_asr(), load_manifest())
        self._diarization: DiarizationModels | None = None

    def model_for(self, requested: str | None, language: str | None) -> str:
        """The model a request names if it is one of the box's speech models (OpenAI clients send
        their own names, such as whisper-1: those get [asr]'s); ModelRefused if that model cannot
        do `language`."""
        manifest = self.recognizers.manifest
        model = requested if requested in manifest and manifest[requested].role == "asr" else self.recognizers.config.model
        problem = self.recognizers.get(model).cannot(language, None)
        if problem:
            raise ModelRefused(f"model {model} {problem}: send model=whisper-base")
        return model

    def diarization(self) -> DiarizationModels:
        if self._diarization is None:
            self._diarization = load_diarization(self.config.diarization, self.config.inference,
                                                 self.recognizers.manifest)
        return self._diarization

    def transcribe(self, job: FileJob) -> Transcript:
        """ModelRefused for a model that cannot do the language, AudioInputError for a file that
        is not audio."""
        model = self.model_for(job.model, job.language)
        samples = load_audio(job.path)
        words, detected = self.recognizers.get(model).transcribe_file(samples, language=job.language)
        diarize = job.diarize and self.config.diarization.live
        if diarize:
            words = attach_speakers(words, OfflineDiarizer(self.diarization(), self.config.diarization)(samples))
        return Transcript(words, detected, len(samples) / SAMPLE_RATE, diarize)


def serve_files(conn: Connection, config: AppConfig, log_level: str) -> None:
    """The worker process: lower the priority of all its threads before any model thread exists
    (those inherit it), then answer jobs one at a time until the daemon closes the pipe."""
    from appliance.logs import configure

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the daemon decides
    configure(log_level)
    nice = lower_this_process(config.http.transcription_nice)
    log.info("transcription worker up (nice %d, %d CTranslate2 thread(s))", nice,
             config.http.transcription_cpu_threads)
    worker = FileWorker(config)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, object] = ("done", worker.transcribe(job))
        except (ModelRefused, AudioInputError) as exc:
            answer = ("refused", exc)
        except Exception as exc:  # reported to the request; the worker goes on
            log.exception("transcription of %s failed", job.path)
            answer = ("failed", f"{type(exc).__name__}: {exc}")
        conn.send(answer)


class FileTranscriber:
    """The daemon's side of the files: `run` hands one file at a time to the worker process and
    waits for its transcript on `executor`'s one thread (which only waits on the pipe: no CPU, no
    GIL held). The process is started with "spawn" (a fresh interpreter: forking a process with
    gRPC and model threads running is unsafe) on the first file; `close` ends it."""

    def __init__(self, config: AppConfig, executor: Executor):
        self.config = config
        self.executor = executor
        self.diarizes = config.diarization.live  # diarized_json can be served
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # `close` (the event loop's thread) against `_ask` (the executor's)

    async def run(self, path: Path, requested_model: str | None, language: str | None, diarize: bool) -> Transcript:
        """ModelRefused, AudioInputError (the request's fault), TranscriptionFailed (the box's)."""
        job = FileJob(path, requested_model, language, diarize)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._ask, job)

    def _ask(self, job: FileJob) -> Transcript:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            conn = self._conn
        try:
            conn.send(job)
            kind, value = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.close()  # it died mid-file (killed, out of memory): the next file starts a new one
            raise TranscriptionFailed("the transcription worker stopped before finishing the file") from None
        if kind == "done":
            return value
        if kind == "refused":
            raise value
        raise TranscriptionFailed(str(value))

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        process = self._context.Process(target=serve_files, args=(child, self.config, level),
                                        name="appliance-transcription", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        log.info("transcription worker started (pid %d)", process.pid)

    def close(self, timeout: float = 5.0) -> None:
        """End the worker; a file it is in the middle of is abandoned with its request (its
        reader sees the pipe end and fails it)."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if conn is not None:
            conn.close()  # an idle worker sees the pipe end and exits cleanly
        if process is not None:
            process.join(IDLE_EXIT)
            if process.is_alive():  # mid-file
                process.terminate()
                process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
