"""CPU priority of the calling thread: how file transcription yields the CPU to live rooms.

Linux keeps a nice value per thread and a thread starts with its creator's, so a model built on
a thread whose nice value was raised runs its own worker threads (CTranslate2's, and their
OpenMP team) at that priority too: the kernel then gives live decodes the cores first, between
model calls and inside them, which no queue in Python can do (bench/test_upload_bench.py).
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

MAX_NICE = 19


def lower_this_thread(increment: int) -> int:
    """Raise the calling thread's nice value by `increment` (capped at 19); returns the value it
    now has. Never fails: where the OS refuses (not Linux, a seccomp filter), the thread keeps its
    priority and a warning says so."""
    if increment <= 0:
        return thread_nice()
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)  # PRIO_PROCESS with a thread id: that thread only (Linux)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, now + increment))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError) as exc:
        log.warning("cannot lower the priority of thread %s (%s): it runs at the daemon's", tid, exc)
        return thread_nice()


def lower_this_process(increment: int) -> int:
    """Raise the nice value of every thread of this process by `increment` (capped at 19): for a
    process that is all low-priority work (the transcription worker), whose imports already
    started threads (numpy's BLAS pool) before it could lower its own. Threads started later
    inherit it from their creators. Returns the calling thread's value; never fails (as above)."""
    if increment <= 0:
        return thread_nice()
    try:
        tids = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: at least this thread
        return lower_this_thread(increment)
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except (AttributeError, OSError) as exc:  # a thread that just ended, or a refusal
            log.warning("cannot lower the priority of thread %s (%s)", tid, exc)
    return thread_nice()


def thread_nice(tid: int | None = None) -> int:
    """The nice value of thread `tid` (default: the calling thread); 0 where the OS cannot say."""
    try:
        return os.getpriority(os.PRIO_PROCESS, tid if tid is not None else threading.get_native_id())
    except (AttributeError, OSError):
        return 0
