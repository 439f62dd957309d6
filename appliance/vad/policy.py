"""Speech start/end decisions from per-frame speech probabilities (pure logic).

The streaming counterpart of faster-whisper's `get_speech_timestamps`: the same
hysteresis and minimum-duration rules, but decided frame by frame so a live
stream gets its events as soon as they are certain. No model, no I/O, no clock:
probabilities in, events out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from appliance.config import SAMPLE_RATE, VadConfig

FRAME_SAMPLES = 512  # Silero's frame at 16 kHz: 32 ms


@dataclass(frozen=True)
class VadEvent:
    """Speech opens ("start") or closes ("end") at `time`, in seconds of session audio."""

    kind: Literal["start", "end"]
    time: float


class VadPolicy:
    """Turns one speech probability per frame into start/end events.

    Frame i covers samples [i * frame_samples, (i + 1) * frame_samples).
    A region opens at the first frame >= threshold. It pauses at a frame below
    the negative threshold and only resumes at a frame >= threshold again; a
    pause that lasts `min_silence_s` closes it at the pause's start. A start is
    announced only once the region has `min_speech_s` of speech, so blips never
    produce events; its time is therefore in the past. Both edges are padded by
    `speech_pad_s`, clamped so a start never precedes the previous end and an
    end never lies beyond the audio seen.
    """

    def __init__(
        self,
        config: VadConfig,
        frame_samples: int = FRAME_SAMPLES,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if frame_samples <= 0 or sample_rate <= 0:
            raise ValueError("frame_samples and sample_rate must be positive")
        self._threshold = config.threshold
        self._neg_threshold = config.resolved_neg_threshold
        self._min_speech = round(config.min_speech_s * sample_rate)
        self._min_silence = round(config.min_silence_s * sample_rate)
        self._pad = round(config.speech_pad_s * sample_rate)
        self._frame_samples = frame_samples
        self._sample_rate = sample_rate

        self._frames = 0
        self._start: int | None = None  # first sample of the open candidate region
        self._confirmed = False  # its start event has been emitted
        self._silence_from: int | None = None  # first sample of a pause inside the region
        self._last_end = 0  # sample of the last emitted end; the next start may not precede it
        self._finished = False

    @property
    def in_speech(self) -> bool:
        """True between an emitted start and its end (a pause not yet long enough stays inside)."""
        return self._confirmed

    @property
    def pausing(self) -> bool:
        """Inside a speech region, in a pause that may yet close it."""
        return self._confirmed and self._silence_from is not None

    @property
    def frames(self) -> int:
        """Number of probabilities consumed."""
        return self._frames

    def push(self, probability: float) -> list[VadEvent]:
        """Consume the next frame's probability; return the events it decides."""
        if self._finished:
            raise RuntimeError("VadPolicy.push after flush: the stream has ended")
        frame_start = self._frames * self._frame_samples
        frame_end = frame_start + self._frame_samples
        self._frames += 1
        events: list[VadEvent] = []

        if self._start is None:
            if probability >= self._threshold:
                self._start = frame_start
        elif probability >= self._threshold:
            self._silence_from = None
        elif probability < self._neg_threshold and self._silence_from is None:
            self._silence_from = frame_start
        # Between the two thresholds nothing changes: speech stays speech, a pause stays a pause.

        if self._silence_from is not None and frame_end - self._silence_from >= self._min_silence:
            events += self._close(self._silence_from, limit=frame_end)
        elif (
            self._start is not None
            and not self._confirmed
            and self._silence_from is None
            and frame_end - self._start >= self._min_speech
        ):
            self._confirmed = True
            start = max(self._start - self._pad, self._last_end)
            events.append(VadEvent("start", start / self._sample_rate))
        return events

    def extend(self, probabilities: Iterable[float]) -> list[VadEvent]:
        """Consume several frames in order."""
        events: list[VadEvent] = []
        for probability in probabilities:
            events += self.push(probability)
        return events

    def flush(self, end_sample: int | None = None) -> list[VadEvent]:
        """End of stream: close an open speech region. No push may follow.

        `end_sample` is where the audio really ends when the last frame was
        zero-padded (default: the end of the last frame).
        """
        if self._finished:
            return []
        limit = self._frames * self._frame_samples
        if end_sample is not None:
            if not 0 <= end_sample <= limit:
                raise ValueError(f"end_sample {end_sample} outside the {limit} samples pushed")
            limit = end_sample
        self._finished = True
        if self._start is None:
            return []
        stop = self._silence_from if self._silence_from is not None else limit
        return self._close(min(stop, limit), limit=limit)

    def _close(self, stop: int, limit: int) -> list[VadEvent]:
        """Close the region at sample `stop`; an unconfirmed (too short) one leaves no trace."""
        events: list[VadEvent] = []
        if self._confirmed:
            end = min(stop + self._pad, limit)
            self._last_end = end
            events.append(VadEvent("end", end / self._sample_rate))
        self._start = None
        self._silence_from = None
        self._confirmed = False
        return events
