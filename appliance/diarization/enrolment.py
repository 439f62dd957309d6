"""A voiceprint from a recording of one person: the embedding only; the audio is not kept.

The segmenter finds the speech (clean, single-speaker frames of the window's main voice);
the embedder embeds it in chunks as the streaming diarizer does (at most
`stream_embedding_duration` s, at least `stream_min_embedding_duration` s, one every
`stream_reembed` s of speech), and the voiceprint
is their normalised mean: the same statistic as a live speaker's centroid, which it is
compared with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.audio.frames import level_dbfs
from appliance.config import SAMPLE_RATE, DiarizationConfig
from appliance.diarization.models import DiarizationModels, check_audio, fbank_frame_mask

MIN_AUDIO_SECONDS = 3.0
MAX_AUDIO_SECONDS = 30.0  # 30 s of 16 kHz PCM_S16LE mono is under the 1 MiB request cap
MIN_SPEECH_SECONDS = 3.0
SILENT_DBFS = -60.0  # below this RMS level there is nothing to hear


class EnrolmentError(ValueError):
    """The audio cannot give a voiceprint; the message says why, for the person enrolling."""


@dataclass(frozen=True)
class Enrolment:
    vector: np.ndarray  # L2-normalised
    speech_seconds: float  # clean speech it was computed from


def enrol(models: DiarizationModels, config: DiarizationConfig, samples: np.ndarray) -> Enrolment:
    """The voiceprint of 16 kHz mono float32 `samples`; EnrolmentError says what is wrong."""
    samples = check_audio(samples, "enrolment audio")
    duration = len(samples) / SAMPLE_RATE
    if duration < MIN_AUDIO_SECONDS:
        raise EnrolmentError(f"audio too short: {duration:.1f} s; send {MIN_AUDIO_SECONDS:g} to "
                             f"{MAX_AUDIO_SECONDS:g} s of the person speaking")
    if duration > MAX_AUDIO_SECONDS:
        raise EnrolmentError(f"audio too long: {duration:.1f} s; at most {MAX_AUDIO_SECONDS:g} s")
    if level_dbfs(samples) < SILENT_DBFS:
        raise EnrolmentError(f"audio is silent (level {level_dbfs(samples):.0f} dBFS, below {SILENT_DBFS:g})")
    embeddings, speech = speech_embeddings(models, config, samples)
    if speech < MIN_SPEECH_SECONDS or not embeddings:
        found = "no speech found" if speech == 0 else f"only {speech:.1f} s of clear speech found"
        raise EnrolmentError(f"{found}; at least {MIN_SPEECH_SECONDS:g} s of one person speaking alone is needed")
    mean = np.mean(np.stack(embeddings), axis=0)
    return Enrolment(mean / max(float(np.linalg.norm(mean)), 1e-12), round(speech, 2))


def speech_embeddings(models: DiarizationModels, config: DiarizationConfig,
                      samples: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Embeddings of the main voice's clean speech in chunks (see the module), and its seconds."""
    segmenter, grid = models.segmenter, models.segmenter.grid
    window = int(round(segmenter.window * SAMPLE_RATE))
    max_frames = int(np.ceil(config.stream_embedding_duration / grid.step))
    hop = max(1, int(np.ceil(min(config.stream_reembed or 1e9, config.stream_embedding_duration) / grid.step)))
    min_frames = int(np.ceil(config.stream_min_embedding_duration / grid.step))
    embeddings: list[np.ndarray] = []
    speech = 0.0
    for start in range(0, len(samples), window):
        audio = samples[start:start + window]
        real = len(audio)
        if real < min_frames * grid.step * SAMPLE_RATE:
            break
        audio = np.concatenate([audio, np.zeros(window - real, np.float32)])
        activity = segmenter(audio)
        times = np.arange(len(activity)) * grid.step + grid.offset
        clean = (activity.sum(axis=1) == 1) & (times < real / SAMPLE_RATE)
        per_speaker = [(activity[:, k].astype(bool) & clean) for k in range(activity.shape[1])]
        main = max(per_speaker, key=lambda mask: int(mask.sum()))
        frames = np.flatnonzero(main)
        speech += len(frames) * grid.step
        for chunk in range(0, max(1, len(frames) - max_frames + hop), hop):
            picked = frames[chunk:chunk + max_frames]
            if len(picked) < min_frames:
                continue
            mask = np.zeros(len(activity), dtype=bool)
            mask[picked] = True
            embeddings.append(models.embedder.embed(audio, fbank_frame_mask(grid, mask, len(audio))))
    return embeddings, speech
