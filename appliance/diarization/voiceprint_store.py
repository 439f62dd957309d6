"""Voiceprints on disk: one file per person in the directory `diarization.voiceprints` names.

Voiceprints are personal data: each file is created mode 0600 (the directory 0700) and holds
the name and the embedding only, never audio; deleting one removes its file. Names and
vectors are never logged (log lines name the voiceprint's id only). File names are random
ids, so a directory listing reveals no names. The store reads the directory once when it is
built and keeps the voiceprints in memory for the sessions to match against.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path

import numpy as np

from appliance.diarization.voiceprints import Voiceprint

log = logging.getLogger(__name__)

SUFFIX = ".voiceprint.json"


class VoiceprintStore:
    def __init__(self, directory: Path, model: str):
        """`model`: the embedding model's manifest name; voiceprints of another model are not loaded
        (their vectors mean nothing to this one)."""
        self.directory = Path(directory)
        self.model = model
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self._prints: dict[str, Voiceprint] = {}
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                data = json.loads(path.read_text())
                if data["model"] != model:
                    log.warning("voiceprint file %s is for embedding model %s, not %s: not used; "
                                "enrol again", path.name, data["model"], model)
                    continue
                vector = np.asarray(data["vector"], dtype=np.float32)
                self._prints[data["id"]] = Voiceprint(data["id"], data["name"], vector,
                                                      float(data["speech_seconds"]), float(data["created"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("voiceprint file %s is unreadable (%s): not used", path.name, type(exc).__name__)

    def all(self) -> list[Voiceprint]:
        return sorted(self._prints.values(), key=lambda p: p.created)

    def find(self, name: str) -> Voiceprint | None:
        return next((p for p in self._prints.values() if p.name == name), None)

    def add(self, name: str, vector: np.ndarray, speech_seconds: float) -> Voiceprint:
        """Store a new voiceprint (KeyError if `name` is enrolled already)."""
        if self.find(name) is not None:
            raise KeyError("this name is enrolled already; delete its voiceprint first to enrol it again")
        print_ = Voiceprint(f"vp-{secrets.token_hex(8)}", name, np.asarray(vector, np.float32),
                            float(speech_seconds), time.time())
        data = {"id": print_.id, "name": name, "model": self.model, "vector": [float(x) for x in print_.vector],
                "speech_seconds": print_.speech_seconds, "created": print_.created}
        final = self._path(print_.id)
        partial = final.with_name(f".{final.name}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        self._prints[print_.id] = print_
        log.info("voiceprint %s enrolled", print_.id)
        return print_

    def delete(self, voiceprint_id: str) -> None:
        """Remove a voiceprint and its file (KeyError if there is none with this id)."""
        if voiceprint_id not in self._prints:
            raise KeyError(voiceprint_id)
        self._path(voiceprint_id).unlink(missing_ok=True)
        del self._prints[voiceprint_id]
        log.info("voiceprint %s deleted", voiceprint_id)

    def _path(self, voiceprint_id: str) -> Path:
        return self.directory / f"{voiceprint_id}{SUFFIX}"


def count_files(directory: Path) -> int:
    """Voiceprint files in `directory` (for `appliance doctor`, without loading them)."""
    return sum(1 for _ in Path(directory).glob(f"*{SUFFIX}")) if Path(directory).is_dir() else 0
