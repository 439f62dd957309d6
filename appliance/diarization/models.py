"""The two diarization models behind narrow protocols, and their ONNX backends.

A `Segmenter` turns a window of audio into per-frame activity of up to a few
*local* speakers (numbered per window only); a `SpeakerEmbedder` turns speech of
one speaker into a vector whose cosine similarity says "same voice". Sessions
share one instance of each: both are stateless after construction (an ORT
session's `run` may be called from several threads).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort

from appliance.config import SAMPLE_RATE, DiarizationConfig, InferenceConfig
from appliance.diarization.features import FRAME_LENGTH, FRAME_SHIFT, fbank, mean_normalised
from appliance.inference.manifest import ModelError, ModelSpec, load_manifest
from appliance.inference.onnx import load_onnx


@dataclass(frozen=True)
class FrameGrid:
    """Timing of the segmenter's output frames: frame i is centred at offset + i * step seconds."""

    step: float
    offset: float


class Segmenter(Protocol):
    grid: FrameGrid
    window: float  # the window length the model was trained on, seconds

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """(frames, local speakers) 0/1 activity of one window (or (batch, frames, speakers) of a batch)."""
        ...


class SpeakerEmbedder(Protocol):
    dimension: int
    min_duration: float  # shortest speech, seconds, the model accepts

    def embed(self, samples: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Embedding of `samples`; with `mask` (one bool per 10 ms fbank frame) only those frames count."""
        ...


def check_audio(samples: np.ndarray, what: str = "samples") -> np.ndarray:
    """Validated 1-D float32 view; the pipeline's audio contract, enforced at every entry point."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"{what}: expected mono 16 kHz float32 samples (1-D), got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"{what}: expected float samples in [-1, 1] at 16 kHz, got dtype {samples.dtype}")
    return samples.astype(np.float32, copy=False)


def check_rate(sample_rate: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"diarization works on {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample at capture"
        )


class OnnxSegmenter:
    """pyannote segmentation-3.0: powerset log-probs -> per-speaker activity (argmax, then mapping)."""

    def __init__(self, session: ort.InferenceSession):
        self._session = session
        meta = session.get_modelmeta().custom_metadata_map
        try:
            check_rate(int(meta["sample_rate"]))
            self.window = float(meta["window_seconds"])
            step = float(meta["frame_step_seconds"])
            self.grid = FrameGrid(step=step, offset=float(meta["frame_duration_seconds"]) / 2)
            # (powerset classes, speakers): class c means "exactly these speakers talk".
            self._mapping = np.array(json.loads(meta["powerset_mapping"]), dtype=np.uint8)
        except KeyError as exc:
            raise ModelError(f"segmentation model lacks export metadata {exc}: re-run `make models`") from None
        self.num_speakers = self._mapping.shape[1]

    def __call__(self, window: np.ndarray) -> np.ndarray:
        batch = np.asarray(window, dtype=np.float32)
        single = batch.ndim == 1
        batch = batch.reshape(-1, 1, batch.shape[-1])
        log_probs = self._session.run(None, {"waveform": batch})[0]
        activity = self._mapping[log_probs.argmax(axis=-1)]
        return activity[0] if single else activity


class OnnxEmbedder:
    """CAM++ on Kaldi fbank; L2-normalised so a dot product is the cosine similarity."""

    min_duration = 0.25  # CAM++'s pooling needs a few dozen frames to mean anything

    def __init__(self, session: ort.InferenceSession):
        self._session = session
        self.dimension = int(session.get_outputs()[0].shape[-1])

    def embed(self, samples: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        features = fbank(check_audio(samples))
        if mask is not None:
            if len(mask) != len(features):
                raise ValueError(f"mask has {len(mask)} frames, the fbank {len(features)}")
            features = features[mask]
        if len(features) * FRAME_SHIFT < self.min_duration:
            raise ValueError(
                f"speech too short to embed: {len(features) * FRAME_SHIFT:.2f} s < {self.min_duration} s"
            )
        out = self._session.run(None, {"fbank": mean_normalised(features)[None]})[0][0]
        return out / max(float(np.linalg.norm(out)), 1e-12)


def fbank_frame_mask(grid: FrameGrid, activity: np.ndarray, num_samples: int) -> np.ndarray:
    """Per-fbank-frame bool mask from per-segmenter-frame 0/1 activity (nearest frame centre)."""
    length, shift = round(FRAME_LENGTH * SAMPLE_RATE), round(FRAME_SHIFT * SAMPLE_RATE)
    n = 1 + (num_samples - length) // shift if num_samples >= length else 0  # Kaldi snip_edges
    centres = np.arange(n) * FRAME_SHIFT + FRAME_LENGTH / 2
    index = np.clip(np.round((centres - grid.offset) / grid.step).astype(int), 0, len(activity) - 1)
    return activity[index].astype(bool)


@dataclass(frozen=True)
class DiarizationModels:
    """The shared, loaded models; built once per daemon."""

    segmenter: Segmenter
    embedder: SpeakerEmbedder


def _spec(manifest: dict[str, ModelSpec], name: str) -> ModelSpec:
    if name not in manifest:
        raise ModelError(f"model {name!r} is not in the manifest (known: {', '.join(sorted(manifest))})")
    return manifest[name]


def load_models(
    config: DiarizationConfig,
    inference: InferenceConfig,
    manifest: dict[str, ModelSpec] | None = None,
) -> DiarizationModels:
    """Verify hashes and open both ONNX models; fails (never falls back) when one is missing."""
    manifest = manifest if manifest is not None else load_manifest()
    seg = load_onnx(_spec(manifest, config.segmentation_model), config.segmentation_file, inference)
    emb = load_onnx(_spec(manifest, config.embedding_model), config.embedding_file, inference)
    return DiarizationModels(segmenter=OnnxSegmenter(seg), embedder=OnnxEmbedder(emb))
