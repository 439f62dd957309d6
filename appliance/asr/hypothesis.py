"""The hypothesis loop guard: repeated word runs the audio cannot hold are collapsed.

Pure. Whisper sometimes loops inside a decode ("words words words words words" where
four were said; "so I don't hear that. I don't hear that." with the copy squeezed into
a fraction of a second at the buffer end). A run of one word repeated at least
`min_repeats` times, or of a longer n-gram repeated at least twice, keeps only as many
repeats as time allows: a copy stays if the time since the previous copy ended holds its
words at `max_rate` words per second, so a real "no, no, no" or "you know, you know"
said at speaking pace stays.

A run of `squeezed_run` or more consecutive words that each last under 20 ms is text
the decoder emitted that the alignment could not place in the audio (a hallucinated
copy squeezed between real words): it is dropped.
"""
from __future__ import annotations

from collections.abc import Sequence

from appliance.subtitles.text import normalize
from appliance.subtitles.types import Word


def collapse_repeats(words: Sequence[Word], max_rate: float, min_repeats: int = 3,
                     max_ngram: int = 8) -> list[Word]:
    if max_rate <= 0 or len(words) < min_repeats:
        return list(words)
    keys = [normalize(w.text) for w in words]
    out: list[Word] = []
    i = 0
    while i < len(words):
        best_n, best_k = 0, 0
        for n in range(1, max_ngram + 1):
            gram = keys[i : i + n]
            if len(gram) < n or not any(gram):
                break
            k = 1
            while keys[i + k * n : i + (k + 1) * n] == gram:
                k += 1
            if k >= (min_repeats if n == 1 else 2) and k * n > best_k * best_n:
                best_n, best_k = n, k
        if not best_n:
            out.append(words[i])
            i += 1
            continue
        # The first copy stays; a later copy stays if the time since the previous copy holds it.
        copies = [words[i + j * best_n : i + (j + 1) * best_n] for j in range(best_k)]
        out.extend(copies[0])
        previous_end = copies[0][-1].end
        for copy in copies[1:]:
            if best_n <= (copy[-1].end - previous_end) * max_rate + 1e-9:
                out.extend(copy)
                previous_end = copy[-1].end
        i += best_n * best_k
    return out


SQUEEZED = 0.02  # seconds: a word shorter than this got no audio of its own in the alignment


def drop_squeezed(words: Sequence[Word], squeezed_run: int = 3) -> list[Word]:
    out: list[Word] = []
    run: list[Word] = []
    for word in [*words, None]:
        if word is not None and word.end - word.start < SQUEEZED:
            run.append(word)
            continue
        if len(run) < squeezed_run:
            out.extend(run)
        run = []
        if word is not None:
            out.append(word)
    return out


def guard_hypothesis(words: Sequence[Word], max_rate: float) -> list[Word]:
    """Both guards (off when `max_rate` is 0): repeats collapsed (a squeezed copy of a phrase goes
    whole), then squeezed runs dropped."""
    if max_rate <= 0:
        return list(words)
    return drop_squeezed(collapse_repeats(words, max_rate))
