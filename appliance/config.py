"""Typed configuration: one frozen dataclass per stage.

Every timing and resource contract of the pipeline is a field here, validated
when the dataclass is built, so an impossible value fails at start with a
message naming it rather than deep inside the audio path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 16_000  # every stage after capture works on 16 kHz mono float32


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
    language: str | None = None  # None: the model's only language, or auto-detect
    device: str = "cpu"  # cpu | cuda | auto
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 5
    min_window: float = 10.0  # streaming: encode at least this many seconds (0 = exactly the buffer)
    no_speech_threshold: float = 0.6  # drop a hypothesis Whisper itself calls non-speech

    def __post_init__(self) -> None:
        _require(self.device in ("cpu", "cuda", "auto"), "asr.device", f"unknown device {self.device!r}")
        _require(self.cpu_threads >= 1, "asr.cpu_threads", "must be >= 1")
        _require(self.beam_size >= 1, "asr.beam_size", "must be >= 1")
        _require(0 <= self.min_window <= 30, "asr.min_window", "must be between 0 and 30 seconds")
        _require(0 < self.no_speech_threshold <= 1, "asr.no_speech_threshold", "must be in (0, 1]")

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
    """The streaming ASR timing contract: how often to re-decode, when words settle."""

    step: float = 0.5  # re-decode after this much new audio (seconds)
    agreement: int = 2  # LocalAgreement-n: hypotheses that must agree before a word is final
    trim_after: float = 5.0  # cut the buffer at a final sentence end once it is this long
    max_buffer: float = 15.0  # beyond this, force words final and cut (bounds cost under endless speech)
    force_margin: float = 2.0  # when forcing, keep the last seconds tentative
    idle_keep: float = 1.0  # audio kept before a VAD speech start (its start is announced late)

    def __post_init__(self) -> None:
        _require(0.05 <= self.step <= 5.0, "streaming.step", "must be between 0.05 and 5 seconds")
        _require(self.agreement >= 1, "streaming.agreement", "must be >= 1")
        _require(0 < self.trim_after <= self.max_buffer, "streaming.trim_after", "must be in (0, max_buffer]")
        _require(self.max_buffer <= 25, "streaming.max_buffer", "must be <= 25 s (Whisper sees 30 s)")
        _require(0 <= self.force_margin < self.max_buffer, "streaming.force_margin", "must be in [0, max_buffer)")
        _require(self.idle_keep >= 0.3, "streaming.idle_keep", "must be >= 0.3 s")


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
class AppConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
