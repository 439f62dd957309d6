"""Streaming diarization: one instance per session, fed 16 kHz chunks as they arrive.

Every `stream_step` seconds the last `stream_window` seconds are segmented. A
local speaker that continues one of the previous window keeps its session
speaker; a new one (or one due for a re-check) is embedded and matched to the
session's `SpeakerRegistry`. Each window votes on the frames it saw; a frame's
label becomes final once it is `label_latency` seconds old, so every final frame
was seen by several windows, and it is never revised.

The contract is AsrStream's, so the session pipeline drives both the same way: `push`
is cheap (queue the samples, on the event loop), `due` says a step's worth is queued,
`update` does the heavy work (segmentation, embeddings) synchronously in an executor
thread, and `finish` decides everything left at the end of the stream. No threads, no
clock. Only the models are shared between sessions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from appliance.audio.frames import RingBuffer
from appliance.config import SAMPLE_RATE, DiarizationConfig
from appliance.diarization.aggregation import decide, first_frame, to_turns, window_votes
from appliance.diarization.clustering import SpeakerRegistry, speaker_label
from appliance.diarization.models import DiarizationModels, check_audio, check_rate
from appliance.diarization.offline import embed_local_speakers
from appliance.diarization.voiceprints import Voice
from appliance.subtitles.types import SpeakerTurn


# Speech two local speakers of consecutive windows must share to be one voice:
# enough to rule out a few boundary frames, short enough to link a brief reply.
_LINK_MIN_SECONDS = 0.2


def link_local_speakers(previous: np.ndarray, current: np.ndarray, shift: int,
                        min_frames: int) -> list[tuple[int, int]]:
    """(current, previous) local speaker pairs that are the same voice.

    Consecutive windows overlap; their local speaker numbering is arbitrary, so
    pair them by the most frames active in both over the overlap (one-to-one),
    keeping pairs that share at least `min_frames`.
    """
    overlap = len(previous) - shift
    if overlap <= 0:
        return []
    agree = current[:overlap].T.astype(np.float32) @ previous[shift:shift + overlap].astype(np.float32)
    rows, cols = linear_sum_assignment(-agree)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if agree[r, c] >= min_frames]


@dataclass(frozen=True)
class StreamingUpdate:
    """What one `update` (or `finish`) learned.

    final:       turns that ended before `final_until`; each is reported exactly once.
    final_until: audio time (s) up to which every label is final.
    open:        turns whose start and speaker are final but which go on past
                 `final_until` (their `end` is `final_until` for now).
    tentative:   the current best guess after `final_until`; may still change.
    """

    final: list[SpeakerTurn] = field(default_factory=list)
    final_until: float = 0.0
    open: list[SpeakerTurn] = field(default_factory=list)
    tentative: list[SpeakerTurn] = field(default_factory=list)


class StreamingDiarizer:
    def __init__(self, models: DiarizationModels, config: DiarizationConfig):
        self._models = models
        self._config = config
        self._grid = models.segmenter.grid
        self._window = int(round(config.stream_window * SAMPLE_RATE))
        self._hop = int(round(config.stream_step * SAMPLE_RATE))
        self._registry = SpeakerRegistry(config.new_speaker_threshold, config.max_speakers)
        self._ring = RingBuffer(self._window)  # the last `window` samples
        self._processed = 0  # end sample of the last segmented window
        # Votes for frames not yet final, indexed from global frame `_base`.
        frames = int(np.ceil(config.stream_window / self._grid.step)) + int(np.ceil(config.stream_step / self._grid.step)) + 4
        self._base = 0
        self._score = np.zeros((frames, config.max_speakers), dtype=np.float32)
        self._count = np.zeros(frames, dtype=np.float32)
        self._cover = np.zeros(frames, dtype=np.float32)
        self._open: dict[int, float] = {}  # session speaker -> start of its ongoing turn
        self._finished = False
        self._pending: list[np.ndarray] = []  # pushed, not yet taken in by `update`
        self._pending_samples = 0
        # The last window's local activity, start sample, session speakers and
        # seconds since each was embedded: what the next window's speakers continue.
        self._previous: tuple[np.ndarray, int, list[int], list[float]] | None = None

    @property
    def speakers(self) -> tuple[str, ...]:
        return self._registry.labels

    def voices(self) -> list[Voice]:
        """The session's speakers as heard so far: label, centroid, embeddings behind it."""
        return [Voice(label, centroid, count) for label, centroid, count
                in zip(self._registry.labels, self._registry.centroids(), self._registry.counts)]

    @property
    def audio_time(self) -> float:
        return self._received / SAMPLE_RATE

    @property
    def _received(self) -> int:
        return self._ring.end  # samples pushed so far

    def push(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Queue the next chunk (any length); cheap. ValueError for audio of the wrong kind."""
        check_rate(sample_rate)
        samples = check_audio(samples, "chunk")
        if self._finished:
            raise RuntimeError("this stream was finished; start a new StreamingDiarizer for a new stream")
        self._pending.append(samples)
        self._pending_samples += len(samples)

    def due(self) -> bool:
        """Whether the queued audio completes a step (a window to segment)."""
        return self._received + self._pending_samples >= self._processed + self._hop

    def update(self) -> StreamingUpdate:
        """Take in the queued audio, segmenting each completed window; the turns that became final."""
        pending, self._pending, self._pending_samples = self._pending, [], 0
        samples = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        final: list[SpeakerTurn] = []
        while len(samples):
            take = min(len(samples), self._processed + self._hop - self._received)
            self._ring.append(samples[:take])
            samples = samples[take:]
            if self._received == self._processed + self._hop:
                self._step()
                final += self._finalize(self._received / SAMPLE_RATE - self._config.label_latency)
        return self._update(final)

    def finish(self) -> StreamingUpdate:
        """End of stream: take in what is queued, decide everything left, close open turns."""
        if self._finished:
            return self._update([])
        final: list[SpeakerTurn] = self.update().final if self._pending else []
        if self._received > self._processed or self._received == 0:
            self._step()
        final += self._finalize(self._received / SAMPLE_RATE)
        end = self._received / SAMPLE_RATE
        for s, start in sorted(self._open.items(), key=lambda item: item[1]):
            if end > start:
                final.append(SpeakerTurn(start=start, end=round(end, 3), speaker=speaker_label(s)))
        self._open.clear()
        self._finished = True
        return self._update(final)

    # ------------------------------------------------------------------ internals

    def _step(self) -> None:
        """Segment the window ending now, map its local speakers, add its votes."""
        end = self._received
        start = end - self._window
        audio = self._ring.read(max(0, start), end)
        if len(audio) < self._window:  # the stream's first seconds: left-pad with silence
            audio = np.concatenate([np.zeros(self._window - len(audio), dtype=np.float32), audio])
        activity = self._models.segmenter(audio)
        times = start / SAMPLE_RATE + np.arange(len(activity)) * self._grid.step + self._grid.offset
        valid = times >= 0  # left padding before the stream began
        activity = activity * valid[:, None].astype(activity.dtype)
        local_to_global = self._identify(audio, activity, valid, start)
        votes, heard = window_votes(activity, local_to_global, self._config.max_speakers)
        # A frame near the window's right edge was judged with little future context,
        # and every window that votes before a frame is final saw it within
        # `label_latency` of its edge: weight votes by the right context they had.
        right = (end / SAMPLE_RATE - times) / max(self._config.label_latency, self._config.stream_step)
        weight = np.clip(right, 0.05, 1.0).astype(np.float32)
        votes, heard = votes * weight[:, None], heard * weight

        j = first_frame(self._grid, start) - self._base
        lo = max(0, -j)  # frames already final (or before the stream) are not revisited
        hi = min(len(activity), len(self._count) - j)
        if hi > lo:
            self._score[j + lo:j + hi] += votes[lo:hi]
            self._count[j + lo:j + hi] += heard[lo:hi]
            self._cover[j + lo:j + hi] += weight[lo:hi]
        self._processed = end

    def _identify(self, audio: np.ndarray, activity: np.ndarray, valid: np.ndarray, start: int) -> list[int]:
        """Session speaker of each local speaker of this window (-1: not known yet).

        Embedding is the expensive part, so a local speaker that continues one of
        the previous window's (same frames active in the overlap) inherits its
        speaker and is re-embedded only every `stream_reembed` seconds, to catch
        a segmenter that swapped its local speakers.
        """
        cfg = self._config
        k_local = activity.shape[1]
        speakers, age = [-1] * k_local, [np.inf] * k_local
        if self._previous is not None:
            prev_activity, prev_start, prev_speakers, prev_age = self._previous
            for k, kp in link_local_speakers(prev_activity, activity,
                                             first_frame(self._grid, start) - first_frame(self._grid, prev_start),
                                             min_frames=int(np.ceil(_LINK_MIN_SECONDS / self._grid.step))):
                speakers[k], age[k] = prev_speakers[kp], prev_age[kp] + cfg.stream_step
        todo = [k for k in range(k_local) if speakers[k] < 0 or age[k] >= cfg.stream_reembed]
        embeddings = embed_local_speakers(self._models.embedder, self._grid, audio, activity, valid,
                                          cfg.stream_min_embedding_duration, only=todo,
                                          max_duration=cfg.stream_embedding_duration)
        fresh = [k for k in todo if embeddings[k] is not None]
        taken = {speakers[k] for k in range(k_local) if k not in fresh and speakers[k] >= 0}
        # Only a voice heard long enough may found a new session speaker.
        clean = activity.sum(axis=1) == 1
        strong = [float((activity[:, k].astype(bool) & clean).sum()) * self._grid.step >= cfg.stream_new_speaker_duration
                  for k in fresh]
        for k, s in zip(fresh, self._registry.assign([embeddings[k] for k in fresh], taken=taken, may_create=strong)):
            if s >= 0:
                speakers[k], age[k] = s, 0.0
        self._previous = (activity, start, speakers, age)
        return speakers

    def _frame_start(self, index: int) -> float:
        return max(0.0, index * self._grid.step + self._grid.offset - self._grid.step / 2)

    def _finalize(self, until: float) -> list[SpeakerTurn]:
        """Make final every frame centred at or before `until` seconds; return turns that closed."""
        last = int(np.floor((until - self._grid.offset) / self._grid.step))
        n = min(last + 1 - self._base, len(self._count))
        if n <= 0:
            return []
        active = decide(self._score[:n], self._count[:n], self._cover[:n])
        closed = []
        for s in range(active.shape[1]):
            column = np.concatenate([[s in self._open], active[:, s]]).astype(np.int8)
            for i in np.flatnonzero(np.diff(column)):
                t = round(self._frame_start(self._base + int(i)), 3)
                if column[i + 1]:
                    self._open[s] = t
                else:
                    closed.append(SpeakerTurn(start=self._open.pop(s), end=t, speaker=speaker_label(s)))
        # Slide the vote buffers: the finalized frames leave, empty ones enter.
        for buf in (self._score, self._count, self._cover):
            buf[:-n] = buf[n:].copy()
            buf[-n:] = 0
        self._base += n
        return sorted(closed, key=lambda t: t.start)

    def _update(self, final: list[SpeakerTurn]) -> StreamingUpdate:
        final_until = round(self._frame_start(self._base), 3) if self._base else 0.0
        if self._finished:
            final_until = self._received / SAMPLE_RATE
        open_turns = [SpeakerTurn(start=t, end=final_until, speaker=speaker_label(s))
                      for s, t in sorted(self._open.items(), key=lambda item: item[1])]
        seen = self._cover > 0
        tentative = []
        if seen.any() and not self._finished:
            n = int(np.flatnonzero(seen)[-1]) + 1
            tentative = to_turns(decide(self._score[:n], self._count[:n], self._cover[:n]),
                                 [speaker_label(i) for i in range(self._config.max_speakers)], self._grid,
                                 first=self._base, end=self._received / SAMPLE_RATE)
        return StreamingUpdate(final=final, final_until=final_until, open=open_turns, tentative=tentative)
