"""`appliance transcribe --diarize` and `--format rttm` on the real two-speaker recording."""
import json
import subprocess
import sys
from pathlib import Path

from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=300)


def rttm(text: str) -> Annotation:
    result = Annotation()
    for row in (line.split() for line in text.splitlines() if line.strip()):
        assert row[0] == "SPEAKER" and len(row) == 10, row
        result[Segment(float(row[3]), float(row[3]) + float(row[4]))] = row[7]
    return result


def test_rttm_output_is_scored_against_the_reference(sample_dir: Path):
    done = run("transcribe", str(sample_dir / "sample.wav"), "--format", "rttm")
    assert done.returncode == 0, done.stderr
    assert all(line.split()[1] == "sample" for line in done.stdout.splitlines())
    hypothesis = rttm(done.stdout)
    reference = rttm((sample_dir / "sample.rttm").read_text())
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    assert metric(reference, hypothesis, uem=Segment(0, 30)) <= 0.12


def test_diarized_json_has_speakers_on_segments_and_words(sample_dir: Path, tmp_path: Path):
    out = tmp_path / "sample.json"
    done = run("transcribe", str(sample_dir / "sample.wav"), "--diarize", "--format", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    segments = json.loads(out.read_text())["segments"]
    assert {s["speaker"] for s in segments} == {"S1", "S2"}
    for segment in segments:
        # A cue never mixes speakers: every word carries its cue's speaker.
        assert {w.get("speaker") for w in segment["words"]} == {segment["speaker"]}
