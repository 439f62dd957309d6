"""Text normalisation shared by the commit policy (word identity) and the WER scoring.

Every language: Unicode NFC, typographic apostrophes made plain, lower case, punctuation
(hyphens included: "peut-être" → "peut être") stripped except apostrophes inside words
("didn't"), accents kept. French also splits elisions after the apostrophe ("l'homme" →
"l' homme"): the article and the noun are two words however a recogniser glues them.
"""
from __future__ import annotations

import re
import unicodedata

_PUNCTUATION = re.compile(r"[^\w\s']")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})
_ELISION = re.compile(r"(\w')(?=\w)")


def normalize(text: str, language: str = "en") -> str:
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES).lower()
    if language == "fr":
        text = _ELISION.sub(r"\1 ", text)
    return " ".join(_PUNCTUATION.sub(" ", text).split())
