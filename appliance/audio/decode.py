"""Decode any file FFmpeg understands (through PyAV) to 16 kHz mono float32."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from faster_whisper.audio import decode_audio

from appliance.config import SAMPLE_RATE


class AudioInputError(Exception):
    """The input cannot be used as audio; the message says why, for a person."""


def load_audio(path: Path) -> np.ndarray:
    """The file's first audio stream as float32 mono at 16 kHz, or AudioInputError."""
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path}: file is empty (0 bytes)")
    try:
        samples = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except PermissionError:
        raise AudioInputError(f"{path}: permission denied") from None
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        # IndexError: the container has no audio stream (decode(audio=0)).
        reason = "it has no audio stream" if isinstance(exc, IndexError) else (
            getattr(exc, "strerror", None) or str(exc)
        )
        raise AudioInputError(f"{path}: cannot decode audio ({reason})") from None
    if samples.size == 0:
        raise AudioInputError(f"{path}: contains no audio samples")
    return samples
