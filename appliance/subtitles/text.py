"""Text normalisation shared by the commit policy (word identity) and the WER scoring.

Every language: Unicode NFC, typographic apostrophes made plain, lower case, punctuation
(hyphens included: "peut-être" → "peut être") stripped except apostrophes inside words
("didn't"), accents kept. French also splits at every apostrophe ("l'homme" → "l homme",
"qu 'on" → "qu on"): elided words are words of their own however a recogniser glues or
spaces them (Whisper's word timing splits "qu'on" into "qu" and "'on").
"""
from __future__ import annotations

import re
import unicodedata

_PUNCTUATION = re.compile(r"[^\w\s']")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})


def normalize(text: str, language: str = "en") -> str:
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES).lower()
    if language == "fr":
        text = text.replace("'", " ")
    return " ".join(_PUNCTUATION.sub(" ", text).split())
