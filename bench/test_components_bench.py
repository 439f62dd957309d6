"""Component benchmarks: every pipeline stage per unit of work, into the run's "components" section.

VAD per frame, recognizer call per buffer length, segmentation per window, embedding per
segment, cue assembly and protobuf conversion per event (bench/components.py defines the
work; the regression guard times the same definitions). Each records its median wall time
and CPU time per unit. `make bench`, or alone:
`pytest bench/test_components_bench.py --benchmark-enable --benchmark-only`.
"""
from __future__ import annotations

import time

import pytest

from bench.components import NAMES, Inputs, timing, workloads

COMPONENTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def by_name(sample_dir):
    return {w.name: w for w in workloads(Inputs.load(sample_dir))}


@pytest.mark.parametrize("name", NAMES)
def test_component(benchmark, results, by_name, name):
    workload = by_name[name]
    cpu = time.process_time()
    benchmark.pedantic(workload.run, rounds=workload.rounds, iterations=1, warmup_rounds=1)
    cpu_seconds = time.process_time() - cpu  # the warm-up call included: CPU per call is a mean
    measured = timing(workload, [benchmark.stats.stats.median], cpu_seconds, workload.rounds + 1)
    benchmark.extra_info.update(measured.as_dict())
    COMPONENTS[name] = measured.as_dict()
    results.record("components", COMPONENTS)
    print(f"\n{name}: {measured.wall_median_ms:.4f} ms wall, {measured.cpu_ms:.4f} ms CPU {measured.unit}")
