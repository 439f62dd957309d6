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
class AppConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    diarization: DiarizationConfig = field(default_factory=lambda: DiarizationConfig())  # class defined below


@dataclass(frozen=True)
class DiarizationConfig:
    """Speaker diarization: which ONNX files, and the offline and streaming timing contracts.

    Times are seconds of audio. `label_latency` is how far behind the newest audio a
    speaker label becomes final in the streaming diarizer: more latency means more
    right-hand context for the decision (and fewer wrong labels), never a later flip.
    """

    segmentation_model: str = "pyannote-segmentation-3.0"  # manifest names
    segmentation_file: str = "segmentation-3.0.int8.onnx"
    embedding_model: str = "campplus-sv-zh-en-16k-common-advanced"
    embedding_file: str = "campplus.onnx"
    # Offline: the model's native 10 s window, 1 s step (pyannote's default overlap).
    window: float = 10.0
    step: float = 1.0
    # Cosine distance below which two clusters are one speaker (calibrated, see
    # models/diarization/README.md).
    cluster_threshold: float = 0.5
    # Shortest clean (single-speaker) speech that gets its own embedding: CAM++ is
    # unreliable on less.
    min_embedding_duration: float = 0.5
    # Streaming (chosen on the sample recording and rotations of it, see
    # models/diarization/README.md): a label is final between label_latency and
    # label_latency + stream_step after its audio arrived. Shorter windows made
    # spurious speakers (too little speech per embedding).
    stream_window: float = 10.0
    stream_step: float = 1.0
    label_latency: float = 0.75
    # A local speaker that continues one of the previous window is re-embedded only
    # this often (seconds), on at most its last `stream_embedding_duration` seconds:
    # embedding is most of the CPU cost.
    stream_reembed: float = 2.0
    stream_embedding_duration: float = 3.0
    stream_min_embedding_duration: float = 1.0
    # Only a voice heard this long (clean, in one window) may open a new speaker.
    stream_new_speaker_duration: float = 1.0
    # Cosine distance beyond which a local speaker opens a new session speaker.
    new_speaker_threshold: float = 0.5
    max_speakers: int = 8

    def __post_init__(self) -> None:
        _require(self.window > 0, "diarization.window", "must be > 0")
        _require(0 < self.step <= self.window, "diarization.step", "must be in (0, window]")
        _require(0 < self.cluster_threshold < 2, "diarization.cluster_threshold", "is a cosine distance in (0, 2)")
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
