"""Audio in: decoding, frames and sources, normalised once to 16 kHz mono float32."""
