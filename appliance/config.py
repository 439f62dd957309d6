"""Typed configuration: one frozen dataclass per stage.

Every timing and resource contract of the pipeline is a field here, validated
when the dataclass is built, so an impossible value fails at start with a
message naming it rather than deep inside the audio path.
"""
from __future__ import annotations

import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

SAMPLE_RATE = 16_000  # every stage after capture works on 16 kHz mono float32


# Whisper's language codes (faster_whisper.tokenizer._LANGUAGE_CODES), to check a setting
# without loading a model; "auto" detects the language from the room's speech.
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu "
    "hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro "
    "ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue".split())
AUTO = "auto"
TASKS = ("transcribe", "translate")  # translate: Whisper's own task, English subtitles of any speech


def language_problem(language: str | None) -> str | None:
    """Why `language` cannot be a room's language, or None (None and "auto" mean: detect it)."""
    if language is None or language == AUTO or language in WHISPER_LANGUAGES:
        return None
    return f"unknown language {language!r}: a Whisper language code (en, fr, de, ...) or \"auto\""


def task_problem(task: str | None) -> str | None:
    return None if task is None or task in TASKS else f"unknown task {task!r}: transcribe or translate"


@dataclass(frozen=True)
class RoomAsr:
    """What one room asks of speech recognition: a model (manifest name or directory), its
    language (None: detect) and the task. Resolved from [asr], the room's table, or the first
    AudioChunk of a pushed stream; checked against the model when the room starts."""

    model: str
    language: str | None = None
    task: str = "transcribe"


