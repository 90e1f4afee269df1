"""The semantics stage of the runtime: 2D segmentation behind geometry, on its own thread.

The mapping worker integrates each keyframe's geometry at once and hands the stage a
:class:`~langgs_ros.mapping.mapper.PendingKeyframe`; the stage segments it with the backend
(outside the map lock: the slow part) and fuses the result into the Gaussians that view saw: the
map lock is held only to copy their semantics and to write the votes back. In split mode the segments come with the keyframe (from the semantics node) and the
stage only fuses them: one path either way.

At most ``semantics.max_pending`` keyframes wait. When full, the waiting keyframe (or the new one)
whose view is most covered already is dropped and counted: segmenting it would add least. A
Gaussian of its view is covered when the map labels it (another view's semantics are fused there)
or another waiting keyframe saw it too (consecutive keyframes of a slow camera overlap mostly).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from langgs_ros.errors import LangGSError
from langgs_ros.mapping.integration import PendingKeyframe
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.runtime.worker import QueueWorker
from langgs_ros.semantics.backend import Segmentation

__all__ = ["SemanticsStage", "StageStatus", "StageItem"]

SAMPLE = 8
"""The drop policy looks at every SAMPLE-th Gaussian of a view (enough for a share, and cheap)."""


@dataclass
class StageItem:
    """A keyframe waiting for its semantics."""

    pending: PendingKeyframe
    segmentation: Segmentation | None = None
    """Segments computed elsewhere (split mode); None: the stage runs the backend."""
    labelled: np.ndarray | None = None
    """bool, per sampled Gaussian of its view (``pending.uids[::SAMPLE]``): labelled in the map already."""


@dataclass
class StageStatus:
    """Figures of the semantics stage."""

    keyframes_segmented: int = 0
    semantics_dropped: int = 0
    """Keyframes dropped from a full backlog (never segmented)."""
    semantics_failed: int = 0
    last_segment_ms: float = float("nan")
    newest_segmented_ns: int = 0
    """Stamp of the newest keyframe whose semantics are fused, ns (0: none yet)."""
    last_error: str = ""
    errors: int = 0


class SemanticsStage(QueueWorker):
    """``submit`` pending keyframes; a worker thread segments and fuses them into ``mapper``."""

    thread_name = "langgs-semantics-stage"

    def __init__(self, map_lock: threading.Lock, max_pending: int) -> None:
        super().__init__(max_pending, choose_drop=self._choose_drop)
        self._map_lock = map_lock
        self.mapper: Mapper | None = None
        self.status = StageStatus()

    def attach(self, mapper: Mapper | None) -> None:
        """Work for ``mapper`` from now on; waiting keyframes of an earlier map are forgotten.
        Call with the map lock held."""
        self.mapper = mapper
        self._queue.clear()

    def submit(self, pending: PendingKeyframe, segmentation: Segmentation | None = None) -> None:
        """Queue a keyframe; never blocks. Call without the map lock held."""
        item = StageItem(pending, segmentation)
        with self._map_lock:
            if self.mapper is not None:
                item.labelled = self.mapper.labelled_mask(pending.uids[::SAMPLE], pending.keys[::SAMPLE])
        self._queue.put(item)
        self.status.semantics_dropped = self._queue.dropped

    def pending(self) -> list[PendingKeyframe]:
        """Keyframes waiting, oldest first."""
        return [item.pending for item in self._queue.items()]  # type: ignore[attr-defined]

    @staticmethod
    def _choose_drop(items: Sequence[object]) -> int:
        """The item whose view is most covered by the map's labels and the other items' views
        (the oldest of equals)."""
        uids = [item.pending.uids[::SAMPLE] for item in items]  # type: ignore[attr-defined]
        shares = []
        for i, item in enumerate(items):
            others = np.concatenate([u for j, u in enumerate(uids) if j != i])
            covered = np.isin(uids[i], others)
            if item.labelled is not None:  # type: ignore[attr-defined]
                covered |= item.labelled  # type: ignore[attr-defined]
            shares.append(float(covered.mean()) if covered.size else 1.0)
        return max(range(len(shares)), key=lambda i: (shares[i], -i))

    def _handle(self, item: object) -> None:
        assert isinstance(item, StageItem)
        mapper = self.mapper
        if mapper is None:
            return
        start = time.perf_counter()
        try:
            seg = item.segmentation if item.segmentation is not None else mapper.segment(item.pending)
            # the map lock only to copy the semantics of the view's Gaussians and to write the votes
            # back: voting and codebook training run beside mapping and queries
            with self._map_lock:
                if self.mapper is not mapper:
                    return  # the map was reset or reloaded meanwhile
                work = mapper.begin_fusion(item.pending, seg)
            mapper.compute_fusion(work)
            with self._map_lock:
                if self.mapper is not mapper:
                    return
                mapper.finish_fusion(work)
                for waiting in self._queue.items():  # their views may now be labelled
                    waiting.labelled = mapper.labelled_mask(  # type: ignore[attr-defined]
                        waiting.pending.uids[::SAMPLE], waiting.pending.keys[::SAMPLE])  # type: ignore[attr-defined]
        except LangGSError as exc:
            self.status.semantics_failed += 1
            self.status.last_error = f"semantics of keyframe {item.pending.keyframe}: {exc}"
            return
        self.status.keyframes_segmented += 1
        self.status.newest_segmented_ns = max(self.status.newest_segmented_ns, item.pending.frame.stamp_ns)
        self.status.last_segment_ms = 1000 * (time.perf_counter() - start)
