"""The streaming commit policy: which recognised words are final, which are still partial.

Pure: hypotheses (lists of words with absolute audio times) in, decisions out; no
audio, no model, no clock. The baseline is LocalAgreement-n (Macháček et al., 2023,
"Turning Whisper into Real-Time Transcription System"): a word becomes final once `n`
consecutive hypotheses agree on it and on everything before it. On top of that:
- `flush` finalises a whole hypothesis (at a VAD speech end nothing more will come);
- `force` finalises words up to a time (bounding the buffer under endless speech);
- `trim_point` says where the audio buffer may be cut: after the last final word
  that ends a sentence, so the next window starts on a clean boundary;
- `prompt` gives the final text before the buffer, to condition the next decode.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from appliance.subtitles.text import normalize
from appliance.subtitles.types import Decision, Word

_SENTENCE_END = (".", "?", "!", "…")


def _key(word: Word) -> str:
    return normalize(word.text)


class CommitPolicy:
    def __init__(self, agreement: int = 2, max_ngram: int = 5, overlap_tolerance: float = 0.1):
        if agreement < 1:
            raise ValueError("agreement must be >= 1")
        self.agreement = agreement
        self.max_ngram = max_ngram
        self.overlap_tolerance = overlap_tolerance
        self.final: list[Word] = []  # every final word of the stream, in order
        self._recent: deque[list[Word]] = deque(maxlen=max(agreement - 1, 1))  # uncommitted tails

    @property
    def final_end(self) -> float:
        return self.final[-1].end if self.final else 0.0

    def _new_part(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The part of a hypothesis not already final: later in time, minus a repeated n-gram."""
        new = [w for w in hypothesis if w.start > self.final_end - self.overlap_tolerance]
        if not new or not self.final or new[0].start - self.final_end > 1.0:
            return new
        # The window still holds audio of final words: drop a head that repeats the final tail.
        tail = [_key(w) for w in self.final[-self.max_ngram :]]
        head = [_key(w) for w in new[: self.max_ngram]]
        for n in range(min(len(tail), len(head)), 0, -1):
            if tail[-n:] == head[:n]:
                return new[n:]
        return new

    def update(self, hypothesis: Sequence[Word]) -> Decision:
        """A new hypothesis of the current buffer: commit what `agreement` hypotheses agree on."""
        new = self._new_part(hypothesis)
        agreed = len(new)
        if self.agreement > 1:
            if len(self._recent) < self.agreement - 1:
                agreed = 0
            for previous in self._recent:
                n = 0
                while n < min(agreed, len(previous)) and _key(previous[n]) == _key(new[n]):
                    n += 1
                agreed = n
        committed, tail = new[:agreed], new[agreed:]
        self.final.extend(committed)
        # Earlier tails lose their committed head so positions stay comparable.
        self._recent = deque(
            ([w for w in old if w.start > self.final_end - self.overlap_tolerance][len(committed) :]
             if committed else old for old in self._recent),
            maxlen=self._recent.maxlen,
        )
        self._recent.append(tail)
        return self._decision(committed, tail)

    def flush(self, hypothesis: Sequence[Word]) -> Decision:
        """Finalise everything new in `hypothesis` (speech ended, or the stream did)."""
        committed = self._new_part(hypothesis)
        self.final.extend(committed)
        self._recent.clear()
        return Decision(final=committed, partial=[], stability=1.0, closed=True)

    def force(self, hypothesis: Sequence[Word], until: float) -> Decision:
        """Finalise the new words of `hypothesis` that end by `until`; the rest stays partial."""
        new = self._new_part(hypothesis)
        committed = [w for w in new if w.end <= until]
        committed = new[: len(committed)] if committed == new[: len(committed)] else []
        self.final.extend(committed)
        tail = new[len(committed) :]
        self._recent.clear()
        self._recent.append(tail)
        return self._decision(committed, tail)

    def trim_point(self, buffer_start: float) -> float | None:
        """End of the last final word closing a sentence after `buffer_start`, if any."""
        for word in reversed(self.final):
            if word.end <= buffer_start:
                return None
            if word.text.endswith(_SENTENCE_END):
                return word.end
        return None

    def prompt(self, before: float, max_chars: int = 200) -> str:
        """Final text ending before `before` (audio time), at most `max_chars` long."""
        text = ""
        for word in reversed(self.final):
            if word.end > before:
                continue
            if len(text) + len(word.text) + 1 > max_chars:
                break
            text = f"{word.text} {text}" if text else word.text
        return text

    @staticmethod
    def _decision(committed: list[Word], tail: list[Word]) -> Decision:
        stability = sum(w.probability for w in tail) / len(tail) if tail else 1.0
        return Decision(final=list(committed), partial=list(tail), stability=round(stability, 3))
