"""Voice activity: Silero VAD (ONNX) probabilities → speech start/end events."""
from appliance.vad.policy import FRAME_SAMPLES, VadEvent, VadPolicy

__all__ = ["FRAME_SAMPLES", "VadEvent", "VadPolicy"]
