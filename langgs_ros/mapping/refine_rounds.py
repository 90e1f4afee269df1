"""Refinement after a replay: rounds with progress, each judged on held-out views, and the whole
run kept only if the held-out figures did not get worse.

Used by ``langgs replay --refine`` and the benchmarks; the node runs single rounds in the
background (:meth:`langgs_ros.runtime.mapping_runtime.MappingRuntime.refine_round`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.held_out import ViewQuality, held_out_quality
from langgs_ros.mapping.refine import Refiner, RefineStats
from langgs_ros.mapping.training_views import TrainingView

__all__ = ["RefineProgress", "RefineReport", "refine_in_rounds"]


@dataclass
class RefineProgress:
    """After each round."""

    iterations: int
    """Iterations done so far."""
    total: int
    """Iterations asked for."""
    loss: float
    """Training loss of the round's last iteration."""
    held_out_before: float
    held_out_after: float
    rolled_back: bool
    seconds: float
    """Since refinement started."""


@dataclass
class RefineReport:
    """What ``refine_in_rounds`` did; the totals are those of its rounds."""

    round_stats: list[RefineStats] = field(default_factory=list)
    """Figures of each round, in order."""
    seconds: float = 0.0
    before: ViewQuality | None = None
    """Held-out figures of the map before refinement (None without held-out views)."""
    after: ViewQuality | None = None
    """The same after refinement, over the same pixels."""
    kept: bool = True
    """False: the refined map was worse on the held-out views than the one before, and was undone."""

    @property
    def rounds(self) -> int:
        return len(self.round_stats)

    @property
    def iterations(self) -> int:
        return sum(s.iterations for s in self.round_stats)

    @property
    def rolled_back(self) -> int:
        """Rounds that raised the held-out loss and were undone."""
        return sum(s.rolled_back for s in self.round_stats)

    @property
    def densified(self) -> int:
        return sum(s.densified for s in self.round_stats)

    @property
    def pruned(self) -> int:
        return sum(s.pruned for s in self.round_stats)

    @property
    def refined(self) -> int:
        """Most Gaussians optimised in one round."""
        return max((s.refined for s in self.round_stats), default=0)

    @property
    def first_loss(self) -> float:
        return self.round_stats[0].first_loss if self.round_stats else float("nan")

    @property
    def last_loss(self) -> float:
        return self.round_stats[-1].last_loss if self.round_stats else float("nan")

    def line(self) -> str:
        """The one-line summary: held-out PSNR and depth error before -> after."""
        if self.before is None or self.after is None:
            held = "no held-out views (refine.holdout_every 0, or no non-keyframes)"
        else:
            b, a = self.before, self.after
            depth = ("no depth" if math.isnan(b.depth_error_m)
                     else f"depth error {b.depth_error_m:.4f} -> {a.depth_error_m:.4f} m")
            held = f"held-out PSNR {b.psnr_db:.2f} -> {a.psnr_db:.2f} dB, {depth} over {b.views} views"
        undone = "" if self.kept else " (worse on held-out views: map restored to its state before refinement)"
        return f"refine: {held}, {self.iterations} iterations in {self.seconds:.1f} s{undone}"


DEPTH_TOLERANCE_M = 1e-4
"""A held-out depth error that rises by less than this (0.1 mm, far below any depth sensor's noise)
is float rounding (float16 scales), not a worse map."""


def _worse(after: ViewQuality, before: ViewQuality) -> bool:
    if after.psnr_db < before.psnr_db:
        return True
    return not math.isnan(before.depth_error_m) and after.depth_error_m > before.depth_error_m + DEPTH_TOLERANCE_M


def refine_in_rounds(gmap: GaussianMap, refiner: Refiner, views: list[TrainingView], held_out: list[TrainingView],
                     iterations: int, round_iterations: int, time_budget_s: float = float("inf"),
                     progress: Callable[[RefineProgress], None] | None = None) -> RefineReport:
    """Refine ``gmap`` in place for ``iterations`` against ``views``, in rounds of
    ``round_iterations``, each rolled back if it raises the loss on the ``held_out`` views; at the
    end, the map before refinement is restored if the held-out PSNR fell or depth error rose."""
    report = RefineReport()
    if not views or len(gmap) == 0 or iterations <= 0:
        return report
    start = time.perf_counter()
    saved = gmap.to_arrays() if held_out else None
    decoder = refiner.semantics.snapshot() if refiner.semantics is not None and held_out else None
    if held_out:
        report.before = held_out_quality(gmap, held_out, backend=refiner.config.backend)
    while report.iterations < iterations:
        left = time_budget_s - (time.perf_counter() - start)
        if left <= 0:
            break
        rnd = refiner.prepare(gmap, views, held_out)
        if rnd is None:
            break
        refiner.optimise(rnd, min(round_iterations, iterations - report.iterations), time_budget_s=left)
        stats = refiner.commit(gmap, rnd)
        if stats.iterations == 0:
            break
        report.round_stats.append(stats)
        if progress is not None:
            progress(RefineProgress(report.iterations, iterations, stats.last_loss, stats.held_out_before,
                                    stats.held_out_after, stats.rolled_back, time.perf_counter() - start))
    if held_out and report.before is not None:
        report.after = held_out_quality(gmap, held_out, report.before.masks, refiner.config.backend)
        if _worse(report.after, report.before):
            assert saved is not None
            gmap.restore(saved)
            if decoder is not None and refiner.semantics is not None:
                refiner.semantics.restore(decoder)
            report.kept = False
    report.seconds = time.perf_counter() - start
    return report
