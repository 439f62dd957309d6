"""The streaming commit policy: which recognised words are final, which are still partial.

Pure: hypotheses (lists of words with absolute audio times) in, decisions out; no
audio, no model, no clock. The baseline is LocalAgreement-n (Macháček et al., 2023,
"Turning Whisper into Real-Time Transcription System"): a word becomes final once `n`
consecutive hypotheses agree on it and on everything before it, and (with `context`)
it ends at least `context` seconds before the buffer end: a word at the very end of
the audio has not been heard with what follows it, and is misheard most. On top of that:
- a time guard (SimulStreaming's, without its attention stop): a word one hypothesis
  has ending at least `guard` seconds before the buffer end, with probability at least
  `min_probability`, is final without waiting for a second hypothesis;
- `flush` finalises a whole hypothesis (at a VAD speech end nothing more will come);
- `force` finalises words up to a time (bounding the buffer under endless speech);
- `trim_point` says where the audio buffer may be cut: in a pause after a final word,
  or after the last final word that ends a sentence; `stall_point`, after the last final
  word when the decoder has heard nothing past it for a while;
- `prompt` gives the final text before the buffer, to condition the next decode.

No word is final twice: the part of a hypothesis that is new is what lies after the
final words in time, minus a head that repeats final words (by text, against every
final word the buffer still holds, since re-decoded timestamps drift), minus any word
whose text and time match a final word. Only recent final words are kept (what the
prompt, this dedupe and trimming need); `final_count` counts them all.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from appliance.subtitles.text import normalize
from appliance.subtitles.types import Decision, Word

_SENTENCE_END = (".", "?", "!", "…")


def _key(word: Word) -> str:
    return normalize(word.text)


def same_word(a: Word, b: Word, min_overlap: float = 0.5) -> bool:
    """Same text at overlapping times: at least `min_overlap` of the shorter word (or touching, if instant)."""
    if _key(a) != _key(b):
        return False
    overlap = min(a.end, b.end) - max(a.start, b.start)
    shorter = min(a.end - a.start, b.end - b.start)
    return overlap > 0 and overlap >= min_overlap * shorter if shorter > 0 else overlap >= 0


class CommitPolicy:
    def __init__(self, agreement: int = 2, max_ngram: int = 5, overlap_tolerance: float = 0.1, *,
                 guard: float = 0.0, min_probability: float = 0.9, keep_seconds: float = 60.0,
                 deadline: float = 0.0, context: float = 0.0, echo_ngram: int = 3, drift: float = 0.25, min_duration: float = 0.04):
        if agreement < 1:
            raise ValueError("agreement must be >= 1")
        if guard < 0 or not 0 <= min_probability <= 1:
            raise ValueError("guard must be >= 0 and min_probability in [0, 1]")
        self.agreement = agreement
        self.max_ngram = max_ngram
        self.overlap_tolerance = overlap_tolerance
        self.guard = guard  # 0: agreement only
        self.min_probability = min_probability
        self.min_duration = min_duration  # shorter words are final by agreement only
        self.deadline = deadline  # 0: off; else words ending this long before the buffer end are final
        self.context = context  # agreement commits only words ending at least this long before the buffer end
        self.keep_seconds = keep_seconds  # final words older than this (audio time) are forgotten
        self.echo_ngram = echo_ngram  # a head repeating this many final words is dropped whatever the gap
        self.drift = drift  # how far a re-decoded word's start may move past its final copy's end
        self._final: deque[Word] = deque()  # the recent final words, in order
        self.final_count = 0  # every final word of the stream
        self._recent: deque[list[Word]] = deque(maxlen=max(agreement - 1, 1))  # uncommitted tails

    @property
    def final(self) -> list[Word]:
        """The recent final words (the last `keep_seconds` of audio), in order."""
        return list(self._final)

    @property
    def final_end(self) -> float:
        return self._final[-1].end if self._final else 0.0

    def _commit(self, words: list[Word]) -> None:
        self._final.extend(words)
        self.final_count += len(words)
        horizon = self.final_end - self.keep_seconds
        while len(self._final) > 1 and self._final[0].end < horizon:
            self._final.popleft()

    def _new_part(self, hypothesis: Sequence[Word], buffer_start: float | None = None) -> list[Word]:
        """The part of a hypothesis not already final."""
        end = self.final_end
        # By end time: Whisper's word starts stretch back over pauses (a first word after a cut
        # often starts at the cut), its ends hold; re-decoded final words are caught below.
        # A start stretched back over final audio is clamped: finals stay in time order.
        new = [w if w.start >= end else replace(w, start=end) for w in hypothesis if w.end > end]
        if not new or not self._final:
            return new
        # Final words the decode may have heard again: those the buffer holds, at least the last few.
        since = (buffer_start if buffer_start is not None else end) - self.overlap_tolerance
        held = [w for w in self._final if w.end > since] or list(self._final)[-self.max_ngram:]
        tail, head = [_key(w) for w in held], [_key(w) for w in new[: len(held)]]
        for n in range(min(len(tail), len(head)), 0, -1):
            # A head repeating the final tail is that tail heard again: its timestamps drifted (it
            # starts before the matching final word ends + `drift`), or the decoder echoed the
            # prompt (a long repeat, whatever its time). Later than that it is the word said again.
            drifted = new[0].start < held[-n].end + self.drift
            if tail[-n:] == head[:n] and (drifted or n >= self.echo_ngram):
                new = new[n:]
                break
        return [w for w in new if not any(same_word(w, f) for f in held)]

    def update(self, hypothesis: Sequence[Word], buffer_end: float | None = None,
               buffer_start: float | None = None) -> Decision:
        """A new hypothesis of the buffer: commit what `agreement` hypotheses agree on, or the time guard allows."""
        new = self._new_part(hypothesis, buffer_start)
        agreed = len(new)
        if self.agreement > 1:
            if len(self._recent) < self.agreement - 1:
                agreed = 0
            for previous in self._recent:
                n = 0
                while n < min(agreed, len(previous)) and _key(previous[n]) == _key(new[n]):
                    n += 1
                agreed = n
        if self.context and buffer_end is not None:  # agreement on words with too little audio after them waits
            agreed = next((i for i, w in enumerate(new[:agreed]) if w.end > buffer_end - self.context), agreed)
        if self.guard and buffer_end is not None:
            while agreed < len(new) and self._guarded(new[agreed], buffer_end):
                agreed += 1
        committed, tail = new[:agreed], new[agreed:]
        self._commit(committed)
        self._recent = deque((self._after(old, committed) for old in self._recent), maxlen=self._recent.maxlen)
        self._recent.append(tail)
        return self._decision(committed, tail)

    def _after(self, old: list[Word], committed: list[Word]) -> list[Word]:
        """An earlier tail without the words just committed, so positions stay comparable."""
        n = len(committed)
        if not n or [_key(w) for w in old[:n]] == [_key(w) for w in committed]:
            return old[n:]
        return [w for w in old if w.end > self.final_end]

    def _guarded(self, word: Word, buffer_end: float) -> bool:
        """The time guard: enough audio after the word, and the decoder sure of it.

        Past `deadline`, any word is (as a forced commit); before it, a word the alignment
        squeezed into no time is not (a hallucination sign): it waits for agreement.
        """
        if self.deadline and word.end <= buffer_end - self.deadline:
            return True
        return (word.end <= buffer_end - self.guard and word.probability >= self.min_probability
                and word.end - word.start >= self.min_duration)

    def flush(self, hypothesis: Sequence[Word], buffer_start: float | None = None) -> Decision:
        """Finalise everything new in `hypothesis` (speech ended, or the stream did)."""
        committed = self._new_part(hypothesis, buffer_start)
        self._commit(committed)
        self._recent.clear()
        return Decision(final=committed, partial=[], stability=1.0, closed=True)

    def force(self, hypothesis: Sequence[Word], until: float, buffer_start: float | None = None) -> Decision:
        """Finalise the new words of `hypothesis` that end by `until`; the rest stays partial."""
        new = self._new_part(hypothesis, buffer_start)
        n = 0
        while n < len(new) and new[n].end <= until:
            n += 1
        committed, tail = new[:n], new[n:]
        self._commit(committed)
        self._recent.clear()
        self._recent.append(tail)
        return self._decision(committed, tail)

    def trim_point(self, buffer_start: float, pause: float | None = None,
                   following: Sequence[Word] = ()) -> float | None:
        """Where the buffer may start: the latest cut inside the buffer after a final word.

        With `pause`, a final word followed by at least that much silence (before the next
        final word, or the first of `following`, the partial tail) is a cut point, cut in
        the middle of the pause; otherwise (or if none) the end of the last final word that
        closes a sentence. None: no cut point inside the buffer.
        """
        words = list(self._final)
        if pause is not None:
            nexts = words[1:] + list(following[:1])
            for word, after in reversed(list(zip(words, nexts))):
                if word.end <= buffer_start:
                    break
                if after.start - word.end >= pause:
                    return round(word.end + min(after.start - word.end, 2 * pause) / 2, 3)
        for word in reversed(words):
            if word.end <= buffer_start:
                return None
            if word.text.endswith(_SENTENCE_END):
                return word.end
        return None

    def stall_point(self, hypothesis: Sequence[Word], buffer_start: float, buffer_end: float,
                    stall: float) -> float | None:
        """Where the buffer may start again when the decoder has stopped hearing it: the end of the
        last final word, if no word of `hypothesis` ends past it (beyond timestamp drift) and it lies
        at least `stall` seconds before `buffer_end`, inside the buffer. None otherwise.

        Whisper can end its text early (an end-of-text after "but...") and repeat that from the
        same buffer start however much speech follows; a buffer starting after it is heard anew.
        """
        cut = self.final_end
        heard = max((w.end for w in hypothesis), default=cut)  # a re-decoded final word may drift a little
        if not self._final or cut <= buffer_start or heard > cut + self.drift or buffer_end - max(heard, cut) < stall:
            return None
        return cut

    def prompt(self, before: float, max_chars: int = 1000) -> str:
        """Final text ending before `before` (audio time), at most `max_chars` long (more than
        the recognizer's prompt takes: it keeps the last `asr.prompt_tokens` tokens)."""
        text = ""
        for word in reversed(self._final):
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
