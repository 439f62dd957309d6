"""The gatherer on real threads with a plain batch function: who runs with whom, and errors stay per item."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.asr.gather import MAX_STRETCH, Gatherer, RoomTiming


class Recorder:
    """A batch function: doubles each item, records the batches it saw; can be held on an event."""

    def __init__(self, hold: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.hold = hold
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def __call__(self, items):
        with self._lock:
            self.batches.append(list(items))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        if self.hold is not None:
            self.hold.wait(10)
        with self._lock:
            self.running -= 1
        return [ValueError(f"bad {i}") if i < 0 else 2 * i for i in items]


def join(gatherer: Gatherer, rooms) -> None:
    for room in rooms:
        gatherer.join(room)


def test_a_lone_room_runs_at_once_without_waiting_for_the_window():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=30.0)  # a window no test could sit through
    assert gatherer.call(21, "a") == 42
    assert gatherer.call(5, "a") == 10
    assert run.batches == [[21], [5]]


def test_due_rooms_that_arrive_together_share_one_batch():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=30.0)
    join(gatherer, "abc")
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(gatherer.call, i, room) for i, room in zip((1, 2, 3), "abc")]
        assert [f.result(timeout=20) for f in futures] == [2, 4, 6]
    assert len(run.batches) == 1 and sorted(run.batches[0]) == [1, 2, 3]


def test_the_window_bounds_the_wait_for_a_room_that_does_not_come():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=0.05)
    join(gatherer, "ab")  # b is expected but does not call
    assert gatherer.call(7, "a") == 14
    assert run.batches == [[7]]


def test_a_forgotten_room_is_not_waited_for():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=30.0)
    join(gatherer, "ab")
    gatherer.forget("b")
    assert gatherer.call(3, "a") == 6


def test_calls_queued_behind_a_running_batch_leave_together_in_the_next():
    hold = threading.Event()
    run = Recorder(hold)
    gatherer = Gatherer(run, max_batch=8, gather=0.0, concurrency=1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(gatherer.call, 1, "a")
        while not run.batches:  # the first batch is running (held)
            threading.Event().wait(0.001)
        rest = [pool.submit(gatherer.call, i, room) for i, room in zip((2, 3, 4), "bcd")]
        while len(gatherer._pending) < 3:
            threading.Event().wait(0.001)
        hold.set()
        assert first.result(timeout=20) == 2
        assert [f.result(timeout=20) for f in rest] == [4, 6, 8]
    assert run.batches[0] == [1] and sorted(run.batches[1]) == [2, 3, 4] and len(run.batches) == 2
    assert run.max_running == 1


def test_max_batch_splits_and_concurrency_lets_two_batches_run_at_once():
    hold = threading.Event()
    run = Recorder(hold)
    gatherer = Gatherer(run, max_batch=2, gather=0.0, concurrency=2)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(gatherer.call, i, room) for i, room in zip((1, 2, 3, 4), "abcd")]
        while run.running < 2:  # two batches held at once: the concurrency is real
            threading.Event().wait(0.001)
        hold.set()
        assert sorted(f.result(timeout=20) for f in futures) == [2, 4, 6, 8]
    assert all(len(b) <= 2 for b in run.batches) and sum(map(len, run.batches)) == 4
    assert run.max_running == 2


def test_one_bad_item_fails_only_its_caller():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=30.0)
    join(gatherer, "ab")
    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(gatherer.call, 4, "a")
        bad = pool.submit(gatherer.call, -1, "b")
        assert good.result(timeout=20) == 8
        with pytest.raises(ValueError, match="bad -1"):
            bad.result(timeout=20)


def test_a_batch_function_that_raises_fails_that_batch_only():
    calls = []

    def flaky(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("model call failed")
        return items

    gatherer = Gatherer(flaky, max_batch=8, gather=0.0)
    with pytest.raises(RuntimeError, match="model call failed"):
        gatherer.call(1, "a")
    assert gatherer.call(2, "a") == 2


def test_batch_reports_keys_and_waits():
    runs = []
    gatherer = Gatherer(Recorder(), max_batch=8, gather=0.0, on_batch=runs.append)
    gatherer.call(1, "a")
    (run,) = runs
    assert run.keys == ("a",) and len(run.waits) == 1 and run.waits[0] >= 0 and run.seconds >= 0


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Gatherer(Recorder(), max_batch=0, gather=0.0)
    with pytest.raises(ValueError):
        Gatherer(Recorder(), max_batch=1, gather=-1.0)


def test_two_busy_rooms_do_not_alternate_the_one_just_answered_is_waited_for():
    run = Recorder()
    gatherer = Gatherer(run, max_batch=8, gather=5.0)
    join(gatherer, "ab")
    with ThreadPoolExecutor(2) as pool:
        first = [pool.submit(gatherer.call, i, room) for i, room in zip((1, 2), "ab")]
        assert [f.result(timeout=20) for f in first] == [2, 4]
        again_a = pool.submit(gatherer.call, 3, "a")  # b was just answered: a's leader waits for it
        while not gatherer._pending:
            threading.Event().wait(0.001)
        again_b = pool.submit(gatherer.call, 4, "b")
        assert (again_a.result(timeout=20), again_b.result(timeout=20)) == (6, 8)
    assert [sorted(b) for b in run.batches] == [[1, 2], [3, 4]]


def test_room_timing_guesses_who_is_coming():
    room = RoomTiming()
    assert not room.due_by(0.0, 0.1, horizon=0.1)  # never called
    room.arrive(10.0)
    assert room.due_by(10.2, 10.3, horizon=0.1)  # called, no rhythm yet: expected
    room.arrive(10.5)
    assert room.period == pytest.approx(0.5)
    room.last_done = 10.8
    assert room.due_by(10.85, 10.9, horizon=0.1)  # just answered
    assert not room.due_by(10.95, 10.97, horizon=0.1)  # answered a while ago, next call due at 11.0
    assert room.due_by(10.95, 11.0, horizon=0.1)  # its rhythm brings it back by the deadline
    assert not room.due_by(13.0, 13.1, horizon=0.1)  # quiet for over ACTIVE_FOR: speaking stopped
    room.arrive(20.0)  # after a pause: the pause is not its rhythm
    assert room.period == pytest.approx(0.5)


def test_the_window_stretches_with_the_last_batch_and_never_past_its_cap():
    def slow(items):
        threading.Event().wait(0.5)
        return items

    gatherer = Gatherer(slow, max_batch=8, gather=0.01)
    assert gatherer.window == 0.01
    gatherer.call(1, "a")
    assert 0.3 * 0.5 <= gatherer.window <= MAX_STRETCH
    assert Gatherer(slow, max_batch=8, gather=0.0).window == 0.0  # no gathering asked: none
