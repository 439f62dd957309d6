"""Speech recognition: the Recognizer protocol, its faster-whisper backend, streaming policy."""
