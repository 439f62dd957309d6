"""Per-stream streaming ASR state: audio buffer, VAD, commit policy, on a shared recognizer.

`push` is cheap (copy into the ring buffer, run the VAD) and runs on the event loop;
`update` is the heavy step (one Whisper decode) and runs in an executor. There is at
most one update in flight per stream, and each update decodes all audio received so
far: when compute falls behind, updates merge instead of queueing, so the backlog
is bounded by the buffer, never by time.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from appliance.asr.policy import CommitPolicy
from appliance.subtitles.types import Decision
from appliance.asr.recognizer import Recognizer
from appliance.audio.frames import RingBuffer
from appliance.config import SAMPLE_RATE, StreamingConfig
from appliance.subtitles.types import Word
from appliance.vad.silero import VadStream


@dataclass
class StreamStats:
    updates: int = 0  # decodes run
    merged_updates: int = 0  # steps folded into a later decode because compute was behind
    dropped_samples: int = 0  # audio that fell out of the ring before it could be decoded


def _shift(words: list[Word], offset: float) -> list[Word]:
    return [replace(w, start=round(w.start + offset, 3), end=round(w.end + offset, 3)) for w in words]


class AsrStream:
    def __init__(self, recognizer: Recognizer, vad: VadStream, config: StreamingConfig | None = None):
        self.config = config or StreamingConfig()
        self.recognizer = recognizer
        self.vad = vad
        self.policy = CommitPolicy(self.config.agreement)
        self.ring = RingBuffer(int((self.config.max_buffer + 10) * SAMPLE_RATE))
        self.stats = StreamStats()
        self._start = 0  # first sample of the decode buffer
        self._decoded_to = 0  # ring end at the last decode
        self._flush_at: int | None = None  # a speech region ended here: finalise up to it
        self._speaking = False
        self._settling = False  # vad_flush off: speech ended, decoding on until nothing is pending
        self._partial: list[Word] = []

    @property
    def backlog_seconds(self) -> float:
        """Audio received since the last decode began (what the next decode must catch up on)."""
        return (self.ring.end - self._decoded_to) / SAMPLE_RATE

    @property
    def settled_seconds(self) -> float:
        """Audio up to which every word is final: all received audio when nothing is pending,
        else up to the decode buffer's start (words before it were committed)."""
        pending = self._speaking or self._settling or self._flush_at is not None or bool(self._partial)
        return (self._start if pending else self.ring.end) / SAMPLE_RATE

    @property
    def buffer_seconds(self) -> float:
        return (self.ring.end - self._start) / SAMPLE_RATE

    def push(self, samples: np.ndarray) -> None:
        self.ring.append(samples)
        for event in self.vad.push(samples):
            at = int(round(event.time * SAMPLE_RATE))
            if event.kind == "start":
                self._speaking = True
                self._start = max(self._start, min(at, self.ring.end))
            else:
                self._speaking = False
                if self.config.vad_flush:
                    self._flush_at = at
                else:
                    self._settling = True
        if not self._speaking and self._flush_at is None and not self._partial and not self._settling:
            # Nothing pending: keep only a short tail so speech onsets are not clipped.
            self._start = max(self._start, self.ring.end - int(self.config.idle_keep * SAMPLE_RATE))
            self._decoded_to = self.ring.end  # silence is not a decode falling behind

    def due(self) -> bool:
        """Whether `update` has work: a region to finalise, or `step` of new speech.

        Without the VAD flush, the words of a region that ended settle only by agreement,
        so decoding goes on, a step at a time, until a decode leaves nothing pending.
        """
        if self._flush_at is not None:
            return True
        new = (self.ring.end - self._decoded_to) / SAMPLE_RATE
        return (self._speaking or self._settling) and new >= self.config.step

    def update(self) -> Decision:
        """Decode the buffer once and apply the commit policy (run in an executor)."""
        step = int(self.config.step * SAMPLE_RATE)
        self.stats.merged_updates += max(0, (self.ring.end - self._decoded_to) // step - 1)
        if self._flush_at is not None:
            end, self._flush_at = self._flush_at, None
            decision = self.policy.flush(self._decode(max(end, self._start)))
            self._start = max(self._start, end, int(self.policy.final_end * SAMPLE_RATE))
        else:
            decision = self._update_speaking()
            self._settling = self._settling and bool(decision.partial)
        self._partial = decision.partial
        return decision

    def finish(self) -> Decision:
        """End of stream: finalise whatever speech is still pending."""
        pending = self._speaking or self._settling or self._flush_at is not None or bool(self._partial)
        self.vad.flush()
        self._flush_at, self._speaking, self._settling, self._partial = None, False, False, []
        return self.policy.flush(self._decode(self.ring.end)) if pending else Decision(closed=True)

    def _update_speaking(self) -> Decision:
        config = self.config
        hypothesis = self._decode(self.ring.end)
        decision = self.policy.update(hypothesis)
        end_s = self.ring.end / SAMPLE_RATE
        if self.buffer_seconds > config.max_buffer:
            forced = self.policy.force(hypothesis, until=end_s - config.force_margin)
            decision = Decision(decision.final + forced.final, forced.partial, forced.stability)
            self._start = max(self._start, int(self.policy.final_end * SAMPLE_RATE))
            if self.buffer_seconds > config.max_buffer:  # nothing recognisable to commit: let it go
                self._start = self.ring.end - int(config.force_margin * SAMPLE_RATE)
        elif self.buffer_seconds > config.trim_after:
            cut = self.policy.trim_point(self._start / SAMPLE_RATE)
            if cut is not None:
                self._start = int(cut * SAMPLE_RATE)
        return decision

    def _decode(self, end: int) -> list[Word]:
        if self._start < self.ring.start:  # compute fell so far behind that audio left the ring
            self.stats.dropped_samples += self.ring.start - self._start
            self._start = self.ring.start
        self.stats.updates += 1
        self._decoded_to = self.ring.end
        if end - self._start < SAMPLE_RATE // 10:
            return []
        offset = self._start / SAMPLE_RATE
        words = self.recognizer.transcribe(self.ring.read(self._start, end), self.policy.prompt(before=offset))
        return _shift(words, offset)
