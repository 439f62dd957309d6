"""Text normalisation shared by the commit policy (word identity) and the WER scoring."""
from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"[^\w\s']")


def normalize(text: str) -> str:
    """Lower case, punctuation stripped (apostrophes kept), single spaces."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())
