"""On-premise live transcription and subtitling appliance."""

__version__ = "0.1.0"
