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

from appliance.asr.hypothesis import guard_hypothesis
from appliance.asr.policy import CommitPolicy
from appliance.subtitles.types import Decision
from appliance.asr.overload import RoomLoad
from appliance.asr.language import LanguagePolicy
from appliance.asr.recognizer import Recognizer
from appliance.audio.frames import RingBuffer
from appliance.config import AUTO, SAMPLE_RATE, StreamingConfig
from appliance.subtitles.types import Word
from appliance.vad.silero import VadStream


@dataclass
class StreamStats:
    updates: int = 0  # decodes run
    merged_updates: int = 0  # steps folded into a later decode because compute was behind
    dropped_samples: int = 0  # audio that fell out of the ring before it could be decoded
    language_changes: int = 0  # an "auto" room's detected language changed after its first decision
    flushes: int = 0  # decodes finalising a region (VAD speech end, end of stream)
    forced: int = 0  # decodes that forced words final (buffer beyond max_buffer)
    trims: int = 0  # buffer cuts at a final word (pause or sentence end)
    stalls: int = 0  # buffer cuts after the last final word: the decoder heard nothing past it
    reused_flushes: int = 0  # flushes that took the full-beam decode made in the region's last pause


def _shift(words: list[Word], offset: float) -> list[Word]:
    return [replace(w, start=round(w.start + offset, 3), end=round(w.end + offset, 3)) for w in words]