class SourceKind(StrEnum):
    """Where a session's audio comes from."""

    MICROPHONE = "microphone"  # a configured room's sound card
    REPLAY = "replay"  # a configured room replaying a recording in real time
    PUSH = "push"  # a client pushing audio over the API


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or impossible."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class InferenceConfig:
    """Where models run: an ordered list of onnxruntime providers, and thread counts."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 1
    inter_op_threads: int = 1

    def __post_init__(self) -> None:
        _require(len(self.providers) > 0, "inference.providers", "needs at least one provider")
        _require(self.intra_op_threads >= 1, "inference.intra_op_threads", "must be >= 1")
        _require(self.inter_op_threads >= 1, "inference.inter_op_threads", "must be >= 1")


@dataclass(frozen=True)
class AsrConfig:
    """The Whisper recognizer (CTranslate2)."""

    model: str = "whisper-tiny.en"  # a manifest name, or a path to any CT2 Whisper directory
    language: str | None = None  # rooms' default; None or "auto": detect (English-only models: en)
    task: str = "transcribe"  # rooms' default: transcribe, or translate (English subtitles of any speech)
    device: str = "cpu"  # cpu | cuda | auto
    compute_type: str = "int8"
    # CTranslate2 threads per model call, and model calls (batches) that run at once. One thread
    # per call and two calls at once (on 2 cores) beat two threads per call: the second intra-op
    # thread costs more CPU than it saves time, and two batches overlap. Through the daemon, 4 rooms
    # with diarization: final p95 1.89 s against 2.38 s, CPU per room 0.26 against 0.34 (README).
    cpu_threads: int = 1
    num_workers: int = 2
    batch_size: int = 8  # rooms decoded together in one model call (1: each room alone, no scheduler)
    # Seconds a due room waits at most for rooms about to be due. 0: none; rooms that queue while a call
    # runs still share the next. A wait holds one of the few inference threads (README, capacity).
    batch_gather: float = 0.0
    beam_size: int = 5
    min_window: float = 10.0  # streaming: encode at least this many seconds (0 = exactly the buffer)
    no_speech_threshold: float = 0.6  # drop a hypothesis Whisper itself calls non-speech ...
    log_prob_threshold: float = -1.0  # ... when its mean token log probability is also below this
    tokens_per_second: float = 8.0  # streaming: cap generated tokens at this rate of audio (+10); speech is ~3-5
    # Streaming: the previous-text prompt is the last this many tokens of the final text before the
    # buffer. One length for every room with that much history lets the rooms' decodes share a
    # model call (CTranslate2 batches prompts of one length only). 0: no previous text.
    prompt_tokens: int = 64
    # Loop guard of a decode narrower than beam_size: above this gzip compression ratio of its text
    # (or a repeated n-gram at its end, or the token cap reached) it is decoded again at beam_size. 0: ratio off.
    compression_ratio_threshold: float = 2.4

    def __post_init__(self) -> None:
        _require(self.device in ("cpu", "cuda", "auto"), "asr.device", f"unknown device {self.device!r}")
        _require(language_problem(self.language) is None, "asr.language", language_problem(self.language) or "")
        _require(task_problem(self.task) is None, "asr.task", task_problem(self.task) or "")
        _require(self.cpu_threads >= 1, "asr.cpu_threads", "must be >= 1")
        _require(self.num_workers >= 1, "asr.num_workers", "must be >= 1")
        _require(self.batch_size >= 1, "asr.batch_size", "must be >= 1")
        _require(0 <= self.batch_gather <= 0.5, "asr.batch_gather", "must be between 0 and 0.5 seconds")
        _require(self.beam_size >= 1, "asr.beam_size", "must be >= 1")
        _require(0 <= self.min_window <= 30, "asr.min_window", "must be between 0 and 30 seconds")
        _require(0 < self.no_speech_threshold <= 1, "asr.no_speech_threshold", "must be in (0, 1]")
        _require(self.log_prob_threshold <= 0, "asr.log_prob_threshold", "is a log probability: must be <= 0")
        _require(1 <= self.tokens_per_second <= 20, "asr.tokens_per_second", "must be between 1 and 20")
        _require(0 <= self.prompt_tokens <= 220, "asr.prompt_tokens", "must be between 0 and 220 (Whisper's prompt half)")
        _require(self.compression_ratio_threshold == 0 or self.compression_ratio_threshold >= 1,
                 "asr.compression_ratio_threshold", "must be 0 (off) or >= 1")

    def model_path(self) -> Path | None:
        """The model as a filesystem path when it is one rather than a manifest name."""
        path = Path(self.model)
        return path if (path.is_absolute() or path.exists()) else None


@dataclass(frozen=True)
class VadConfig:
    """Silero voice activity: when a speech region opens and closes.

    Probabilities at or above `threshold` open speech; once open, speech only
    pauses below `neg_threshold` (hysteresis, so a wavering probability does not
    chop a word). Thresholds follow faster-whisper's VadOptions; its 2 s silence
    and 0.4 s padding are shortened because a live stream cannot wait that long
    to close a region.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None  # None: threshold - 0.15 (at least 0.01), as faster-whisper
    # Shorter regions are dropped as blips. Not Silero's 0.25 s: the quiet opening
    # "Hello?" of the reference recording is a 128 ms region, and 0.25 s loses it.
    min_speech_s: float = 0.1
    min_silence_s: float = 0.5  # shorter pauses are bridged into one region
    speech_pad_s: float = 0.1  # widen each region by this much on both sides

    def __post_init__(self) -> None:
        _require(0.0 < self.threshold < 1.0, "vad.threshold", f"must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None:
            _require(
                0.0 < self.neg_threshold <= self.threshold,
                "vad.neg_threshold",
                f"must be in (0, threshold={self.threshold}], got {self.neg_threshold}",
            )
        for key in ("min_speech_s", "min_silence_s", "speech_pad_s"):
            value = getattr(self, key)
            _require(value >= 0.0, f"vad.{key}", f"must be >= 0, got {value}")

    @property
    def resolved_neg_threshold(self) -> float:
        """The threshold below which open speech counts as silence."""
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class StreamingConfig:
    """The streaming ASR timing contract: how often to re-decode, when words settle.

    Defaults come from the streaming decoder study (bench/test_streaming_study.py, README).
    """

    step: float = 0.5  # re-decode after this much new audio (seconds)
    agreement: int = 2  # LocalAgreement-n: hypotheses that must agree before a word is final
    commit_context: float = 0.0  # ... and it must end at least this long before the buffer end (s)
    # Time guard: a word one hypothesis has ending this long before the buffer end, with at least
    # commit_probability, is final without a second hypothesis. 0: agreement only.
    commit_guard: float = 0.5
    commit_probability: float = 0.85
    commit_deadline: float = 1.5  # with the guard on: a word ending this long before the buffer end is final
    # Beam of the tentative decodes (their words may still change); flushes and forced commits use
    # asr.beam_size. 0: asr.beam_size everywhere.
    tentative_beam: int = 1
    first_decode: float = 1.0  # no tentative decode before the buffer holds this much speech (s)
    trim_after: float = 5.0  # cut the buffer at a final word boundary once it is this long
    trim_pause: float = 0.15  # a final word followed by this much silence is a cut point; 0: sentence ends only
    # Whisper sometimes ends its text early (end-of-text after a trailing "but...") and then, decode
    # after decode, hears nothing past it from that buffer start while the speech goes on: once every
    # word of a hypothesis is final and it ends this long before the buffer end, the buffer starts
    # again after the last final word. Longer than commit_deadline + a step. 0: off.
    stall_after: float = 2.0
    max_buffer: float = 15.0  # beyond this, force words final and cut (bounds cost under endless speech)
    force_margin: float = 2.0  # when forcing, keep the last seconds tentative
    idle_keep: float = 1.0  # audio kept before a VAD speech start (its start is announced late)
    lead_in: float = 0.0  # the decode buffer starts this long before the VAD's speech start (at most idle_keep)
    max_word_rate: float = 6.0  # collapse repeated word runs faster than this (words/s); 0: off
    # A VAD speech end finalises the pending words at once. Off: words become final only by
    # agreement (or force), re-decoding while any are pending: the classic loop, the benchmarks' baseline.
    vad_flush: bool = True
    # With vad_flush: a decode in a pause inside a speech region runs at the full beam, and if the
    # region then ends with nothing heard after it, it is the region's flush (no second decode).
    pause_flush: bool = True

    def __post_init__(self) -> None:
        _require(0.05 <= self.step <= 5.0, "streaming.step", "must be between 0.05 and 5 seconds")
        _require(self.agreement >= 1, "streaming.agreement", "must be >= 1")
        _require(0 <= self.commit_context <= 5, "streaming.commit_context", "must be between 0 and 5 seconds")
        _require(0 <= self.commit_guard <= 5, "streaming.commit_guard", "must be between 0 and 5 seconds")
        _require(0 <= self.commit_probability <= 1, "streaming.commit_probability", "must be in [0, 1]")
        _require(self.commit_deadline == 0 or self.commit_deadline >= self.commit_guard, "streaming.commit_deadline",
                 "must be 0 (off) or >= commit_guard")
        _require(self.tentative_beam >= 0, "streaming.tentative_beam", "must be >= 0 (0: asr.beam_size)")
        _require(0 <= self.first_decode <= 5, "streaming.first_decode", "must be between 0 and 5 seconds")
        _require(0 < self.trim_after <= self.max_buffer, "streaming.trim_after", "must be in (0, max_buffer]")
        _require(0 <= self.trim_pause <= 2, "streaming.trim_pause", "must be between 0 and 2 seconds")
        _require(self.stall_after == 0 or self.stall_after > self.commit_deadline, "streaming.stall_after",
                 "must be 0 (off) or longer than commit_deadline")
        _require(self.max_buffer <= 25, "streaming.max_buffer", "must be <= 25 s (Whisper sees 30 s)")
        _require(0 <= self.force_margin < self.max_buffer, "streaming.force_margin", "must be in [0, max_buffer)")
        _require(self.idle_keep >= 0.3, "streaming.idle_keep", "must be >= 0.3 s")
        _require(0 <= self.lead_in <= self.idle_keep, "streaming.lead_in", "must be in [0, idle_keep]")
        _require(self.max_word_rate == 0 or self.max_word_rate >= 2, "streaming.max_word_rate",
                 "must be 0 (off) or >= 2 words per second")


def _host(listen: str) -> str:
    return listen.rpartition(":")[0].strip("[]")


def _check_endpoint(section: str, config: object, files: tuple[str, ...]) -> None:
    """HOST:PORT, cert and key together, and every configured file present."""
    host, _, port = config.listen.rpartition(":")
    _require(bool(host) and port.isdigit() and 0 <= int(port) < 65536, f"{section}.listen",
             f"expected HOST:PORT, got {config.listen!r}")
    _require((config.tls_cert is None) == (config.tls_key is None), f"{section}.tls_cert",
             "tls_cert and tls_key go together")
    for key in files:
        path = getattr(config, key)
        _require(path is None or Path(path).is_file(), f"{section}.{key}", f"no such file {path}")


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _check_plaintext(section: str, config: object) -> None:
    """Plaintext only on loopback, unless the operator opts in: one rule for every listening face."""
    _require(config.tls_cert is not None or _host(config.listen) in LOOPBACK or config.allow_insecure_remote,
             f"{section}.listen", f"{config.listen} is not loopback: configure tls_cert/tls_key "
             "(or set allow_insecure_remote = true to serve plaintext anyway)")


_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def session_id_problem(session_id: str) -> str | None:
    """Why `session_id` cannot name a room (configured or pushed), or None if it can.

    Ids become metric labels, health service names and export names: ASCII letters,
    digits, - and _, at most 64 characters. The message quotes at most 64 characters of it.
    """
    if _SESSION_ID.fullmatch(session_id):
        return None
    shown = repr(session_id[:64]) + ("..." if len(session_id) > 64 else "")
    return f"session id {shown}: use 1 to 64 letters, digits, - and _"


@dataclass(frozen=True)
class ServerConfig:
    """The gRPC API: address, TLS, tokens, and the limits that protect the pipeline."""

    listen: str = "127.0.0.1:50051"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: clients must present a certificate it signed (mTLS)
    token_file: Path | None = None  # one bearer token per line; set: every call needs one
    allow_insecure_remote: bool = False  # plaintext on a non-loopback address only if forced
    reflection: bool = True
    max_message_bytes: int = 65_536
    max_concurrent_rpcs: int = 2_000
    max_subscribers_per_session: int = 1_000
    # A subscriber is ended (it resumes by seq) once its undelivered events pass any of these:
    subscriber_backlog: int = 256  # non-partial events
    subscriber_backlog_seconds: float = 10.0  # age of the oldest undelivered event (or of a stuck write)
    subscriber_backlog_bytes: int = 1 << 20  # encoded size of the queued events
    max_push_sessions: int = 8
    push_idle_seconds: float = 20.0  # a request stream (a push) with no message for this long is ended
    request_seconds: float = 10.0  # a unary request message must arrive complete within this
    max_ended_sessions: int = 32  # ended pushed sessions kept for Get/Export/resume, the oldest dropped first
    ended_session_seconds: float = 3600.0  # ...and for at most this long after they end
    auth_max_failures: int = 10  # wrong or missing tokens from one address before it is locked out
    auth_lockout_seconds: float = 30.0  # how long a locked-out address is refused (doubling while it persists)
    retained_events: int = 100_000  # per session: how far back a subscriber can resume
    grace_seconds: float = 5.0  # drain time on SIGTERM

    def __post_init__(self) -> None:
        _check_endpoint("server", self, ("tls_cert", "tls_key", "client_ca", "token_file"))
        _require(self.client_ca is None or self.tls_cert is not None, "server.client_ca", "needs tls_cert and tls_key")
        _check_plaintext("server", self)
        for key in ("max_message_bytes", "max_concurrent_rpcs", "max_subscribers_per_session",
                    "subscriber_backlog", "subscriber_backlog_bytes", "retained_events", "auth_max_failures"):
            _require(getattr(self, key) >= 1, f"server.{key}", "must be >= 1")
        for key in ("subscriber_backlog_seconds", "push_idle_seconds", "request_seconds", "auth_lockout_seconds"):
            _require(getattr(self, key) > 0, f"server.{key}", "must be > 0 seconds")
        _require(self.max_push_sessions >= 0, "server.max_push_sessions", "must be >= 0")
        _require(self.max_ended_sessions >= 0, "server.max_ended_sessions", "must be >= 0")
        _require(self.ended_session_seconds >= 0, "server.ended_session_seconds", "must be >= 0")
        _require(self.grace_seconds >= 0, "server.grace_seconds", "must be >= 0")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus /metrics on a management address of its own (loopback by default)."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: scrapers must present a certificate it signed
    allow_insecure_remote: bool = False  # plaintext on a non-loopback address only if forced

    def __post_init__(self) -> None:
        _check_endpoint("metrics", self, ("tls_cert", "tls_key", "client_ca"))
        _require(self.client_ca is None or self.tls_cert is not None, "metrics.client_ca", "needs tls_cert and tls_key")
        _check_plaintext("metrics", self)


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP face: the room-screen page, Server-Sent Events, exports.

    TLS (certificate, key, client CA) and bearer tokens are the gRPC server's ([server]):
    one set of secrets for the box. Limits on subscribers and their backlog are the
    server's too: an SSE reader is a subscriber like any other.
    """

    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    allow_insecure_remote: bool = False  # plaintext on a non-loopback address only if forced
    heartbeat_seconds: float = 2.0  # an SSE stream with no event sends a heartbeat this often
    max_body_bytes: int = 1 << 20  # request bodies (the transcription upload has its own limit)
    # /api/asr-streaming (Kyutai): one message; Meet sends 80 ms (1,920 samples, ~10 kB).
    asr_max_message_bytes: int = 256 << 10
    # /v1/audio/transcriptions (OpenAI): the upload, and the files accepted at once (one is
    # transcribed at a time, beside the live rooms; the rest wait; past this a 429).
    transcription_max_bytes: int = 512 << 20
    transcription_queue: int = 4
    # Files are decoded in a worker process of its own (own models), every thread of it this
    # much nicer than the daemon, with this many CTranslate2 threads: live rooms get the cores
    # first (the README's measurements). 0: the daemon's priority.
    transcription_nice: int = 19
    transcription_cpu_threads: int = 1

    def __post_init__(self) -> None:
        host, _, port = self.listen.rpartition(":")
        _require(bool(host) and port.isdigit() and 0 <= int(port) < 65536, "http.listen",
                 f"expected HOST:PORT, got {self.listen!r}")
        _require(0.1 <= self.heartbeat_seconds <= 60, "http.heartbeat_seconds", "must be between 0.1 and 60 s")
        _require(self.max_body_bytes >= 1, "http.max_body_bytes", "must be >= 1")
        _require(1 << 10 <= self.asr_max_message_bytes <= 64 << 20, "http.asr_max_message_bytes",
                 "must be between 1 KiB and 64 MiB")
        _require(self.transcription_max_bytes >= 1 << 10, "http.transcription_max_bytes", "must be >= 1 KiB")
        _require(1 <= self.transcription_queue <= 1000, "http.transcription_queue", "must be between 1 and 1000")
        _require(0 <= self.transcription_nice <= 19, "http.transcription_nice", "must be between 0 and 19")
        _require(1 <= self.transcription_cpu_threads <= 64, "http.transcription_cpu_threads",
                 "must be between 1 and 64")


@dataclass(frozen=True)
class LogConfig:
    """Logs go to stderr (the journal under systemd), one key=value line per record."""

    level: str = "INFO"
    transcripts: bool = False  # log recognised text: off unless someone debugging asks for it

    def __post_init__(self) -> None:
        _require(self.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log.level",
                 f"unknown level {self.level!r} (DEBUG, INFO, WARNING, ERROR)")


@dataclass(frozen=True)
class DebugConfig:
    """Fault injection for tests of the daemon's own supervision; never set in production."""

    stall_pipeline_after: float = 0.0  # > 0: every session's pipeline hangs after this many seconds

    def __post_init__(self) -> None:
        _require(self.stall_pipeline_after >= 0, "debug.stall_pipeline_after", "must be >= 0")


@dataclass(frozen=True)
class SessionConfig:
    """A room the daemon runs from start: a microphone, or a recording replayed in real time."""

    id: str
    source: SourceKind = SourceKind.MICROPHONE  # microphone | replay
    file: Path | None = None  # replay: the recording
    device: str | int | None = None  # microphone: overrides capture.device for this room
    model: str | None = None  # this room's recognizer (default asr.model), e.g. "whisper-base" for French
    language: str | None = None  # this room's language (default asr.language; "auto": detect)
    task: str | None = None  # transcribe | translate (default asr.task)

    def __post_init__(self) -> None:
        problem = session_id_problem(self.id)
        _require(problem is None, "sessions.id", problem or "")
        _require(self.source in (SourceKind.MICROPHONE, SourceKind.REPLAY), f"sessions.{self.id}.source",
                 f"unknown source {str(self.source)!r} (microphone or replay)")
        _require(language_problem(self.language) is None, f"sessions.{self.id}.language",
                 language_problem(self.language) or "")
        _require(task_problem(self.task) is None, f"sessions.{self.id}.task", task_problem(self.task) or "")
        _require(self.source != "replay" or (self.file is not None and Path(self.file).is_file()),
                 f"sessions.{self.id}.file", f"replay needs an existing file, got {self.file}")


@dataclass(frozen=True)
class CaptureConfig:
    """Live capture from a sound card through PortAudio.

    Whether `device` exists is checked against the sound cards at daemon start
    (`appliance.audio.capture.resolve_device`), not here: this stays pure.
    """

    device: str | int | None = None  # a name substring, a PortAudio index, or None: the default input
    channel: int | None = None  # None: the mean of all opened channels; else only this channel (0-based)
    # How many device channels to open. None: the device's maximum, but at most 2, because
    # virtual devices (ALSA's `pulse`, `default`) advertise 32 and fill most with silence.
    channels: int | None = None
    block_seconds: float = 0.02  # audio per PortAudio callback
    queue_seconds: float = 2.0  # most audio held between the callback and the pipeline; older blocks are dropped
    reconnect_initial: float = 0.5  # first wait before reopening a device that failed
    reconnect_max: float = 10.0  # the wait doubles up to this
    stall_seconds: float = 2.0  # no block for this long means the device is gone

    def __post_init__(self) -> None:
        if isinstance(self.device, str):
            _require(self.device.strip() != "", "capture.device", "must be a name, an index or unset")
        elif self.device is not None:
            _require(
                isinstance(self.device, int) and not isinstance(self.device, bool) and self.device >= 0,
                "capture.device",
                f"must be a name substring or an index >= 0, got {self.device!r}",
            )
        if self.channel is not None:
            _require(self.channel >= 0, "capture.channel", f"must be >= 0 or unset, got {self.channel}")
        if self.channels is not None:
            _require(self.channels >= 1, "capture.channels", f"must be >= 1 or unset, got {self.channels}")
            if self.channel is not None:
                _require(
                    self.channel < self.channels,
                    "capture.channel",
                    f"{self.channel} is not among the {self.channels} opened channels (0-based)",
                )
        _require(0.005 <= self.block_seconds <= 0.5, "capture.block_seconds", "must be between 0.005 and 0.5 s")
        _require(
            self.queue_seconds >= 2 * self.block_seconds,
            "capture.queue_seconds",
            f"must hold at least two blocks (>= {2 * self.block_seconds} s)",
        )
        _require(self.reconnect_initial > 0, "capture.reconnect_initial", "must be > 0 seconds")
        _require(
            self.reconnect_max >= self.reconnect_initial,
            "capture.reconnect_max",
            f"must be >= reconnect_initial ({self.reconnect_initial} s)",
        )
        _require(
            self.stall_seconds > self.block_seconds,
            "capture.stall_seconds",
            f"must be longer than one block ({self.block_seconds} s)",
        )


@dataclass(frozen=True)
class DiarizationConfig:
    """Speaker diarization: which ONNX files, and the offline and streaming timing contracts.

    Times are seconds of audio. `label_latency` is how far behind the newest audio a
    speaker label becomes final in the streaming diarizer: more latency means more
    right-hand context for the decision (and fewer wrong labels), never a later flip.
    """

    live: bool = True  # label speakers in live rooms and pushed streams (costs ~0.08 CPU s per audio s)
    segmentation_model: str = "pyannote-segmentation-3.0"  # manifest names
    segmentation_file: str = "segmentation-3.0.int8.onnx"
    embedding_model: str = "campplus-sv-zh-en-16k-common-advanced"
    embedding_file: str = "campplus.onnx"
    # Offline: the model's native 10 s window, 1 s step (pyannote's default overlap).
    window: float = 10.0
    step: float = 1.0
    # The three clustering settings were tuned on the evaluation set's tune split only
    # (tests/data/corpus.py; bench/test_diarization_eval.py reports held-out).
    # Cosine distance below which two clusters are one speaker: 0.5-0.6 scored alike,
    # 0.65 merged the sample's two voices, so the middle of the plateau.
    cluster_threshold: float = 0.55
    # A cluster with fewer embeddings than this (capped at a tenth of them all) is
    # not a speaker of its own: its members join the nearest large cluster. On the
    # tune split (30-80 s recordings) every size above 1 lost real speakers, so it is
    # off by default; raise it for hour-long recordings (pyannote uses 12).
    min_cluster_size: int = 1
    # Shortest clean (single-speaker) speech whose embedding takes part in the
    # clustering; shorter local speakers are only assigned to the clusters found.
    min_embedding_duration: float = 0.25
    # Streaming (chosen on the sample recording and rotations of it, see
    # models/diarization/README.md): a label is final between label_latency and
    # label_latency + stream_step after its audio arrived. Shorter windows made
    # spurious speakers (too little speech per embedding).
    # label_latency and new_speaker_threshold were then retuned on the evaluation set's
    # tune split (bench/test_diarization_eval.py): 1.0 s and 0.6 brought live DER from
    # 1.32x to 1.10x the offline DER there (1.5 s: 1.05x, but labels final 0.5 s later).
    stream_window: float = 10.0
    stream_step: float = 1.0
    label_latency: float = 1.0
    # A local speaker that continues one of the previous window is re-embedded only
    # this often (seconds), on at most its last `stream_embedding_duration` seconds:
    # embedding is most of the CPU cost.
    stream_reembed: float = 2.0
    stream_embedding_duration: float = 3.0
    stream_min_embedding_duration: float = 1.0
    # Only a voice heard this long (clean, in one window) may open a new speaker.
    stream_new_speaker_duration: float = 1.0
    # Cosine distance beyond which a local speaker opens a new session speaker.
    new_speaker_threshold: float = 0.6
    max_speakers: int = 8
    # Enrolled voiceprints (Speakers.Enroll): personal data, so only where this names a
    # directory (created mode 0700 if missing; its parent must exist). None: enrolment is off.
    voiceprints: Path | None = None
    # Cosine similarity from which a live speaker is named after an enrolled voiceprint: chosen on
    # the evaluation set's tune split (bench/voiceprint_eval.py; held-out figures in the README).
    voiceprint_threshold: float = 0.42

    def __post_init__(self) -> None:
        _require(self.window > 0, "diarization.window", "must be > 0")
        _require(0 < self.step <= self.window, "diarization.step", "must be in (0, window]")
        _require(0 < self.cluster_threshold < 2, "diarization.cluster_threshold", "is a cosine distance in (0, 2)")
        _require(self.min_cluster_size >= 1, "diarization.min_cluster_size", "must be >= 1")
        _require(self.min_embedding_duration > 0, "diarization.min_embedding_duration", "must be > 0")
        _require(self.stream_window > 0, "diarization.stream_window", "must be > 0")
        _require(0 < self.stream_step <= self.stream_window, "diarization.stream_step",
                 "must be in (0, stream_window]")
        _require(0 <= self.label_latency <= self.stream_window - self.stream_step, "diarization.label_latency",
                 "must be in [0, stream_window - stream_step]: a label needs a window that saw it")
        _require(self.stream_reembed >= 0, "diarization.stream_reembed", "must be >= 0")
        _require(self.stream_embedding_duration >= self.stream_min_embedding_duration > 0,
                 "diarization.stream_embedding_duration", "must be >= stream_min_embedding_duration > 0")
        _require(0 < self.new_speaker_threshold < 2, "diarization.new_speaker_threshold",
                 "is a cosine distance in (0, 2)")
        _require(self.max_speakers >= 1, "diarization.max_speakers", "must be >= 1")
        _require(-1 < self.voiceprint_threshold < 1, "diarization.voiceprint_threshold",
                 "is a cosine similarity in (-1, 1)")
        if self.voiceprints is not None:
            where = Path(self.voiceprints)
            _require(where.is_dir() if where.exists() else where.parent.is_dir(), "diarization.voiceprints",
                     f"{where} is not a directory" if where.exists() else f"{where.parent} does not exist")


@dataclass(frozen=True)
class AppConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    sessions: tuple[SessionConfig, ...] = ()

    def __post_init__(self) -> None:
        ids = [s.id for s in self.sessions]
        _require(len(ids) == len(set(ids)), "sessions", f"duplicate session ids in {ids}")
        # The HTTP face carries the same tokens as gRPC: plaintext only where nobody can listen in.
        _require(not self.http.enabled or self.server.tls or _host(self.http.listen) in LOOPBACK
                 or self.http.allow_insecure_remote,
                 "http.listen", f"{self.http.listen} is not loopback: configure server.tls_cert/tls_key "
                 "(the HTTP face uses the same certificate) or set http.allow_insecure_remote = true")

    def transcription_asr(self) -> AsrConfig:
        """[asr] for the file model of /v1/audio/transcriptions: its own threads, no batching."""
        return replace(self.asr, cpu_threads=self.http.transcription_cpu_threads, num_workers=1, batch_size=1)

    def room_asr(self, room: SessionConfig | None = None, model: str | None = None, language: str | None = None,
                 task: str | None = None) -> RoomAsr:
        """A room's recognition: what its caller declared (a pushed stream's first chunk), else its
        [[sessions]] table, else [asr]."""
        def first(*values):
            return next((v for v in values if v), None)

        return RoomAsr(model=first(model, room and room.model, self.asr.model),
                       language=first(language, room and room.language, self.asr.language),
                       task=first(task, room and room.task, self.asr.task))


# --- loading: TOML file, then APPLIANCE_* environment, then command-line overrides ---

_SECTIONS = {"inference": InferenceConfig, "asr": AsrConfig, "streaming": StreamingConfig, "vad": VadConfig,
             "capture": CaptureConfig, "diarization": DiarizationConfig, "server": ServerConfig,
             "metrics": MetricsConfig, "http": HttpConfig, "log": LogConfig, "debug": DebugConfig}
ENV_PREFIX = "APPLIANCE_"


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _coerce(tp: object, value: object, key: str) -> object:
    args = typing.get_args(tp)
    if type(tp) is types.UnionType or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for inner in options:
            try:
                return _coerce(inner, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(map(_type_name, options))}, got {value!r}")
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a path string, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        if value not in tp.__members__.values():
            raise ConfigError(f"{key}: unknown {key.rsplit('.', 1)[-1]} {value!r} (one of {', '.join(tp)})")
        return tp(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a device given as an index
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: object, prefix: str) -> object:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown key (known: {', '.join(known)})")
    return cls(**{k: _coerce(hints[k], v, f"{prefix}.{k}") for k, v in table.items()})


def _parse_value(text: str) -> object:
    """An override's value as TOML (numbers, booleans, lists, strings), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(data: dict, dotted: str, text: str, origin: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in _SECTIONS or not key:
        raise ConfigError(f"{origin}: expected SECTION.KEY with SECTION one of {', '.join(_SECTIONS)}")
    data.setdefault(section, {})[key] = _parse_value(text)


def load_config(
    path: Path | None = None,
    env: typing.Mapping[str, str] | None = None,
    overrides: typing.Sequence[str] = (),
) -> AppConfig:
    """The effective configuration; any bad key, type or value raises ConfigError naming it."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for name, value in sorted((env or {}).items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, key = name[len(ENV_PREFIX):].lower().split("__", 1)
            _set(data, f"{section}.{key}", value, name)
    for override in overrides:
        dotted, eq, value = override.partition("=")
        if not eq:
            raise ConfigError(f"--set {override}: expected SECTION.KEY=VALUE")
        _set(data, dotted.strip(), value.strip(), f"--set {override}")
    unknown = set(data) - set(_SECTIONS) - {"sessions"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section (known: {', '.join([*_SECTIONS, 'sessions'])})")
    sessions = data.get("sessions", [])
    if not isinstance(sessions, list):
        raise ConfigError("sessions: expected an array of tables ([[sessions]])")
    return AppConfig(
        **{name: _build(cls, data.get(name, {}), name) for name, cls in _SECTIONS.items()},
        sessions=tuple(_build(SessionConfig, s, f"sessions[{i}]") for i, s in enumerate(sessions)),
    )
