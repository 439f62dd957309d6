"""Bearer tokens, shared by every face: read from a file, compared in constant time, never logged."""
from __future__ import annotations

import hmac
from pathlib import Path


def read_tokens(path: Path) -> list[bytes]:
    tokens = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    if not tokens:
        raise ValueError(f"{path}: no token in the file")
    return tokens


def token_matches(presented: str | bytes, tokens: list[bytes]) -> bool:
    """True if `presented` is one of `tokens`."""
    data = presented.strip().encode() if isinstance(presented, str) else presented.strip()
    # Compare against every token so timing does not reveal which (or whether one) matched.
    matches = [hmac.compare_digest(data, known) for known in tokens]
    return any(matches)
