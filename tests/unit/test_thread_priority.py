"""Lowering one thread's CPU priority (appliance.inference.priority) on the real kernel: only that
thread changes, and threads it creates afterwards start with its nice value, which is what puts
CTranslate2's worker threads of the file model below the live rooms'."""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.inference.priority import MAX_NICE, lower_this_thread, thread_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def test_only_the_calling_thread_is_lowered_and_its_children_inherit():
    before = thread_nice()
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = thread_nice()

    def work() -> None:
        seen["lowered"] = lower_this_thread(5)
        seen["read back"] = thread_nice()
        spawned = threading.Thread(target=child)  # as CTranslate2 spawns its workers in the model constructor
        spawned.start()
        spawned.join()

    with ThreadPoolExecutor(1, initializer=work) as pool:  # as the daemon's file executor is built
        pool.submit(lambda: None).result()
    expected = min(MAX_NICE, before + 5)
    assert seen == {"lowered": expected, "read back": expected, "child": expected}
    assert thread_nice() == before  # the caller (the event loop's thread, in the daemon) keeps its own


def test_no_increment_changes_nothing_and_the_cap_is_19():
    results: list[int] = []

    def work() -> None:
        results.append(lower_this_thread(0))
        results.append(lower_this_thread(40))

    start = thread_nice()
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert results == [start, MAX_NICE]
