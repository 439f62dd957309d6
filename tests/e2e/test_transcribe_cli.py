"""`appliance transcribe` as a user runs it: the real CLI, the bundled model, real speech."""
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import srt
import webvtt

from appliance.audio.decode import load_audio
from appliance.evaluation import read_reference, word_error_rate

MAX_WER = 0.25


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outputs(sample_dir: Path, tmp_path_factory) -> dict[str, str]:
    """The sample conversation transcribed once in every format (stdout, and -o for json)."""
    wav = sample_dir / "sample.wav"
    result = {}
    for fmt in ("vtt", "srt", "txt"):
        done = run("transcribe", str(wav), "--format", fmt)
        assert done.returncode == 0, done.stderr
        result[fmt] = done.stdout
    out = tmp_path_factory.mktemp("json") / "sample.json"
    done = run("transcribe", str(wav), "--format", "json", "-o", str(out))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    result["json"] = out.read_text()
    return result


@pytest.fixture(scope="module")
def reference(sample_dir: Path) -> str:
    return read_reference(sample_dir / "sample.stm")


def assert_cue_rules(cues: list[tuple[float, float, list[str]]]) -> None:
    assert cues, "no cues"
    for index, (start, end, lines) in enumerate(cues):
        assert 1 <= len(lines) <= 2 and all(0 < len(line) <= 42 for line in lines), lines
        assert 0 < end - start <= 7.0 + 1e-6
        next_start = cues[index + 1][0] if index + 1 < len(cues) else float("inf")
        assert end <= next_start + 1e-6, "cues overlap"
        assert end - start >= 1.0 - 1e-6 or end >= next_start - 1e-6, "cue shorter than 1 s without reason"


def test_webvtt_parses_and_meets_wer(outputs, reference):
    captions = webvtt.from_string(outputs["vtt"])
    assert_cue_rules([(c.start_in_seconds, c.end_in_seconds, c.text.splitlines()) for c in captions])
    assert word_error_rate(reference, " ".join(c.text for c in captions)) <= MAX_WER


def test_srt_parses_and_meets_wer(outputs, reference):
    subtitles = list(srt.parse(outputs["srt"]))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    cues = [(s.start.total_seconds(), s.end.total_seconds(), s.content.splitlines()) for s in subtitles]
    assert_cue_rules(cues)
    assert word_error_rate(reference, " ".join(s.content for s in subtitles)) <= MAX_WER


def test_json_schema_and_words(outputs, reference):
    doc = json.loads(outputs["json"])
    assert doc["language"] == "en" and doc["duration"] == pytest.approx(30.0, abs=0.05)
    segments = doc["segments"]
    for seg in segments:
        assert set(seg) == {"start", "end", "speaker", "text", "words"} and seg["speaker"] is None
        assert seg["text"] == " ".join(w["text"] for w in seg["words"])
        for w in seg["words"]:
            assert set(w) == {"start", "end", "text", "probability"}
            assert seg["start"] <= w["start"] <= w["end"] <= seg["end"] + 1e-6
            assert 0.0 <= w["probability"] <= 1.0
    starts = [w["start"] for seg in segments for w in seg["words"]]
    assert starts == sorted(starts)
    assert word_error_rate(reference, " ".join(s["text"] for s in segments)) <= MAX_WER


def test_plain_text_meets_wer(outputs, reference):
    assert word_error_rate(reference, outputs["txt"]) <= MAX_WER


def _encode(samples: np.ndarray, path: Path, codec: str, container: str | None = None, video: bool = False) -> None:
    """Write 16 kHz mono samples with PyAV (video=True adds a black picture track)."""
    pcm = (samples * 32767).astype(np.int16)
    with av.open(str(path), "w", format=container) as out:
        picture = out.add_stream("mpeg4", rate=5) if video else None
        if picture:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=16000)
        sound.layout = "mono"
        resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono", rate=16000)
        for i in range(0, len(pcm), 1600):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + 1600], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            for converted in resampler.resample(frame):
                out.mux(sound.encode(converted))
            if picture and i % 16000 == 0:
                out.mux(picture.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        out.mux(sound.encode(None))
        if picture:
            out.mux(picture.encode(None))


@pytest.mark.parametrize(
    "name,codec,container,video",
    [("s.flac", "flac", None, False), ("s.mp3", "libmp3lame", None, False),
     ("s.m4a", "aac", "mp4", False), ("s.mp4", "aac", "mp4", True)],
)
def test_compressed_and_video_files_decode(sample_dir, tmp_path, name, codec, container, video):
    original = load_audio(sample_dir / "sample.wav")
    path = tmp_path / name
    _encode(original, path, codec, container, video)
    decoded = load_audio(path)
    assert abs(len(decoded) - len(original)) < 16000 * 0.1


def test_flac_transcribes_like_wav(sample_dir, tmp_path, reference):
    path = tmp_path / "s.flac"
    _encode(load_audio(sample_dir / "sample.wav"), path, "flac")
    done = run("transcribe", str(path), "--format", "txt")
    assert done.returncode == 0, done.stderr
    assert word_error_rate(reference, done.stdout) <= MAX_WER


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "notes.txt").write_text("this is not audio\n")
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    import wave

    with wave.open(str(tmp / "zero.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    with av.open(str(tmp / "silent-video.mp4"), "w") as out:
        picture = out.add_stream("mpeg4", rate=5)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            out.mux(picture.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        out.mux(picture.encode(None))
    return {
        "missing": (tmp / "nope.wav", "no such file"),
        "directory": (tmp, "is a directory"),
        "text": (tmp / "notes.txt", "cannot decode audio"),
        "random bytes": (tmp / "noise.bin", "cannot decode audio"),
        "empty": (tmp / "empty.wav", "file is empty"),
        "zero-length audio": (tmp / "zero.wav", "contains no audio samples"),
        "video without sound": (tmp / "silent-video.mp4", "no audio stream"),
    }


def test_bad_inputs_give_one_clear_line_and_exit_2(tmp_path):
    for case, (path, message) in _bad_inputs(tmp_path).items():
        done = run("transcribe", str(path))
        assert done.returncode == 2, (case, done.stderr)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (case, done.stderr)
        assert done.stderr.startswith("appliance: error: ") and message in done.stderr, (case, done.stderr)
        assert str(path) in done.stderr


def test_unknown_format_is_an_argparse_error(sample_dir):
    done = run("transcribe", str(sample_dir / "sample.wav"), "--format", "docx")
    assert done.returncode == 2 and "invalid choice: 'docx'" in done.stderr


def test_operator_model_directory_is_used_and_bad_one_refused(sample_dir, tmp_path, reference):
    import shutil

    from appliance.inference.manifest import load_manifest

    provisioned = tmp_path / "provisioned-model"
    shutil.copytree(load_manifest()["whisper-tiny.en"].directory(), provisioned)
    done = run("transcribe", str(sample_dir / "sample.wav"), "--model", str(provisioned),
               "--language", "en", "--format", "txt")
    assert done.returncode == 0, done.stderr
    assert word_error_rate(reference, done.stdout) <= MAX_WER
    done = run("transcribe", str(sample_dir / "sample.wav"), "--model", str(tmp_path))
    assert done.returncode == 2 and "not a CTranslate2 Whisper model directory" in done.stderr
