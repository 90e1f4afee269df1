"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which puts this
folder on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_per_label(answer: Callable[[str], object], labels: list[str], reps: int) -> list[float]:
    """Milliseconds of each ``answer(label)`` over ``reps`` rounds of all ``labels``, after one
    untimed warm-up answer per label (text encodings, block summaries, caches)."""
    for label in labels:
        answer(label)
    times = []
    for _ in range(reps):
        for label in labels:
            start = time.perf_counter()
            answer(label)
            times.append(1000 * (time.perf_counter() - start))
    return times
