"""Lowering CPU priority (appliance.inference.priority) on the real kernel: one thread, or every
thread of a process (the transcription worker's), and threads created afterwards start with their
creator's nice value, which is what puts the file model's CTranslate2 threads below the live rooms'."""
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


def test_the_whole_process_is_lowered_threads_started_before_included():
    """In a child process (never this one): a thread started before the call (as numpy's BLAS pool
    is, at import) is lowered too, and a thread started after starts lowered."""
    code = """
import threading, time
from appliance.inference.priority import lower_this_process, thread_nice
ready, done, seen = threading.Event(), threading.Event(), {}
def early():
    ready.set(); done.wait(); seen["early"] = thread_nice()
t = threading.Thread(target=early); t.start(); ready.wait()
base = thread_nice()
seen["main"] = lower_this_process(4) - base
done.set(); t.join(); seen["early"] -= base
late = threading.Thread(target=lambda: seen.__setitem__("late", thread_nice() - base)); late.start(); late.join()
print(sorted(seen.items()))
"""
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    base = thread_nice()
    step = min(MAX_NICE, base + 4) - base  # what is left under the cap
    assert out.strip() == str(sorted({"early": step, "late": step, "main": step}.items()))
