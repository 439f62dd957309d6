"""Silero VAD v6 on onnxruntime: one shared model, one `VadStream` per audio stream.

Fed exactly as faster-whisper's `SileroVADModel` feeds it (each 512-sample frame
preceded by the previous frame's last 64 samples, zeros before the first; the
LSTM state h/c carried from frame to frame), so a stream's probabilities equal
faster-whisper's offline ones, whatever the chunking of the pushed audio.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from appliance.config import InferenceConfig, VadConfig
from appliance.inference.manifest import ModelError, ModelSpec, load_manifest
from appliance.inference.onnx import load_onnx
from appliance.vad.policy import FRAME_SAMPLES, VadEvent, VadPolicy

CONTEXT_SAMPLES = 64  # tail of the previous frame the model sees before each frame
STATE_SHAPE = (1, 1, 128)
MODEL_NAME = "silero-vad"
MODEL_FILE = "silero_vad_v6.onnx"


class SileroVad:
    """The loaded model, shared by all streams; it holds no per-stream state.

    ORT's `run` is safe to call concurrently, so streams on different executor
    threads may share one instance.
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        inputs = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        if inputs != {"input", "h", "c"} or outputs[:3] != ["speech_probs", "hn", "cn"]:
            raise ModelError(
                f"not a Silero VAD v6 graph: inputs {sorted(inputs)}, outputs {outputs}"
            )
        self._session = session
        self.provider = session.get_providers()[0]

    @classmethod
    def load(
        cls,
        inference: InferenceConfig | None = None,
        manifest: dict[str, ModelSpec] | None = None,
    ) -> SileroVad:
        """Open the pinned model (its hash is checked against the manifest first)."""
        manifest = manifest if manifest is not None else load_manifest()
        if MODEL_NAME not in manifest:
            raise ModelError(f"model {MODEL_NAME!r} is not in the manifest")
        return cls(load_onnx(manifest[MODEL_NAME], MODEL_FILE, inference or InferenceConfig()))

    def stream(self, config: VadConfig | None = None, keep_probabilities: bool = False) -> VadStream:
        """A fresh per-stream state on this model."""
        return VadStream(self, config or VadConfig(), keep_probabilities)

    def frame_probability(
        self, window: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """One step: `window` is [1, 64 + 512] float32; returns (probability, h', c')."""
        probs, h, c = self._session.run(None, {"input": window, "h": h, "c": c})
        return float(probs.reshape(-1)[0]), h, c


class VadStream:
    """Per-stream state: LSTM state, the 64-sample context, a partial frame, the policy.

    Frames run one ORT call each, in order: the LSTM state makes frame i depend
    on every frame before it.
    """

    def __init__(self, model: SileroVad, config: VadConfig, keep_probabilities: bool = False) -> None:
        self._model = model
        self._policy = VadPolicy(config)
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        # One reused window: [0:64] the context, [64:64+filled] the frame being gathered.
        self._window = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self._filled = 0
        self._samples = 0  # samples pushed so far: the audio clock of this stream
        self._probabilities: list[float] | None = [] if keep_probabilities else None
        self._flushed = False

    @property
    def in_speech(self) -> bool:
        return self._policy.in_speech

    @property
    def pausing(self) -> bool:
        return self._policy.pausing

    @property
    def samples(self) -> int:
        """Samples pushed so far (sample index of the next one)."""
        return self._samples

    @property
    def probabilities(self) -> np.ndarray:
        """Every frame's speech probability so far; needs keep_probabilities=True."""
        if self._probabilities is None:
            raise RuntimeError("probabilities are not kept: create the stream with keep_probabilities=True")
        return np.asarray(self._probabilities, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Add float32 16 kHz mono samples (any length); return the events they decide."""
        if self._flushed:
            raise RuntimeError("VadStream.push after flush: the stream has ended")
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
            got = (
                f"{samples.dtype} array of shape {samples.shape}"
                if isinstance(samples, np.ndarray)
                else type(samples).__name__
            )
            raise ValueError(f"VAD expects a 1-D float32 array of 16 kHz mono samples, got {got}")
        events: list[VadEvent] = []
        offset = 0
        while offset < len(samples):
            take = min(FRAME_SAMPLES - self._filled, len(samples) - offset)
            start = CONTEXT_SAMPLES + self._filled
            self._window[0, start : start + take] = samples[offset : offset + take]
            self._filled += take
            offset += take
            if self._filled == FRAME_SAMPLES:
                events += self._run_frame()
        self._samples += len(samples)
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: run a zero-padded last partial frame, close open speech."""
        if self._flushed:
            return []
        events: list[VadEvent] = []
        if self._filled:
            self._window[0, CONTEXT_SAMPLES + self._filled :] = 0.0
            events += self._run_frame()
        self._flushed = True
        return events + self._policy.flush(end_sample=self._samples)

    def _run_frame(self) -> list[VadEvent]:
        probability, self._h, self._c = self._model.frame_probability(self._window, self._h, self._c)
        # The frame's last 64 samples become the next frame's context.
        self._window[0, :CONTEXT_SAMPLES] = self._window[0, -CONTEXT_SAMPLES:]
        self._filled = 0
        if self._probabilities is not None:
            self._probabilities.append(probability)
        return self._policy.push(probability)
