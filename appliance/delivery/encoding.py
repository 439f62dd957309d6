"""Each event's wire bytes, encoded once however many subscribers of a face it goes to."""
from __future__ import annotations

from collections.abc import Callable

from appliance.subtitles.events import SubtitleEvent


class EncodedOnce:
    """Caches `encode(event)` by event object.

    Keyed by the event object (the one the event log published, shared by every
    subscriber's queue); the most recent `size` are kept, which covers one event's
    whole fan-out even with several sessions publishing. Each face has its own (protobuf
    bytes for gRPC, an SSE message for HTTP).
    """

    def __init__(self, encode: Callable[[SubtitleEvent], bytes], size: int = 256):
        self.encode = encode
        self.size = size
        self._recent: dict[int, tuple[SubtitleEvent, bytes]] = {}  # id(event) -> (event, bytes)

    def __call__(self, event: SubtitleEvent) -> bytes:
        hit = self._recent.get(id(event))
        if hit is not None and hit[0] is event:  # the same object, not a later one at a reused id
            return hit[1]
        data = self.encode(event)
        self._recent[id(event)] = (event, data)
        if len(self._recent) > self.size:
            del self._recent[next(iter(self._recent))]  # the oldest (dicts keep insertion order)
        return data
