"""On-premise live transcription and subtitling appliance."""
import os

# onnxruntime otherwise writes a device id and a telemetry database under ~/.cache/Microsoft
# and a session file in $TMPDIR at its first session: an appliance writes only its state
# directory. Read when onnxruntime loads, so it is set before any module imports it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
