import numpy as np
import pytest

from appliance.asr.latency import FirstShown
from appliance.audio.frames import AudioFrame, CaptureClock, RingBuffer
from appliance.subtitles.types import Word


def test_ring_buffer_reads_by_absolute_index_across_wraparound():
    ring = RingBuffer(10)
    data = np.arange(25, dtype=np.float32)
    for chunk in np.split(data, [3, 7, 16, 18]):
        ring.append(chunk)
    assert ring.end == 25 and ring.start == 15
    assert ring.read(15, 25).tolist() == data[15:25].tolist()
    assert ring.read(18, 22).tolist() == data[18:22].tolist()
    with pytest.raises(IndexError):
        ring.read(14, 20)


def test_ring_buffer_chunk_larger_than_capacity_keeps_the_newest():
    ring = RingBuffer(4)
    ring.append(np.arange(10, dtype=np.float32))
    assert ring.start == 6 and ring.read(6, 10).tolist() == [6, 7, 8, 9]


def test_capture_clock_interpolates_inside_a_frame():
    clock = CaptureClock()
    clock.add(AudioFrame(np.zeros(1600, np.float32), 0, captured_at=100.1))
    clock.add(AudioFrame(np.zeros(1600, np.float32), 1600, captured_at=100.2))
    assert clock.capture_time(0.15) == pytest.approx(100.15)
    assert clock.capture_time(0.05) == pytest.approx(100.05)
    assert clock.capture_time(0.25) is None  # not yet captured


def test_first_shown_pairs_finals_with_earlier_partials():
    shown = FirstShown(tolerance=0.5)
    shown.partial([Word("hello", 1.0, 1.3)], emitted=10.0)
    shown.partial([Word("hello", 1.1, 1.3), Word("world", 1.5, 1.8)], emitted=10.5)
    assert shown.final([Word("Hello,", 1.05, 1.3), Word("there", 2.0, 2.2)], emitted=11.0) == [10.0, 11.0]
    assert shown.final([Word("world", 1.5, 1.8)], emitted=12.0) == [10.5]
