"""CAM++'s input features: the front-end 3D-Speaker trained it with.

speakerlab's FBank(80, 16000, mean_nor=True) is torchaudio's Kaldi fbank with
dither 0 on float samples in [-1, 1], then per-utterance mean normalisation.
kaldi-native-fbank computes the same Kaldi recipe without torch (the export's
PARITY.md records the difference).
"""
from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from appliance.config import SAMPLE_RATE

FRAME_SHIFT = 0.010  # seconds per fbank frame
FRAME_LENGTH = 0.025
NUM_BINS = 80


def _options() -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.dither = 0.0  # deterministic; 3D-Speaker extracts with dither 0
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT * 1000
    opts.frame_opts.frame_length_ms = FRAME_LENGTH * 1000
    opts.mel_opts.num_bins = NUM_BINS
    return opts


def fbank(samples: np.ndarray) -> np.ndarray:
    """(frames, 80) log-mel filterbank of 16 kHz float samples, not yet mean-normalised.

    Frame i covers samples [i*160, i*160 + 400) (Kaldi snip_edges).
    """
    extractor = knf.OnlineFbank(_options())
    extractor.accept_waveform(SAMPLE_RATE, samples)
    extractor.input_finished()
    n = extractor.num_frames_ready
    if n == 0:
        return np.zeros((0, NUM_BINS), dtype=np.float32)
    return np.stack([extractor.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)


def mean_normalised(features: np.ndarray) -> np.ndarray:
    """Subtract the per-utterance mean, over exactly the frames that will be embedded."""
    return features - features.mean(axis=0, keepdims=True)
