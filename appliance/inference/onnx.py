"""Build onnxruntime sessions: the one place providers and threads are chosen."""
from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from appliance.config import InferenceConfig
from appliance.inference.manifest import ModelError, ModelSpec, verify

log = logging.getLogger(__name__)


def onnx_session(path: Path, config: InferenceConfig) -> ort.InferenceSession:
    """An ORT session on the first configured provider that this build of onnxruntime has."""
    available = ort.get_available_providers()
    providers = [p for p in config.providers if p in available]
    if not providers:
        raise ModelError(
            f"{path.name}: none of the configured providers {list(config.providers)} "
            f"is available (this onnxruntime has {available})"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.log_severity_level = 3
    # ORT caches a memory plan per distinct input shape and never drops one; the embedding model
    # sees a new fbank length on almost every call, so the cache grew the daemon's RSS for as long
    # as new lengths came (CAM++: +19.6 MB after 600 calls, still climbing; off: flat, same CPU per call).
    options.enable_mem_pattern = False
    session = ort.InferenceSession(str(path), options, providers=providers)
    log.info("model %s runs on %s", path.name, session.get_providers()[0])
    return session


def load_onnx(spec: ModelSpec, file: str, config: InferenceConfig) -> ort.InferenceSession:
    """Verify `spec`'s pinned hashes, then open one of its ONNX files."""
    if file not in spec.files:
        raise ModelError(f"model {spec.name!r} has no file {file!r} in the manifest")
    return onnx_session(verify(spec) / file, config)
