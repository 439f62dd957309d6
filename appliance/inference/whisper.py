"""Build the CTranslate2 Whisper model: the one place it is loaded."""
from __future__ import annotations

import logging
from pathlib import Path

from faster_whisper import WhisperModel
from threadpoolctl import threadpool_limits

from appliance.config import AsrConfig
from appliance.inference.manifest import ModelError, ModelSpec, verified_path

log = logging.getLogger(__name__)


def whisper_model_dir(config: AsrConfig, manifest: dict[str, ModelSpec] | None = None) -> Path:
    """A manifest model (hash-verified) or an operator-provisioned CT2 directory."""
    path = config.model_path()
    if path is None:
        return verified_path(config.model, manifest)
    if not (path / "model.bin").is_file():
        raise ModelError(f"{path}: not a CTranslate2 Whisper model directory (no model.bin)")
    return path


def load_whisper(config: AsrConfig, manifest: dict[str, ModelSpec] | None = None) -> WhisperModel:
    """The model; and numpy's BLAS (OpenBLAS, numpy's and scipy's) held to the calling thread.

    OpenBLAS starts a thread per core that spins for a while after every call. Each decode
    makes a few small matrix products (the log-mel projection, alignment), so that thread spun
    through every room's decodes: half the process CPU of a streaming room (0.29 against 0.14
    CPU s per audio s, ideal-machine replay, README). The box's parallelism is its rooms and
    CTranslate2's workers; every process that decodes loads its model here, so it is set here.
    """
    threadpool_limits(limits=1, user_api="blas")
    path = whisper_model_dir(config, manifest)
    try:
        model = WhisperModel(
            str(path),
            device=config.device,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=config.num_workers,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"{path}: cannot load Whisper model ({exc})") from None
    log.info("whisper model %s on %s (%s)", path.name, config.device, config.compute_type)
    return model
