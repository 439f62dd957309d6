"""The package's layering (DESIGN.md §5), read from the code's own imports: nothing in the
pipeline imports a face, delivery/ never imports the session, and the running daemon loads no
scoring library."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
PIPELINE = ("session.py", "build.py", "asr", "audio", "vad", "diarization", "subtitles", "delivery", "inference")
FACES = ("appliance.service", "appliance.http", "appliance.integrations", "appliance.daemon", "appliance.cli")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        target = PACKAGE / part
        out += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return out


def test_nothing_in_the_pipeline_imports_a_face():
    offenders = {str(path.relative_to(PACKAGE)): sorted(name for name in imports(path) if name.startswith(FACES))
                 for path in modules(*PIPELINE)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_delivery_does_not_import_the_session_and_subtitles_import_no_stage():
    for path in modules("delivery"):
        assert not {n for n in imports(path) if n.startswith(("appliance.session", "appliance.build"))}, path
    for path in modules("subtitles"):
        assert not {n for n in imports(path) if n.startswith(("appliance.asr", "appliance.diarization",
                                                              "appliance.audio", "appliance.vad"))}, path


def test_the_daemon_and_its_faces_load_no_wer_library_torch_or_livekit():
    code = ("import sys, appliance.daemon, appliance.cli, appliance.http.app; "
            "print(sorted(m for m in ('jiwer', 'torch', 'livekit', 'pyannote') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