class AsrStream:
    """One room's streaming recognition. `language` fixed (or None with no `detector`: the
    recognizer's default), or decided by `detector` from the room's speech; `task` transcribe
    or translate."""

    def __init__(self, recognizer: Recognizer, vad: VadStream, config: StreamingConfig | None = None, *,
                 language: str | None = None, task: str | None = None, detector: LanguagePolicy | None = None,
                 load: RoomLoad | None = None):
        self.config = config or StreamingConfig()
        self.recognizer = recognizer
        self.vad = vad
        self.language = language
        self.task = task
        self.detector = detector
        self.load = load  # None: a decoder of its own, never degraded
        self._speech_samples = 0  # heard inside VAD speech regions: what the language detector waits for
        c = self.config
        self.policy = CommitPolicy(c.agreement, guard=c.commit_guard, min_probability=c.commit_probability,
                                   deadline=c.commit_deadline, context=c.commit_context)
        self.ring = RingBuffer(int((self.config.max_buffer + 10) * SAMPLE_RATE))
        self.stats = StreamStats()
        self._start = 0  # first sample of the decode buffer
        self._decoded_to = 0  # ring end at the last decode
        self._flush_at: int | None = None  # a speech region ended here: finalise up to it
        self._speaking = False
        self._settling = False  # vad_flush off: speech ended, decoding on until nothing is pending
        self._partial: list[Word] = []
        # The last decode, if it ran at the full beam in a pause: (buffer start, end, words).
        self._pause_decode: tuple[int, int, list[Word]] | None = None

    @classmethod
    def for_room(cls, recognizer: Recognizer, vad: VadStream, config: StreamingConfig | None,
                 language: str | None, task: str | None, load: RoomLoad | None = None) -> AsrStream:
        """A room's stream: `language` fixed, or (None / "auto" on a multilingual model) detected by a
        LanguagePolicy; an English-only model's rooms are English. `load`: the room's share of a
        shared decode scheduler, whose overload policy may lengthen its step or stop its partials."""
        if not recognizer.multilingual:
            return cls(recognizer, vad, config, language="en", task=task, load=load)
        fixed = None if language == AUTO else language
        return cls(recognizer, vad, config, language=fixed, task=task,
                   detector=LanguagePolicy() if fixed is None else None, load=load)

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
    def region_ended(self) -> bool:
        """A speech region ended and is not finalised yet: `update` must run before more audio is
        pushed, or a region starting next would move the buffer past it."""
        return self._flush_at is not None

    @property
    def buffer_seconds(self) -> float:
        return (self.ring.end - self._start) / SAMPLE_RATE

    def push(self, samples: np.ndarray) -> None:
        self.ring.append(samples)
        if self._speaking:
            self._speech_samples += len(samples)
        for event in self.vad.push(samples):
            at = int(round(event.time * SAMPLE_RATE))
            if event.kind == "start":
                self._speaking = True
                # A little audio before the onset: Whisper mishears words that start the buffer cold.
                lead = int(self.config.lead_in * SAMPLE_RATE)
                self._start = max(self._start, min(at, self.ring.end) - lead)
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
        if self.language is None and self.detector is not None and not self.detector.due(self._speech_samples / SAMPLE_RATE):
            return False  # an "auto" room waits for enough speech to tell its language: a guess on 1 s mishears
        new = (self.ring.end - self._decoded_to) / SAMPLE_RATE
        # The first decodes of a region wait for `first_decode` of speech: on less, Whisper mishears.
        heard = self.buffer_seconds >= self.config.first_decode or self._settling
        step = self.config.step * (self.load.step_factor if self.load is not None else 1.0)
        return (self._speaking or self._settling) and new >= step and heard

    def update(self) -> Decision:
        """Decode the buffer once and apply the commit policy (run in an executor)."""
        step = int(self.config.step * SAMPLE_RATE)
        self.stats.merged_updates += max(0, (self.ring.end - self._decoded_to) // step - 1)
        if self._flush_at is not None:
            end, self._flush_at = self._flush_at, None
            self.stats.flushes += 1
            decision = self.policy.flush(self._flush_words(end), self._start_s)
            self._start = max(self._start, end, int(self.policy.final_end * SAMPLE_RATE))
        else:
            decision = self._update_speaking()
            self._settling = self._settling and bool(decision.partial)
        self._partial = decision.partial
        if self.load is not None and not self.load.partials:  # overloaded: the tail is kept, not published
            return replace(decision, partial=[], stability=1.0)
        return decision

    def finish(self) -> Decision:
        """End of stream: finalise whatever speech is still pending."""
        pending = self._speaking or self._settling or self._flush_at is not None or bool(self._partial)
        self.vad.flush()
        self._flush_at, self._speaking, self._settling, self._partial = None, False, False, []
        if not pending:
            return Decision(closed=True)
        self.stats.flushes += 1
        return self.policy.flush(self._decode(self.ring.end, final=True), self._start_s)

    @property
    def _start_s(self) -> float:
        return self._start / SAMPLE_RATE

    def _flush_words(self, end: int) -> list[Word]:
        """The words that finalise a region ending at sample `end`: the full-beam decode made in
        its last pause when that heard all of it from the buffer's start (or before), else a new one."""
        cached, self._pause_decode = self._pause_decode, None
        if cached is not None:
            start, decoded_to, words = cached
            if start <= self._start and decoded_to >= end:
                self.stats.reused_flushes += 1
                return words
        return self._decode(max(end, self._start), final=True)

    def _update_speaking(self) -> Decision:
        config = self.config
        forcing = self.buffer_seconds > config.max_buffer
        pausing = config.vad_flush and config.pause_flush and self.vad.pausing
        start = self._start_s
        hypothesis = self._decode(self.ring.end, final=forcing or pausing)
        self._pause_decode = (self._start, self.ring.end, hypothesis) if pausing and not forcing else None
        end_s = self.ring.end / SAMPLE_RATE
        decision = self.policy.update(hypothesis, buffer_end=end_s, buffer_start=start)
        if forcing:
            self.stats.forced += 1
            forced = self.policy.force(hypothesis, until=end_s - config.force_margin, buffer_start=start)
            decision = Decision(decision.final + forced.final, forced.partial, forced.stability)
            self._start = max(self._start, int(self.policy.final_end * SAMPLE_RATE))
            if self.buffer_seconds > config.max_buffer:  # nothing recognisable to commit: let it go
                self._start = self.ring.end - int(config.force_margin * SAMPLE_RATE)
        elif config.stall_after and (cut := self.policy.stall_point(
                hypothesis, start, end_s, config.stall_after)) is not None:
            self._start = int(cut * SAMPLE_RATE)
            self.stats.stalls += 1
        elif self.buffer_seconds > config.trim_after:
            cut = self.policy.trim_point(start, pause=config.trim_pause or None, following=decision.partial)
            if cut is not None and int(cut * SAMPLE_RATE) > self._start:
                self._start = int(cut * SAMPLE_RATE)
                self.stats.trims += 1
        return decision

    def _decode(self, end: int, final: bool = False) -> list[Word]:
        """The buffer's words in session time; `final`: words become final from it (full beam)."""
        if self._start < self.ring.start:  # compute fell so far behind that audio left the ring
            self.stats.dropped_samples += self.ring.start - self._start
            self._start = self.ring.start
        self.stats.updates += 1
        self._decoded_to = self.ring.end
        if end - self._start < SAMPLE_RATE // 10:
            return []
        offset = self._start / SAMPLE_RATE
        beam = None if final or not self.config.tentative_beam else self.config.tentative_beam
        samples = self.ring.read(self._start, end)
        speech = self._speech_samples / SAMPLE_RATE
        if self.detector is not None and (self.detector.due(speech) or self.language is None):
            self.language = self.detector.observe(self.recognizer.detect_language(samples), speech)
            self.stats.language_changes = self.detector.changes
        words = self.recognizer.transcribe(samples, self.policy.prompt(before=offset), beam_size=beam,
                                           language=self.language, task=self.task)
        words = guard_hypothesis(words, self.config.max_word_rate)
        return _shift(words, offset)
