"""Voice activity: Silero VAD (ONNX) probabilities → speech start/end events."""
from appliance.vad.policy import FRAME_SAMPLES, VadEvent, VadPolicy
from appliance.vad.silero import SileroVad, VadStream

__all__ = ["FRAME_SAMPLES", "SileroVad", "VadEvent", "VadPolicy", "VadStream"]
